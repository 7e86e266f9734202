from .formats import (FORMATS, CheckpointFormatError, convert_state_dict,
                      detect_format, to_rexnet_det)
from .loader import CheckpointMismatchError, load_pretrained, unwrap_state_dict
from .safe_load import (CheckpointError, UnsafeCheckpointError,
                        install_mmengine_loader, safe_globals, safe_torch_load)

__all__ = [
    'FORMATS', 'CheckpointError', 'CheckpointFormatError',
    'CheckpointMismatchError', 'UnsafeCheckpointError', 'convert_state_dict',
    'detect_format', 'install_mmengine_loader', 'load_pretrained',
    'safe_globals', 'safe_torch_load', 'to_rexnet_det', 'unwrap_state_dict'
]
