"""rexnet_det: ReXNet backbones for MMDetection.

Importing the package registers :class:`ReXNet`, :class:`ReXNetClassifier`
and :class:`SSDLiteHead` in ``mmdet.registry.MODELS`` and makes mmengine load
local checkpoints safely (``weights_only=True`` with an allowlist).
"""
from .checkpoint import (CheckpointError, CheckpointMismatchError,
                         UnsafeCheckpointError, convert_state_dict,
                         install_mmengine_loader, load_pretrained,
                         safe_torch_load)
from .models import ReXNet, ReXNetClassifier, SSDLiteHead, rexnet_arch
# Registers CheckedCocoDataset / CheckedLoadImageFromFile and the hooks
# (NonFiniteLossHook, AtomicCheckpointHook, DumpRankStateHook).
from . import datasets, engine  # noqa: F401,E402
from .utils.config_scope import register_config_scope
from .version import __version__

install_mmengine_loader()
# `rexnet_det::<path>` config bases (see utils/config_scope.py).
register_config_scope()

__all__ = [
    'ReXNet', 'ReXNetClassifier', 'SSDLiteHead', 'rexnet_arch',
    'load_pretrained', 'convert_state_dict', 'safe_torch_load',
    'CheckpointError', 'CheckpointMismatchError', 'UnsafeCheckpointError',
    '__version__'
]
