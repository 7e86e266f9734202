"""Strict loading of any supported ReXNet checkpoint into our models."""
import os
import re
from collections import OrderedDict
from typing import Any, Dict, Optional, Union

import torch
import torch.nn as nn

from ..models import ReXNet, ReXNetClassifier
from ..models.variants import describe_state
from ..utils.errors import CheckpointError, CheckpointMismatchError
from .coverage import key_problems
from .formats import StateDict, to_rexnet_det
from .schemes import load_checkpoint_file


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


def load_pretrained(model: nn.Module,
                    checkpoint: Union[str, os.PathLike, Dict[str, Any]],
                    strict: bool = True,
                    prefix: Optional[str] = None,
                    map_location: Any = 'cpu',
                    backend_args: Optional[dict] = None) -> Dict[str, Any]:
    """Load a ReXNet checkpoint of any supported layout into `model`.

    The layout is detected (official clovaai file, timm file, this package's
    classifier or backbone, or an mmdet detector with ``backbone.*``),
    converted and loaded tensor by tensor.

    Args:
        model (ReXNet | ReXNetClassifier): The model to fill.
        checkpoint (str | dict): A path, URL or other mmengine scheme
            (read by :func:`load_checkpoint_file`: never runs code) or an
            already loaded checkpoint / state dict.
        strict (bool): Raise on missing, unexpected or mismatched tensors.
            Tensors of layers the model did not build (e.g. the penultimate
            conv when tap 5 is not requested, or the classifier head of a
            backbone) are never an error. Default: True.
        prefix (str, optional): Only use keys under this prefix (stripped),
            as in mmengine's ``Pretrained`` init; ``'backbone'`` and
            ``'backbone.'`` mean the same. Default: None.
        map_location: Passed to ``torch.load``. Default: ``'cpu'``.
        backend_args (dict, optional): mmengine file backend to read the
            file through. Default: None.

    Returns:
        dict: ``format`` (detected layout), ``loaded`` (model keys filled),
        ``skipped`` (checkpoint keys of layers the model does not have),
        ``missing``/``unexpected``/``mismatched`` (non-empty only when
        ``strict=False``).

    Raises:
        CheckpointMismatchError: On any mismatch when ``strict`` (the message
            lists the keys, or names both variants for another width/arch).
    """
    if not isinstance(model, (ReXNet, ReXNetClassifier)):
        raise TypeError('model must be a ReXNet or ReXNetClassifier, got '
                        f'{type(model).__name__}')
    is_path = isinstance(checkpoint, (str, os.PathLike))
    source = os.fspath(checkpoint) if is_path else 'state dict'
    obj = load_checkpoint_file(source, map_location, backend_args) \
        if is_path else checkpoint
    state = unwrap_state_dict(obj, source)
    if prefix and not prefix.endswith('.'):
        prefix += '.'
    if prefix:
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                            if k.startswith(prefix))
        if not state:
            raise CheckpointError(f'{source}: no key starts with prefix '
                                  f'{prefix!r}')
    canonical, fmt = to_rexnet_det(state)

    if isinstance(model, ReXNetClassifier):
        backbone, model_prefix = model.backbone, ''
    else:
        backbone, model_prefix = model, 'backbone.'
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
        ckpt_name = describe_state(canonical)
        if ckpt_name != backbone.arch_spec.name:
            raise CheckpointMismatchError(
                f'{source} holds {ckpt_name}, but the model is '
                f'{backbone.arch_spec.name}; build the model with the '
                "checkpoint's width_mult/arch or pick the matching file")
    problems = key_problems(missing, unexpected, mismatched)
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
