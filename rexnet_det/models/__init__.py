"""Floor 1: the models themselves (pure PyTorch/mmcv; imports nothing from
the floors above).

* :mod:`.arch`: hyper-parameters -> per-block settings;
* :mod:`.variants`: every variant and its released weights;
* :mod:`.layers`, :mod:`.rexnet`, :mod:`.classifier`, :mod:`.ssd_head`;
* :mod:`.utils`: inference forms (BN folding, channel alignment,
  ``torch.compile``) as free functions.
"""
from .arch import BlockCfg, ReXNetArch, TapInfo, rexnet_arch
from .classifier import ReXNetClassifier, ReXNetHead
from .input_check import check_backbone_input
from .layers import LinearBottleneck, SEModule
from .neck_check import check_neck_channels
from .rexnet import ReXNet
from .ssd_head import SSDLiteHead
from .utils.compiled import check_compile_backend, compile_for_inference
from .variants import VARIANTS, Variant, find_variant, get_variant

__all__ = [
    'ReXNet', 'ReXNetClassifier', 'ReXNetHead', 'LinearBottleneck',
    'SEModule', 'SSDLiteHead', 'rexnet_arch', 'ReXNetArch', 'BlockCfg',
    'TapInfo', 'check_backbone_input', 'check_neck_channels', 'VARIANTS',
    'Variant', 'find_variant', 'get_variant', 'check_compile_backend',
    'compile_for_inference'
]
