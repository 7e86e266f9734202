"""Building blocks of ReXNet, made from MMCV parts."""
import copy
from contextlib import contextmanager, nullcontext
from typing import Iterator, Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmdet.utils import ConfigType, OptConfigType
from torch.nn.modules.batchnorm import _BatchNorm

from .arch import BlockCfg


# Activations that ConvModule never runs in place.
_NO_INPLACE = ('Tanh', 'PReLU', 'Sigmoid', 'HSigmoid', 'Swish', 'GELU')


def build_act(act_cfg: Optional[dict]) -> nn.Module:
    """Build an activation as ConvModule does: in place where allowed."""
    if act_cfg is None:
        return nn.Identity()
    cfg = dict(act_cfg)
    if cfg['type'] not in _NO_INPLACE:
        cfg.setdefault('inplace', True)
    return build_activation_layer(cfg)


def norm_cfg_for(norm_cfg: ConfigType, channels: int) -> dict:
    """Return `norm_cfg` adapted to a layer of `channels` channels.

    ReXNet's channel counts (27, 61, 185, ...) are rarely divisible by the
    usual GroupNorm group counts, so for GN the number of groups becomes the
    largest divisor of `channels` that does not exceed the requested one.
    Other norm types are returned unchanged.
    """
    if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
        raise ValueError('norm_cfg must be a dict with a "type" (ReXNet needs '
                         f'a norm layer: BN, SyncBN or GN), got {norm_cfg!r}')
    cfg = copy.deepcopy(dict(norm_cfg))
    if cfg.get('type') == 'GN':
        groups = cfg.get('num_groups', 32)
        if isinstance(groups, bool) or not isinstance(groups, int) or \
                groups < 1:
            raise ValueError('GN norm_cfg num_groups must be an int >= 1, '
                             f'got {groups!r}')
        cfg['num_groups'] = max(g for g in range(1, min(groups, channels) + 1)
                                if channels % g == 0)
    return cfg


class SEModule(nn.Module):
    """Squeeze-and-excitation with a norm layer between its two 1x1 convs,
    as in ReXNet (avg-pool, fc1, BN, ReLU, fc2, sigmoid gate)."""

    def __init__(self, channels: int, hidden_channels: int,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden_channels, 1, bias=True)
        self.norm_name, norm = build_norm_layer(
            norm_cfg_for(norm_cfg, hidden_channels), hidden_channels)
        self.add_module(self.norm_name, norm)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden_channels, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = self.act(getattr(self, self.norm_name)(self.fc1(y)))
        return x * self.gate(self.fc2(y))


@contextmanager
def frozen_bn_statistics(module: nn.Module) -> Iterator[None]:
    """Keep BatchNorm running statistics unchanged inside the block.

    Activation checkpointing runs a block's forward twice (once more during
    backward). With momentum 0 the second pass normalises with the same batch
    statistics but leaves the running statistics as the first pass set them,
    so ``with_cp`` trains exactly like the plain model.
    """
    saved = [(m, m.momentum, m.num_batches_tracked.clone()
              if m.num_batches_tracked is not None else None)
             for m in module.modules() if isinstance(m, _BatchNorm)]
    for m, _, _ in saved:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class LinearBottleneck(nn.Module):
    """ReXNet's inverted residual block.

    ``[1x1 expand + norm + act] -> 3x3 depthwise + norm -> [SE] -> ReLU6 ->
    1x1 project + norm``, with ReXNet's partial residual: the input is added
    to the first ``in_channels`` output channels when the block keeps the
    resolution. The residual is a ``torch.cat`` rather than the official
    in-place add, so autograd, export and checkpointing see a pure function.

    Args:
        cfg (BlockCfg): Channels, stride, expansion ratio and SE width.
        conv_cfg (dict, optional): Config of the conv layers. Default: None.
        norm_cfg (dict): Config of the norm layers. Default: dict(type='BN').
        act_cfg (dict): Activation after the expansion conv.
            Default: dict(type='SiLU').
        dw_act_cfg (dict): Activation after depthwise conv and SE.
            Default: dict(type='ReLU6').
        drop_path_rate (float): Stochastic depth rate of the residual branch.
            Default: 0.
        with_cp (bool): Recompute the block in backward to save memory.
            Default: False.
    """

    def __init__(self,
                 cfg: BlockCfg,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: ConfigType = dict(type='SiLU'),
                 dw_act_cfg: ConfigType = dict(type='ReLU6'),
                 drop_path_rate: float = 0.,
                 with_cp: bool = False) -> None:
        super().__init__()
        self.in_channels = cfg.in_channels
        self.out_channels = cfg.out_channels
        self.use_shortcut = cfg.use_shortcut
        self.with_cp = with_cp
        mid = cfg.mid_channels

        def conv(in_ch, out_ch, kernel=1, stride=1, groups=1, act=None):
            return ConvModule(in_ch, out_ch, kernel, stride=stride,
                              padding=kernel // 2, groups=groups,
                              conv_cfg=conv_cfg,
                              norm_cfg=norm_cfg_for(norm_cfg, out_ch),
                              act_cfg=act)

        self.conv_exp = conv(cfg.in_channels, mid, act=act_cfg) \
            if cfg.expand_ratio != 1 else None
        self.conv_dw = conv(mid, mid, 3, cfg.stride, groups=mid)
        self.se = SEModule(mid, cfg.se_channels, norm_cfg) \
            if cfg.se_channels else None
        self.act_dw = build_act(dw_act_cfg)
        self.conv_pwl = conv(mid, cfg.out_channels)
        self.drop_path = DropPath(drop_path_rate) \
            if self.use_shortcut and drop_path_rate > 0 else nn.Identity()

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.conv_exp is None else self.conv_exp(x)
        out = self.conv_dw(out)
        if self.se is not None:
            out = self.se(out)
        out = self.conv_pwl(self.act_dw(out))
        if self.use_shortcut:
            out = self.drop_path(out)
            c = self.in_channels
            if c == self.out_channels:  # e.g. lite, or aligned widths
                out = out + x
            else:
                out = torch.cat([out[:, :c] + x, out[:, c:]], dim=1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and self.training and x.requires_grad:
            if torch.compiler.is_compiling():
                # Dynamo cannot trace a context_fn; it is not needed there:
                # the compiled graph applies BN buffer updates once, in the
                # forward, and the recompute in backward does not repeat them.
                return cp.checkpoint(self._inner_forward, x,
                                     use_reentrant=False)
            return cp.checkpoint(
                self._inner_forward, x, use_reentrant=False,
                context_fn=lambda: (nullcontext(), frozen_bn_statistics(self)))
        return self._inner_forward(x)


