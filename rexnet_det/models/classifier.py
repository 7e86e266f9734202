"""ImageNet classifier: a ReXNet backbone (tap 5) plus the official head."""
import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule

from .pretrained_init import StrictPretrainedMixin
from .rexnet import ReXNet


class ReXNetHead(nn.Module):
    """Global average pooling, then the arch's classifier.

    v1: dropout and a linear layer (clovaai's ``output.1`` 1x1 conv).
    lite: 1x1 conv to 1024 + norm + ReLU6, dropout, linear
    (clovaai's ``output.0/1/4``).
    """

    def __init__(self, arch: str, in_channels: int, num_classes: int,
                 dropout: float, norm_cfg: ConfigType = dict(type='BN')):
        super().__init__()
        self.arch = arch
        self.pre_logits = None
        if arch == 'lite':
            hidden = 1024
            _, norm = build_norm_layer(norm_cfg, hidden)
            self.pre_logits = nn.Sequential()
            self.pre_logits.add_module('conv', nn.Conv2d(in_channels, hidden, 1))
            self.pre_logits.add_module('bn', norm)
            self.pre_logits.add_module('act', nn.ReLU6(inplace=True))
            in_channels = hidden
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean((2, 3), keepdim=True)
        if self.pre_logits is not None:
            x = self.pre_logits(x)
        return self.fc(self.dropout(x.flatten(1)))


@MODELS.register_module()
class ReXNetClassifier(StrictPretrainedMixin, BaseModule):
    """ReXNet ImageNet classifier, matching the official model.

    ``self.backbone`` is a :class:`ReXNet` returning tap 5, so the classifier's
    checkpoint keys start with ``backbone.`` and detector configs can load it
    directly (``init_cfg=dict(type='Pretrained', checkpoint=...)``).

    Args:
        width_mult (float): Width multiplier. Default: 1.0.
        arch (str): ``'v1'`` or ``'lite'``. Default: ``'v1'``.
        num_classes (int): Number of classes. Default: 1000.
        dropout (float): Dropout before the last layer. Default: 0.2.
        depth_mult (float): Depth multiplier. Default: 1.0.
        norm_cfg (dict): Norm layers of backbone and head.
            Default: dict(type='BN').
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)``
            loads any supported checkpoint strictly. Default: None.

    Example:
        >>> import torch
        >>> from rexnet_det import ReXNetClassifier
        >>> model = ReXNetClassifier(width_mult=1.0).eval()
        >>> model(torch.rand(2, 3, 224, 224)).shape
        torch.Size([2, 1000])
    """

    def __init__(self,
                 width_mult: float = 1.0,
                 arch: str = 'v1',
                 num_classes: int = 1000,
                 dropout: float = 0.2,
                 depth_mult: float = 1.0,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'num_classes must be a positive int, got '
                             f'{num_classes!r}')
        if not 0 <= dropout < 1:
            raise ValueError(f'dropout must be in [0, 1), got {dropout!r}')
        self.backbone = ReXNet(width_mult=width_mult, depth_mult=depth_mult,
                               arch=arch, out_indices=(5, ),
                               norm_cfg=norm_cfg)
        self.head = ReXNetHead(arch, self.backbone.out_channels[0],
                               num_classes, dropout, norm_cfg)
        self.arch_spec = self.backbone.arch_spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape (N, num_classes)."""
        return self.head(self.backbone(x)[0])

    def fuse(self, channels_last: bool = True) -> 'ReXNetClassifier':
        """Fold every BatchNorm (backbone and head) into its conv for
        inference, in place; see :meth:`ReXNet.fuse`.

        Returns:
            ReXNetClassifier: ``self``, fused.
        """
        from .utils.fuse import fuse_model
        return fuse_model(self, channels_last=channels_last)
