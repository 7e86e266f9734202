"""Floor 2: reading checkpoints safely and strictly.

* :mod:`.allowlist` / :mod:`.safe_load`: what a file may contain, and the
  one ``torch.load`` call;
* :mod:`.archive`: zip checks before that call (decompressed size against
  the file and the model, CRC-32 of every record);
* :mod:`.schemes`: :func:`load_checkpoint_file`, for every mmengine scheme;
* :mod:`.download`: downloads with a timeout, complete or nothing, cached
  by the whole URL;
* :mod:`.formats`: the clovaai / timm / rexnet_det layouts;
* :mod:`.loader`: :func:`load_pretrained`, strict and layout-aware;
* :mod:`.init`: the ``ReXNetPretrained`` initializer behind ``init_cfg``;
* :mod:`.coverage`: :func:`check_coverage` for whole detectors (both use
  :func:`rexnet_det.utils.strict_state.compare_state`);
* :mod:`.fused` / :mod:`.builder`: fused files, models from names.
"""
from ..utils.errors import (CheckpointError, CheckpointMismatchError,
                            UnsafeCheckpointError)
from .allowlist import trust_globals, trusted_globals
from .archive import expect_model, stop_expecting
from .builder import (ModelSpec, build_model, infer_spec, load_model,
                      parse_name, quiet_init_weights)
from .coverage import check_coverage
from .download import DownloadError, DownloadTimeoutError, cached_path
from .formats import (FORMATS, CheckpointFormatError, convert_state_dict,
                      detect_format, to_rexnet_det)
from .fused import fused_checkpoint, load_fused
from .init import StrictPretrainedInit
from .loader import load_pretrained, unwrap_state_dict
from .safe_load import require_regular_file, safe_torch_load
from .schemes import hub_cache_dir, load_checkpoint_file

__all__ = [
    'CheckpointError', 'CheckpointFormatError', 'CheckpointMismatchError',
    'UnsafeCheckpointError', 'FORMATS', 'ModelSpec', 'StrictPretrainedInit',
    'DownloadError', 'DownloadTimeoutError', 'build_model', 'cached_path',
    'check_coverage', 'convert_state_dict', 'detect_format', 'expect_model',
    'fused_checkpoint', 'hub_cache_dir', 'infer_spec', 'load_checkpoint_file',
    'load_fused', 'load_model', 'load_pretrained', 'parse_name',
    'quiet_init_weights', 'require_regular_file', 'safe_torch_load',
    'stop_expecting', 'to_rexnet_det', 'trust_globals', 'trusted_globals',
    'unwrap_state_dict'
]
