from .arch import BlockCfg, ReXNetArch, TapInfo, rexnet_arch
from .classifier import ReXNetClassifier, ReXNetHead
from .layers import LinearBottleneck, SEModule
from .rexnet import ReXNet
from .ssd_head import SSDLiteHead

__all__ = [
    'ReXNet', 'ReXNetClassifier', 'ReXNetHead', 'LinearBottleneck',
    'SEModule', 'SSDLiteHead', 'rexnet_arch', 'ReXNetArch', 'BlockCfg',
    'TapInfo'
]
