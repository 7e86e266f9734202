from .arch import BlockCfg, ReXNetArch, TapInfo, rexnet_arch
from .classifier import ReXNetClassifier, ReXNetHead
from .input_check import check_backbone_input
from .layers import LinearBottleneck, SEModule
from .neck_check import check_neck_channels
from .rexnet import ReXNet
from .ssd_head import SSDLiteHead

__all__ = [
    'ReXNet', 'ReXNetClassifier', 'ReXNetHead', 'LinearBottleneck',
    'SEModule', 'SSDLiteHead', 'rexnet_arch', 'ReXNetArch', 'BlockCfg',
    'TapInfo', 'check_backbone_input', 'check_neck_channels'
]
