"""ReXNet backbone for MMDetection."""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from .pretrained_init import StrictPretrainedMixin
from .input_check import check_backbone_input
from .arch import NUM_TAPS, ReXNetArch, rexnet_arch
from .layers import LinearBottleneck, norm_cfg_for

# Activation of the stem, expansion convs and penultimate conv per arch.
_DEFAULT_ACT = {'v1': dict(type='SiLU'), 'lite': dict(type='ReLU6')}


@MODELS.register_module()
class ReXNet(StrictPretrainedMixin, BaseModule):
    """ReXNet backbone.

    A PyTorch/MMDetection implementation of `ReXNet: Rethinking Channel
    Dimensions for Efficient Model Design <https://arxiv.org/abs/2007.00992>`_
    (official code: clovaai/rexnet). Channels grow linearly block by block;
    blocks use SiLU after the expansion conv, SE and ReLU6 after the
    depthwise conv, and a partial residual. Official ImageNet checkpoints in
    the clovaai or timm layout load directly through ``init_cfg``.

    The backbone can return six feature maps ("taps"):

    ====  ======  ==============================================
    tap   stride  tensor
    ====  ======  ==============================================
    0     2       output of block 0
    1     4       last block at stride 4
    2     8       last block at stride 8
    3     16      last block at stride 16
    4     32      last block
    5     32      penultimate 1x1 conv (``1280 * width_mult`` ch)
    ====  ======  ==============================================

    Only the layers the requested taps need are built, so DDP never sees
    parameters without gradients.

    Args:
        width_mult (float): Width multiplier, > 0. Official checkpoints exist
            for 1.0, 1.3, 1.5, 2.0 and 3.0 (lite: 1.0-2.0). Default: 1.0.
        depth_mult (float): Depth multiplier, > 0. Default: 1.0.
        arch (str): ``'v1'`` (ReXNet) or ``'lite'`` (ReXNet-lite: no SE,
            ReLU6 everywhere, channels divisible by 8). Default: ``'v1'``.
        out_indices (Sequence[int]): Taps to return, from 0 to 5.
            Default: (1, 2, 3, 4).
        frozen_stages (int): -1 freezes nothing, 0 freezes the stem, k > 0
            freezes the stem and every layer up to tap k. Frozen layers get
            ``requires_grad=False`` and their norm layers stay in eval mode.
            Default: -1.
        conv_cfg (dict, optional): Config of conv layers. Default: None.
        norm_cfg (dict): Config of norm layers. For GN the group count is
            lowered to a divisor of each layer's channels.
            Default: dict(type='BN').
        act_cfg (dict, optional): Activation of stem, expansion and
            penultimate convs. None uses the arch's own: SiLU (v1) or ReLU6
            (lite). Default: None.
        norm_eval (bool): Keep all BatchNorm layers in eval mode during
            training (frozen running statistics). Default: False.
        with_cp (bool): Use activation checkpointing in every block to save
            memory. Outputs, gradients and BN statistics are unchanged.
            Default: False.
        drop_path_rate (float): Stochastic depth rate, growing linearly to
            this value over the blocks. Default: 0.
        init_cfg (dict or list[dict], optional): Initialization config.
            ``dict(type='Pretrained', checkpoint=PATH[, prefix=...])`` loads a
            clovaai, timm, rexnet_det or mmdet checkpoint strictly (see
            :func:`rexnet_det.load_pretrained`). Default: None (Kaiming).

    Example:
        >>> import torch
        >>> from rexnet_det import ReXNet
        >>> self = ReXNet(width_mult=1.0, out_indices=(1, 2, 3, 4, 5)).eval()
        >>> inputs = torch.rand(1, 3, 224, 224)
        >>> level_outputs = self.forward(inputs)
        >>> for level_out in level_outputs:
        ...     print(tuple(level_out.shape))
        (1, 38, 56, 56)
        (1, 61, 28, 28)
        (1, 128, 14, 14)
        (1, 185, 7, 7)
        (1, 1280, 7, 7)
        >>> self.out_channels
        (38, 61, 128, 185, 1280)
    """

    def __init__(self,
                 width_mult: float = 1.0,
                 depth_mult: float = 1.0,
                 arch: str = 'v1',
                 out_indices: Sequence[int] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: OptConfigType = None,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_spec: ReXNetArch = rexnet_arch(width_mult, depth_mult, arch)
        out_indices = self._check_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or isinstance(
                frozen_stages, bool) or not -1 <= frozen_stages < NUM_TAPS:
            raise ValueError('frozen_stages must be an int in '
                             f'[-1, {NUM_TAPS - 1}], got {frozen_stages!r}')
        if not 0 <= drop_path_rate < 1:
            raise ValueError('drop_path_rate must be in [0, 1), got '
                             f'{drop_path_rate!r}')

        self.arch = arch
        self.width_mult = width_mult
        self.depth_mult = depth_mult
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        act_cfg = act_cfg if act_cfg is not None else _DEFAULT_ACT[arch]
        if init_cfg is None:
            self.init_cfg = [
                dict(type='Kaiming', layer='Conv2d', mode='fan_out',
                     nonlinearity='relu'),
                dict(type='Constant', val=1,
                     layer=['_BatchNorm', 'GroupNorm'])
            ]

        spec = self.arch_spec
        # Taps are derived from the arch; expose them for configs and tests.
        self.feature_info: List[dict] = [t.as_dict() for t in spec.taps]
        self.out_channels: Tuple[int, ...] = tuple(
            spec.taps[i].num_chs for i in out_indices)

        self.stem = ConvModule(
            3, spec.stem_channels, 3, stride=2, padding=1,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg_for(norm_cfg, spec.stem_channels),
            act_cfg=act_cfg)

        # Build blocks only up to the deepest requested tap.
        last_tap = max(out_indices)
        num_built = spec.tap_blocks[min(last_tap, 4)] + 1
        num_blocks = len(spec.blocks)
        self.blocks = nn.Sequential(*[
            LinearBottleneck(
                spec.blocks[i],
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                drop_path_rate=drop_path_rate * i / max(num_blocks - 1, 1),
                with_cp=with_cp) for i in range(num_built)
        ])
        self.pen = ConvModule(
            spec.blocks[-1].out_channels, spec.pen_channels, 1,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg_for(norm_cfg, spec.pen_channels),
            act_cfg=act_cfg) if last_tap == 5 else None

        self._tap_blocks = spec.tap_blocks
        # block index -> tap index, for the taps 0-4 this model returns
        self._tap_of_block = {b: t for t, b in enumerate(spec.tap_blocks)
                              if t in out_indices}
        self._freeze_stages()

    def _check_out_indices(self, out_indices: Sequence[int]) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        try:
            indices = tuple(out_indices)
        except TypeError:
            raise ValueError('out_indices must be a sequence of ints, got '
                             f'{out_indices!r}') from None
        if not indices:
            raise ValueError(f'out_indices must not be empty, got {indices!r}')
        for i in indices:
            if not isinstance(i, int) or isinstance(i, bool) or \
                    not 0 <= i < NUM_TAPS:
                raise ValueError(f'out_indices must be ints in [0, '
                                 f'{NUM_TAPS - 1}], got {out_indices!r}')
        if len(set(indices)) != len(indices):
            raise ValueError(
                f'out_indices must not repeat a tap, got {out_indices!r}')
        if list(indices) != sorted(indices):
            raise ValueError('out_indices must be in increasing order, got '
                             f'{out_indices!r}')
        return indices

    def frozen_modules(self) -> List[nn.Module]:
        """Modules frozen by ``frozen_stages``, in forward order."""
        if self.frozen_stages < 0:
            return []
        modules: List[nn.Module] = [self.stem]
        if self.frozen_stages >= 1:
            last = self._tap_blocks[min(self.frozen_stages, 4)]
            modules += list(self.blocks[:last + 1])
        if self.frozen_stages == 5 and self.pen is not None:
            modules.append(self.pen)
        return modules

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'ReXNet':
        """Set train mode, keeping frozen layers and (with ``norm_eval``)
        every BatchNorm in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def fuse(self, channels_last: bool = True) -> 'ReXNet':
        """Fold every BatchNorm into its conv for inference, in place.

        Needs eval mode; the fused model is inference only and calling
        ``fuse`` again does nothing. See :func:`rexnet_det.models.utils.fuse_model`.

        Args:
            channels_last (bool): Also store weights and run NHWC.
                Default: True.

        Returns:
            ReXNet: ``self``, fused.
        """
        from .utils.fuse import fuse_model
        return fuse_model(self, channels_last=channels_last)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Return the requested taps, shallowest first.

        Raises:
            ValueError: `x` is not (N, 3, H, W) floats, or too small to train
                (the message names the shape and the minimum).
        """
        check_backbone_input(self, x)
        x = self.stem(x)
        taps = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._tap_of_block:
                taps[self._tap_of_block[i]] = x
        if self.pen is not None:
            taps[5] = self.pen(x)
        return tuple(taps[i] for i in self.out_indices)
