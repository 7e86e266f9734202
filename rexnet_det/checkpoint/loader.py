"""Strict loading of any supported ReXNet checkpoint into our models."""
import os
import re
from collections import OrderedDict
from typing import Any, Dict, Optional, Union

import torch
import torch.nn as nn

from ..models.arch import OFFICIAL_WIDTHS, rexnet_arch
from .formats import StateDict, to_rexnet_det
from .safe_load import CheckpointError, safe_torch_load


class CheckpointMismatchError(CheckpointError):
    """A checkpoint that does not fit the model (keys, shapes or variant)."""


def unwrap_state_dict(obj: Any, source: str = 'checkpoint') -> StateDict:
    """Find the state dict inside a loaded checkpoint object.

    Accepts a plain state dict, mmengine's ``{'state_dict': ...}``, or
    ``{'model': ...}``; strips a DDP ``module.`` prefix.
    """
    if isinstance(obj, dict):
        for key in ('state_dict', 'model'):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f'{source}: no state dict of tensors found '
                              f'(got {type(obj).__name__})')
    if all(k.startswith('module.') for k in obj):
        obj = OrderedDict((k[len('module.'):], v) for k, v in obj.items())
    return obj


def _describe(state: StateDict) -> str:
    """Name the variant a canonical (rexnet_det) state dict holds."""
    def out_ch(key):
        t = state.get(key)
        return None if t is None else int(t.shape[0])

    stem = out_ch('backbone.stem.conv.weight')
    block_ids = sorted({int(m[1]) for k in state
                        if (m := re.match(r'backbone\.blocks\.(\d+)\.', k))})
    blocks = [out_ch(f'backbone.blocks.{b}.conv_pwl.conv.weight')
              for b in block_ids]
    pen = out_ch('backbone.pen.conv.weight')
    has_se = any('.se.' in k for k in state)
    for arch, widths in OFFICIAL_WIDTHS.items():
        if arch == 'lite' and has_se:
            continue
        for width in widths:
            spec = rexnet_arch(width, 1.0, arch)
            ref = [b.out_channels for b in spec.blocks][:len(blocks)]
            if stem == spec.stem_channels and blocks == ref and \
                    pen in (None, spec.pen_channels):
                return spec.name
    return (f'an unknown ReXNet (stem {stem} ch, {len(blocks)} blocks ending '
            f'at {blocks[-1] if blocks else None} ch, pen {pen} ch)')


def load_pretrained(model: nn.Module,
                    checkpoint: Union[str, os.PathLike, Dict[str, Any]],
                    strict: bool = True,
                    prefix: Optional[str] = None,
                    map_location: Any = 'cpu') -> Dict[str, Any]:
    """Load a ReXNet checkpoint of any supported layout into `model`.

    The layout is detected (official clovaai file, timm file, this package's
    classifier or backbone, or an mmdet detector with ``backbone.*``),
    converted and loaded tensor by tensor.

    Args:
        model (ReXNet | ReXNetClassifier): The model to fill.
        checkpoint (str | dict): A path (read with ``weights_only=True``) or
            an already loaded checkpoint / state dict.
        strict (bool): Raise on missing, unexpected or mismatched tensors.
            Tensors of layers the model did not build (e.g. the penultimate
            conv when tap 5 is not requested, or the classifier head of a
            backbone) are never an error. Default: True.
        prefix (str, optional): Only use keys under this prefix (stripped),
            as in mmengine's ``Pretrained`` init. Default: None.
        map_location: Passed to ``torch.load``. Default: ``'cpu'``.

    Returns:
        dict: ``format`` (detected layout), ``loaded`` (model keys filled),
        ``skipped`` (checkpoint keys of layers the model does not have),
        ``missing``/``unexpected``/``mismatched`` (non-empty only when
        ``strict=False``).

    Raises:
        CheckpointMismatchError: On any mismatch when ``strict`` (the message
            lists the keys, or names both variants for another width/arch).
    """
    from ..models import ReXNet, ReXNetClassifier
    source = os.fspath(checkpoint) if isinstance(
        checkpoint, (str, os.PathLike)) else 'state dict'
    obj = safe_torch_load(source, map_location) if isinstance(
        checkpoint, (str, os.PathLike)) else checkpoint
    state = unwrap_state_dict(obj, source)
    if prefix:
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                            if k.startswith(prefix))
        if not state:
            raise CheckpointError(f'{source}: no key starts with prefix '
                                  f'{prefix!r}')
    canonical, fmt = to_rexnet_det(state)

    if isinstance(model, ReXNetClassifier):
        backbone, model_prefix = model.backbone, ''
    elif isinstance(model, ReXNet):
        backbone, model_prefix = model, 'backbone.'
    else:
        raise TypeError('model must be a ReXNet or ReXNetClassifier, got '
                        f'{type(model).__name__}')
    target = model.state_dict()
    incoming = OrderedDict((k[len(model_prefix):], v)
                           for k, v in canonical.items()
                           if k.startswith(model_prefix))
    if isinstance(model, ReXNet) and not incoming:
        raise CheckpointMismatchError(f'{source} ({fmt}) holds no backbone '
                                      'tensors')

    # Layers that exist in the full architecture but were not built here.
    num_built = len(backbone.blocks)
    unbuilt = re.compile(
        r'^(backbone\.)?(blocks\.(\d+)\.|pen\.)')

    def is_unbuilt(key: str) -> bool:
        m = unbuilt.match(key)
        if not m:
            return False
        if m[2] == 'pen.':
            return backbone.pen is None
        return int(m[3]) >= num_built

    missing = [k for k in target if k not in incoming and
               not k.endswith('num_batches_tracked')]
    skipped = [k for k in incoming if k not in target and is_unbuilt(k)]
    unexpected = [k for k in incoming if k not in target and
                  not is_unbuilt(k)]
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model '
                  f'{tuple(target[k].shape)}' for k, v in incoming.items()
                  if k in target and v.shape != target[k].shape]

    if strict and mismatched:
        ckpt_name = _describe(canonical)
        if ckpt_name != backbone.arch_spec.name:
            raise CheckpointMismatchError(
                f'{source} holds {ckpt_name}, but the model is '
                f'{backbone.arch_spec.name}; build the model with the '
                "checkpoint's width_mult/arch or pick the matching file")
    problems = []
    if missing:
        problems.append(f'missing keys ({len(missing)}): {", ".join(missing)}')
    if unexpected:
        problems.append(f'unexpected keys ({len(unexpected)}): '
                        f'{", ".join(unexpected)}')
    if mismatched:
        problems.append(f'shape mismatch ({len(mismatched)}): '
                        f'{"; ".join(mismatched)}')
    if strict and problems:
        raise CheckpointMismatchError(
            f'{source} ({fmt} layout) does not fit {type(model).__name__} '
            f'({backbone.arch_spec.name}): ' + ' | '.join(problems))

    loaded = []
    with torch.no_grad():
        for key, value in incoming.items():
            if key in target and value.shape == target[key].shape:
                target[key].copy_(value)
                loaded.append(key)
    return dict(format=fmt, loaded=loaded, skipped=skipped, missing=missing,
                unexpected=unexpected, mismatched=mismatched)
