"""Inference form: BatchNorm folded into the convs, channels_last.

In eval mode a BatchNorm is a per-channel affine map, so it folds into the
conv in front of it: ``W' = W * s`` and ``b' = (b - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``. :func:`fuse_model` does that in place for
every ``ConvModule`` (stem, expansion, depthwise, projection and penultimate
convs), for the SE module's ``fc1`` + BN and for every ``nn.Sequential`` in
which a ``Conv2d`` is directly followed by a BatchNorm (ReXNet-lite's
classifier ``pre_logits``); the norm layers become ``nn.Identity``. The
function reads only the module structure, so it works on a bare
:class:`ReXNet`, a classifier or a model built around one. The block forward is
unchanged: the partial residual stays a ``torch.cat`` (the official code's
in-place ``out[:, :c] += x`` would write into a tensor autograd, tracing or
an earlier tap may still hold). With ``channels_last`` the weights are
stored NHWC and a forward pre-hook converts the input, so oneDNN convs run
without NCHW <-> blocked reorders (single-threaded PyTorch still sends 1x1
convs with batch < 16 to its NCHW conv); outputs have the same values (and
shape) but NHWC strides.

A fused model is inference only: it has no BatchNorm left to train, its
parameters do not require grad and its forward raises in training mode.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import SEModule

# Attribute set on a fused model: dict(channels_last=bool).
FUSED_ATTR = '_rexnet_det_fused'


def check_foldable(conv: nn.Module, bn: nn.Module, where: str) -> None:
    """Raise unless `bn` (after `conv`) can be folded into `conv`."""
    if not isinstance(bn, _BatchNorm):
        raise TypeError(f'cannot fold {type(bn).__name__} at {where} into '
                        'its conv: only BatchNorm folds (GroupNorm and '
                        'LayerNorm depend on the input)')
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f'cannot fold {type(bn).__name__} at {where}: it '
                         'has no running statistics '
                         '(track_running_stats=False)')
    if not isinstance(conv, nn.Conv2d) or \
            bn.num_features != conv.out_channels:
        raise ValueError(f'{where}: {type(bn).__name__}({bn.num_features}) '
                         f'does not follow a Conv2d with as many outputs '
                         f'(got {conv})')


def fold_bn_into_conv(conv: nn.Conv2d, bn: _BatchNorm,
                      where: str = 'conv') -> nn.Conv2d:
    """Return a new conv computing ``bn(conv(x))`` of `bn` in eval mode.

    The folded weights are computed in float64 and cast back, so the fused
    layer differs from the pair only by float32 rounding.

    Args:
        conv (nn.Conv2d): The conv (with or without bias).
        bn (_BatchNorm): The norm right after it, with running statistics.
        where (str): Name of the layer, used in error messages.

    Raises:
        TypeError: `bn` is not a BatchNorm.
        ValueError: `bn` keeps no running statistics (it normalises with
            batch statistics even in eval mode, which cannot be folded) or
            does not match the conv's output channels.
    """
    check_foldable(conv, bn, where)
    weight = conv.weight.detach().double()
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None \
        else torch.ones_like(var)
    beta = bn.bias.detach().double() if bn.bias is not None \
        else torch.zeros_like(var)
    bias = conv.bias.detach().double() if conv.bias is not None \
        else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)

    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                      stride=conv.stride, padding=conv.padding,
                      dilation=conv.dilation, groups=conv.groups, bias=True,
                      padding_mode=conv.padding_mode,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - mean) * scale + beta)
    return fused


def _fold_pairs(model: nn.Module) -> List[Tuple[nn.Module, str, str, str]]:
    """Every (parent, conv attribute, norm attribute, name) to fold, each
    checked before anything is changed."""
    pairs = []
    for name, module in model.named_modules():
        where = name or type(model).__name__
        if isinstance(module, ConvModule) and module.with_norm:
            if tuple(module.order[:2]) != ('conv', 'norm'):
                raise ValueError(f'{where}: cannot fold a norm that does not '
                                 f'follow the conv (order {module.order})')
            pairs.append((module, 'conv', module.norm_name, where))
        elif isinstance(module, SEModule) and not isinstance(
                getattr(module, module.norm_name), nn.Identity):
            pairs.append((module, 'fc1', module.norm_name, f'{where}.fc1'))
        elif isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (conv, first), (norm, second) in zip(children, children[1:]):
                if isinstance(first, nn.Conv2d) and \
                        isinstance(second, _BatchNorm):
                    pairs.append((module, conv, norm,
                                  f'{name}.{conv}' if name else conv))
    for parent, conv, norm, where in pairs:
        check_foldable(getattr(parent, conv), getattr(parent, norm), where)
    folded = {id(getattr(parent, norm)) for parent, _, norm, _ in pairs}
    left = [n for n, m in model.named_modules()
            if isinstance(m, _BatchNorm) and id(m) not in folded]
    if left:
        raise TypeError(f'cannot fuse {type(model).__name__}: BatchNorm '
                        f'layers {left} do not directly follow a conv')
    return pairs


def _inference_pre_hook(module: nn.Module,
                        args: Tuple) -> Optional[Tuple]:
    """Refuse training, convert the input to the fused memory format."""
    if module.training:
        raise RuntimeError(
            f'this {type(module).__name__} was fused for inference (its '
            'BatchNorm layers are folded into the convs) and cannot run in '
            'training mode; call .eval(), or train an unfused model')
    if getattr(module, FUSED_ATTR)['channels_last'] and args and \
            isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last),
                *args[1:])
    return None


def is_fused(model: nn.Module) -> bool:
    """Whether :func:`fuse_model` has been applied to `model`."""
    return hasattr(model, FUSED_ATTR)


def fuse_model(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Turn an eval-mode ReXNet (or a model made of its parts, such as
    :class:`ReXNetClassifier`) into its fused inference form, in place.

    Outputs equal the unfused eval model's up to float rounding (tested to
    1e-5 relative error). Calling it again on a fused model returns the
    model unchanged. The state dict changes: norm tensors disappear, convs
    gain a ``bias``; save it with :func:`rexnet_det.deploy.fused_checkpoint`
    and rebuild with :func:`rexnet_det.deploy.load_fused`.

    Args:
        model (nn.Module): The model, in eval mode.
        channels_last (bool): Store 4-D weights NHWC and convert the input
            to channels_last in a forward pre-hook (faster with oneDNN on
            CPU). Default: True.

    Returns:
        The same model object, fused.

    Raises:
        TypeError: A norm layer is not a BatchNorm (e.g. GroupNorm cannot be
            folded) or a BatchNorm does not directly follow a conv. The
            model is left untouched.
        RuntimeError: `model` is in training mode.
    """
    if is_fused(model):
        return model
    if model.training:
        raise RuntimeError(
            f'{type(model).__name__}.fuse() needs eval mode: BatchNorm folds '
            'into the convs with its running statistics, so the fused model '
            'cannot train. Call model.eval() first')
    # Check every pair first, so that an unfoldable norm leaves the model
    # untouched.
    for parent, conv, norm, where in _fold_pairs(model):
        setattr(parent, conv, fold_bn_into_conv(getattr(parent, conv),
                                                getattr(parent, norm), where))
        setattr(parent, norm, nn.Identity())
        if isinstance(parent, ConvModule):
            parent.with_norm = False  # skip the Identity in its forward

    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.requires_grad_(False)
    setattr(model, FUSED_ATTR, dict(channels_last=bool(channels_last)))
    model.register_forward_pre_hook(_inference_pre_hook)
    return model
