"""Inference form of ReXNet: BatchNorm folded into the convs, channels_last.

In eval mode a BatchNorm is a per-channel affine map, so it folds into the
conv in front of it: ``W' = W * s`` and ``b' = (b - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``. :func:`fuse_model` does that in place for
every ``ConvModule`` (stem, expansion, depthwise, projection and penultimate
convs), for the SE module's ``fc1`` + BN and for ReXNet-lite's classifier
``pre_logits``; the norm layers become ``nn.Identity``. The block forward is
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
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.classifier import ReXNetClassifier
from ..models.layers import SEModule
from ..models.rexnet import ReXNet

# Attribute set on a fused model: dict(channels_last=bool).
FUSED_ATTR = '_rexnet_det_fused'

FusableModel = Union[ReXNet, ReXNetClassifier]


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
    if isinstance(model, ReXNetClassifier) and \
            model.head.pre_logits is not None and \
            not isinstance(model.head.pre_logits.bn, nn.Identity):
        pairs.append((model.head.pre_logits, 'conv', 'bn',
                      'head.pre_logits.conv'))
    for parent, conv, norm, where in pairs:
        check_foldable(getattr(parent, conv), getattr(parent, norm), where)
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


def fuse_model(model: FusableModel,
               channels_last: bool = True) -> FusableModel:
    """Turn an eval-mode ReXNet or ReXNetClassifier into its fused
    inference form, in place.

    Outputs equal the unfused eval model's up to float rounding (tested to
    1e-5 relative error). Calling it again on a fused model returns the
    model unchanged. The state dict changes: norm tensors disappear, convs
    gain a ``bias``; save it with :func:`fused_checkpoint` and rebuild with
    :func:`rexnet_det.deploy.load_fused`.

    Args:
        model (ReXNet | ReXNetClassifier): The model, in eval mode.
        channels_last (bool): Store 4-D weights NHWC and convert the input
            to channels_last in a forward pre-hook (faster with oneDNN on
            CPU). Default: True.

    Returns:
        The same model object, fused.

    Raises:
        TypeError: `model` is not a ReXNet or ReXNetClassifier, or a norm
            layer is not a BatchNorm (e.g. GroupNorm cannot be folded).
        RuntimeError: `model` is in training mode.
    """
    if not isinstance(model, (ReXNet, ReXNetClassifier)):
        raise TypeError('fuse_model expects a ReXNet or ReXNetClassifier, '
                        f'got {type(model).__name__}')
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
    left = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
    assert not left, f'BatchNorm layers left after fusing: {left}'

    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.requires_grad_(False)
    setattr(model, FUSED_ATTR, dict(channels_last=bool(channels_last)))
    model.register_forward_pre_hook(_inference_pre_hook)
    return model


def fused_checkpoint(model: FusableModel) -> dict:
    """What ``tools/deploy/fuse.py`` saves: the fused state dict and what
    :func:`load_fused` needs to rebuild the model.

    Raises:
        ValueError: `model` is not fused.
    """
    if not is_fused(model):
        raise ValueError('fused_checkpoint expects a fused model; call '
                         'model.eval().fuse() first')
    backbone = model.backbone if isinstance(model, ReXNetClassifier) \
        else model
    meta = dict(fused=True, arch=backbone.arch,
                width_mult=float(backbone.width_mult),
                depth_mult=float(backbone.depth_mult),
                classifier=isinstance(model, ReXNetClassifier),
                out_indices=list(backbone.out_indices),
                channels_last=getattr(model, FUSED_ATTR)['channels_last'])
    if isinstance(model, ReXNetClassifier):
        meta['num_classes'] = model.head.fc.out_features
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return dict(state_dict=state, meta=meta)


def load_fused(checkpoint: Union[str, dict], source: str = 'checkpoint'):
    """Rebuild a fused model saved by :func:`fused_checkpoint`.

    Args:
        checkpoint (str | dict): Path of the file or its loaded content.
        source (str): Name used in error messages for a dict.

    Returns:
        tuple: The fused model (eval mode) and its
        :class:`~rexnet_det.deploy.models.ModelSpec`.

    Raises:
        ValueError: The file is not a fused checkpoint.
    """
    from ..checkpoint import safe_torch_load
    from .models import ModelSpec
    if isinstance(checkpoint, str):
        source = checkpoint
        checkpoint = safe_torch_load(checkpoint)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or not meta.get('fused'):
        raise ValueError(f'{source} is not a fused checkpoint (no '
                         "meta['fused']); make one with tools/deploy/fuse.py")
    if meta['classifier']:
        model = ReXNetClassifier(width_mult=meta['width_mult'],
                                 depth_mult=meta['depth_mult'],
                                 arch=meta['arch'],
                                 num_classes=meta['num_classes'])
    else:
        model = ReXNet(width_mult=meta['width_mult'],
                       depth_mult=meta['depth_mult'], arch=meta['arch'],
                       out_indices=tuple(meta['out_indices']))
    fuse_model(model.eval(), channels_last=meta['channels_last'])
    model.load_state_dict(checkpoint['state_dict'], strict=True)
    spec = ModelSpec(meta['arch'], meta['width_mult'],
                     backbone=not meta['classifier'],
                     taps=tuple(meta['out_indices']))
    return model, spec
