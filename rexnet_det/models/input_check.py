"""What a ReXNet backbone accepts as input, checked before the first conv.

Shapes found by experiment (``ReXNet`` widths 1.0, v1 and lite, batch 1
and 2, sides 1-64 px): every stride-2 3x3 conv has padding 1, so any side
>= 1 px works and the stride-``s`` map is ``ceil(H / s) x ceil(W / s)``.
In eval mode that is the whole story. In training mode each BatchNorm that
updates its statistics needs more than one value per channel, so

* the deepest trained BatchNorm (stride ``s``, 32 for the default taps)
  needs ``N * ceil(H / s) * ceil(W / s) >= 2``: with batch size 1 one side
  must be > ``s`` px;
* ReXNet v1's SE modules normalise one pooled value per image, so with
  trained SE BatchNorm the batch must hold >= 2 images at any image size.

SyncBN layers pool values over the process group and are not checked here.
"""
import math
from typing import Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def _trains_local_bn(module: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) and m.training and
               not isinstance(m, nn.SyncBatchNorm) for m in module.modules())


def train_bn_limits(backbone: nn.Module) -> Tuple[bool, int]:
    """Where a ReXNet's trained BatchNorm layers sit.

    Args:
        backbone (ReXNet): The backbone, in its current train/eval state.

    Returns:
        tuple[bool, int]: Whether an SE module's BatchNorm is trained, and
        the stride of the deepest trained BatchNorm (0 when none is).
    """
    if not backbone.training:
        return False, 0
    reduction = 2
    stride = reduction if _trains_local_bn(backbone.stem) else 0
    se_trained = False
    for block, cfg in zip(backbone.blocks, backbone.arch_spec.blocks):
        reduction *= cfg.stride
        se = getattr(block, 'se', None)
        if se is not None and _trains_local_bn(se):
            se_trained = True
        if _trains_local_bn(block):
            stride = reduction
    if backbone.pen is not None and _trains_local_bn(backbone.pen):
        stride = reduction
    return se_trained, stride


def check_backbone_input(backbone: nn.Module, x: torch.Tensor) -> None:
    """Raise a ``ValueError`` naming the shape and the minimum when `x` is
    not something `backbone` (a ReXNet) can run on in its current mode.

    Skipped while tracing or compiling (ONNX export, ``torch.compile``):
    a check there would only see the example input, or add shape guards.

    Args:
        backbone (ReXNet): The backbone about to run.
        x (Tensor): Its input.
    """
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    shape = tuple(x.shape)
    name = backbone.arch_spec.name
    if x.dim() != 4 or shape[1] != 3:
        raise ValueError(
            f'{name} expects a batch of 3-channel images of shape '
            f'(N, 3, H, W), got input of shape {shape}. Convert grayscale '
            '(1 channel) or RGBA (4 channel) images to 3 channels first, '
            "e.g. LoadImageFromFile(color_type='color') in the pipeline")
    if not x.is_floating_point():
        raise ValueError(
            f'{name} expects a floating point input, got {x.dtype} of shape '
            f'{shape}; normalise images first (DetDataPreprocessor does)')
    n, _, h, w = shape
    if n < 1 or h < 1 or w < 1:
        raise ValueError(f'{name} got an empty input of shape {shape}; the '
                         'minimum is 1 image of 1x1 px in eval mode')
    se_trained, stride = train_bn_limits(backbone)
    if se_trained and n < 2:
        raise ValueError(
            f'{name} in training mode needs a batch of >= 2 images, got '
            f'input of shape {shape}: the BatchNorm in its SE modules '
            'normalises one pooled value per image and needs more than one '
            'value per channel. Use batch size >= 2 per GPU, SyncBN, '
            'norm_eval=True, or eval mode')
    if stride and n * math.ceil(h / stride) * math.ceil(w / stride) < 2:
        raise ValueError(
            f'{name} input of shape {shape} is too small to train: its '
            f'stride-{stride} feature map is '
            f'{math.ceil(h / stride)}x{math.ceil(w / stride)} and BatchNorm '
            'needs more than one value per channel. Minimum in training '
            f'mode: N * ceil(H/{stride}) * ceil(W/{stride}) >= 2, i.e. with '
            f'batch size 1 one side must be >= {stride + 1} px (any size '
            '>= 1 px in eval mode)')
