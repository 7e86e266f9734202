"""Channel alignment: zero-pad ReXNet's internal channel counts to a multiple.

ReXNet's channels grow linearly (16, 27, 38, 50, ...), so most of its convs
have channel counts that are not multiples of 4. onnxruntime runs a conv in
its blocked NCHWc layout only when its channels are multiples of 4; the
others fall back to the plain NCHW kernels, which are several times slower
for depthwise convs (docs/performance.md). :func:`align_channels` pads every
internal tensor of a ReXNet (stem, expansion, depthwise, SE hidden and
projection widths, the inter-block tensors and the penultimate conv) with
channels that are exactly zero:

* padded conv output rows have zero weights and a zero bias;
* padded conv input columns have zero weights, so the padded (zero)
  inputs contribute nothing;
* padded BatchNorm entries have weight 0, bias 0, running mean 0 and
  running variance 1, so they map 0 to 0 (and fold to zero rows);
* SiLU, ReLU and ReLU6 map 0 to 0; the SE gate of a padded channel
  multiplies a zero; the SE reduce conv ignores padded inputs (zero
  columns) and its padded hidden units are zero;
* the partial residual adds the (padded) input to the first padded-input
  channels of the output: the added padding is zero, so every true channel
  gets exactly what it got before.

The taps the model returns are sliced back to their true channel counts
(a forward hook on the :class:`ReXNet`), so necks and heads see the same
tensors as before. The image input (3 channels) is not padded: onnxruntime
feeds a conv with fewer input channels than its block size from NCHW.

Alignment composes with BatchNorm folding (:func:`fuse_model`) in either
order and is idempotent; realigning to another multiple pads further. It is
an inference transform: training an aligned model could make the padded
channels non-zero (their BatchNorm biases get gradients), and a fused
checkpoint is saved from the unaligned model.
"""
import math
import warnings
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import LinearBottleneck, SEModule
from ..rexnet import ReXNet
from .fuse import FUSED_ATTR

#: Attribute set on an aligned ReXNet: dict(multiple=int, taps=tuple).
ALIGNED_ATTR = '_rexnet_det_aligned'
#: The multiple onnxruntime's NCHWc convs need (chosen by measurement,
#: docs/performance.md).
DEFAULT_MULTIPLE = 4


def check_multiple(multiple: int) -> int:
    """Return `multiple` if it is an int >= 1.

    Raises:
        ValueError: Otherwise; the message names the value.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or \
            multiple < 1:
        raise ValueError(f'multiple must be an int >= 1, got {multiple!r}')
    return multiple


def round_up(channels: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= `channels`."""
    return -(-channels // multiple) * multiple


def is_aligned(model: nn.Module) -> bool:
    """Whether `model` is or contains a ReXNet aligned by
    :func:`align_channels` (with a multiple > 1)."""
    return any(getattr(m, ALIGNED_ATTR, {}).get('multiple', 1) > 1
               for m in model.modules())


def _norm_of(module: ConvModule) -> Optional[nn.Module]:
    name = getattr(module, 'norm_name', None)
    return getattr(module, name) if name else None


def _check_norm(norm: Optional[nn.Module], where: str) -> None:
    if norm is None or isinstance(norm, (nn.Identity, _BatchNorm)):
        return
    raise ValueError(
        f'align_channels needs BatchNorm (or folded) norm layers, got '
        f'{type(norm).__name__} at {where}: it normalises over channel '
        'groups, so zero-padded channels would change the true ones')


def _check_act(act: Optional[nn.Module], where: str) -> None:
    if act is None or isinstance(act, nn.Identity):
        return
    with torch.no_grad():
        zero = act(torch.zeros(1))
    if zero.item() != 0:
        raise ValueError(f'align_channels needs activations with f(0) = 0, '
                         f'got {type(act).__name__} at {where} '
                         f'(f(0) = {zero.item()!r})')


def _padded(tensor: torch.Tensor, shape: Tuple[int, ...],
            fill: float = 0.) -> torch.Tensor:
    """`tensor` in the top-left corner of a `fill`-ed tensor of `shape`,
    in the same memory format."""
    new = tensor.new_full(shape, fill)
    new[tuple(slice(0, s) for s in tensor.shape)] = tensor
    if tensor.dim() == 4 and tensor.stride() != tensor.contiguous().stride():
        new = new.contiguous(memory_format=torch.channels_last)
    return new


def _set(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value,
                                           requires_grad=old.requires_grad))
    else:
        setattr(module, name, value)


def _pad_conv(conv: nn.Conv2d, in_channels: int, out_channels: int) -> None:
    """Zero-pad a dense or depthwise conv to the given channel counts."""
    if (in_channels, out_channels) == (conv.in_channels, conv.out_channels):
        return
    depthwise = conv.groups > 1
    kernel = tuple(conv.weight.shape[2:])
    with torch.no_grad():
        _set(conv, 'weight', _padded(conv.weight.detach(), (
            out_channels, 1 if depthwise else in_channels, *kernel)))
        if conv.bias is not None:
            _set(conv, 'bias', _padded(conv.bias.detach(), (out_channels, )))
    conv.in_channels, conv.out_channels = in_channels, out_channels
    if depthwise:
        conv.groups = out_channels


def _pad_norm(norm: Optional[nn.Module], channels: int) -> None:
    """Pad a BatchNorm so the padded channels map 0 to 0."""
    if not isinstance(norm, _BatchNorm) or norm.num_features == channels:
        return
    with torch.no_grad():
        for name, fill in (('weight', 0.), ('bias', 0.),
                           ('running_mean', 0.), ('running_var', 1.)):
            value = getattr(norm, name)
            if value is not None:
                _set(norm, name, _padded(value.detach(), (channels, ), fill))
    norm.num_features = channels


def _pad_conv_module(module: ConvModule, in_channels: int,
                     out_channels: int) -> None:
    _pad_conv(module.conv, in_channels, out_channels)
    _pad_norm(_norm_of(module), out_channels)


def _check_conv_module(module: ConvModule, where: str) -> None:
    conv = module.conv
    if not isinstance(conv, nn.Conv2d) or conv.groups not in (
            1, conv.in_channels) or conv.in_channels != conv.out_channels \
            and conv.groups != 1:
        raise ValueError(f'align_channels pads dense and depthwise Conv2d '
                         f'only, got {conv} at {where}')
    if tuple(module.order) != ('conv', 'norm', 'act'):
        raise ValueError(f'align_channels needs conv-norm-act order, got '
                         f'{module.order} at {where}')
    _check_norm(_norm_of(module), where)
    if module.with_activation:
        _check_act(module.activate, where)


def _plan_checks(backbone: ReXNet, name: str) -> None:
    """Raise before anything changes if a part cannot be padded exactly."""
    prefix = f'{name}.' if name else ''
    _check_conv_module(backbone.stem, f'{prefix}stem')
    for i, block in enumerate(backbone.blocks):
        where = f'{prefix}blocks.{i}'
        if not isinstance(block, LinearBottleneck):
            raise ValueError(f'align_channels expects LinearBottleneck '
                             f'blocks, got {type(block).__name__} at {where}')
        for part in ('conv_exp', 'conv_dw', 'conv_pwl'):
            module = getattr(block, part)
            if module is not None:
                _check_conv_module(module, f'{where}.{part}')
        if block.se is not None:
            _check_norm(getattr(block.se, block.se.norm_name),
                        f'{where}.se')
        _check_act(block.act_dw, f'{where}.act_dw')
    if backbone.pen is not None:
        _check_conv_module(backbone.pen, f'{prefix}pen')


def _pad_se(se: SEModule, channels: int, multiple: int) -> None:
    hidden = round_up(se.fc1.out_channels, multiple)
    _pad_conv(se.fc1, channels, hidden)
    _pad_norm(getattr(se, se.norm_name), hidden)
    _pad_conv(se.fc2, hidden, channels)


def _pad_block(block: LinearBottleneck, in_channels: int,
               multiple: int) -> int:
    """Pad `block` for an input of `in_channels` (already padded); return
    its padded output width."""
    if block.conv_exp is not None:
        mid = round_up(block.conv_exp.conv.out_channels, multiple)
        _pad_conv_module(block.conv_exp, in_channels, mid)
    else:
        mid = in_channels
    _pad_conv_module(block.conv_dw, mid, mid)
    if block.se is not None:
        _pad_se(block.se, mid, multiple)
    out = round_up(block.conv_pwl.conv.out_channels, multiple)
    _pad_conv_module(block.conv_pwl, mid, out)
    # The residual adds the whole padded input: its padding is zero.
    block.in_channels, block.out_channels = in_channels, out
    return out


def _slice_taps(module: ReXNet, args: Tuple,
                outputs: Tuple[torch.Tensor, ...]
                ) -> Tuple[torch.Tensor, ...]:
    """Forward hook: return each tap with its true channel count."""
    widths = getattr(module, ALIGNED_ATTR)['taps']
    return tuple(o if w is None else o[:, :w]
                 for o, w in zip(outputs, widths))


def _align_backbone(backbone: ReXNet, multiple: int) -> None:
    width = round_up(backbone.stem.conv.out_channels, multiple)
    _pad_conv_module(backbone.stem, backbone.stem.conv.in_channels, width)
    padded: Dict[int, int] = {}  # tap -> padded width
    tap_of_block = {b: t for t, b in enumerate(backbone._tap_blocks)}
    for i, block in enumerate(backbone.blocks):
        width = _pad_block(block, width, multiple)
        if i in tap_of_block:
            padded[tap_of_block[i]] = width
    if backbone.pen is not None:
        pen = round_up(backbone.pen.conv.out_channels, multiple)
        _pad_conv_module(backbone.pen, width, pen)
        padded[5] = pen
    true = [backbone.feature_info[t]['num_chs']
            for t in backbone.out_indices]
    taps = tuple(None if padded[t] == n else n
                 for t, n in zip(backbone.out_indices, true))
    state = getattr(backbone, ALIGNED_ATTR, None)
    previous = state['multiple'] if state else 1
    setattr(backbone, ALIGNED_ATTR, dict(
        multiple=previous * multiple // math.gcd(previous, multiple),
        taps=taps))
    if state is None:
        backbone.register_forward_hook(_slice_taps)


def align_channels(model: nn.Module,
                   multiple: int = DEFAULT_MULTIPLE) -> nn.Module:
    """Zero-pad the internal channels of every ReXNet in `model`, in place.

    Works on a bare :class:`ReXNet` (any width and ``out_indices``), a
    :class:`ReXNetClassifier` or any model holding ReXNet backbones (e.g. an
    mmdet detector); a model without one is returned unchanged. Outputs are
    those of the original model: exactly in exact arithmetic, within float
    rounding in float32 (different kernels may sum in another order).

    Args:
        model (nn.Module): The model (usually in eval mode; fused or not).
        multiple (int): Every internal channel count becomes a multiple of
            it. 1 changes nothing. Default: 4 (what onnxruntime's NCHWc
            convs need).

    Returns:
        nn.Module: The same model object, aligned.

    Raises:
        ValueError: `multiple` is not an int >= 1, or a ReXNet has a norm
            layer other than BatchNorm (e.g. GroupNorm, which pools
            channels) or an activation with f(0) != 0. Nothing is changed
            then.

    Example:
        >>> import torch
        >>> from rexnet_det import ReXNet
        >>> from rexnet_det.models.utils import align_channels
        >>> model = ReXNet(out_indices=(1, 2, 3, 4)).eval()
        >>> x = torch.rand(1, 3, 64, 64)
        >>> before = model(x)
        >>> model = align_channels(model, multiple=4)
        >>> model.blocks[1].conv_pwl.conv.weight.shape
        torch.Size([28, 96, 1, 1])
        >>> after = model(x)
        >>> [tuple(t.shape[1:2]) for t in after]
        [(38,), (61,), (128,), (185,)]
        >>> all(torch.allclose(a, b, atol=1e-5) for a, b in zip(after, before))
        True
    """
    check_multiple(multiple)
    backbones: List[Tuple[str, ReXNet]] = [
        (n, m) for n, m in model.named_modules() if isinstance(m, ReXNet)]
    for name, backbone in backbones:
        _plan_checks(backbone, name)
    if multiple == 1:
        return model
    for _, backbone in backbones:
        _align_backbone(backbone, multiple)
    # Keep a fused channels_last model's new weights in NHWC.
    for module in model.modules():
        if getattr(module, FUSED_ATTR, {}).get('channels_last'):
            module.to(memory_format=torch.channels_last)
    return model


def align_for_export(model: nn.Module,
                     multiple: int = DEFAULT_MULTIPLE) -> nn.Module:
    """:func:`align_channels`, or `model` unchanged (with a warning naming
    the reason) when a ReXNet in it cannot be padded exactly, e.g. one with
    GroupNorm. What the exporters apply by default.

    Example:
        >>> from rexnet_det import ReXNet
        >>> gn = ReXNet(norm_cfg=dict(type='GN', num_groups=8)).eval()
        >>> align_for_export(gn) is gn  # warns, exports unaligned
        True
    """
    check_multiple(multiple)
    try:
        return align_channels(model, multiple)
    except ValueError as exc:
        warnings.warn(f'exporting without channel alignment: {exc}')
        return model
