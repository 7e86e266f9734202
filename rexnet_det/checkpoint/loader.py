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
from ..utils.strict_state import (compare_state, copy_state, listed,
                                  storage_problem)
from .archive import expect_model, stop_expecting
from .formats import StateDict, to_rexnet_det
from .schemes import load_checkpoint_file


def unwrap_state_dict(obj: Any, source: str = 'checkpoint') -> StateDict:
    """Find the state dict inside a loaded checkpoint object.

    Accepts a plain state dict, mmengine's ``{'state_dict': ...}``, or
    ``{'model': ...}``; strips a DDP ``module.`` prefix.

    Raises:
        CheckpointError: No dict of tensors is found.
        CheckpointMismatchError: Some entries are not dense tensors with
            data (a numpy array, number, string, None, a meta or sparse
            tensor); the message names them.
    """
    if isinstance(obj, dict):
        for key in ('state_dict', 'model'):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f'{source}: no state dict of tensors found '
                              f'(got {type(obj).__name__})')
    bad = [f'{k}: {p}' for k, v in obj.items() if (p := storage_problem(v))]
    if bad:
        raise CheckpointMismatchError(
            f'{source} holds entries that are not dense tensors '
            f'({len(bad)}): {listed(bad)}. Nothing was loaded.')
    if all(k.startswith('module.') for k in obj):
        obj = OrderedDict((k[len('module.'):], v) for k, v in obj.items())
    return obj


def load_pretrained(model: nn.Module,
                    checkpoint: Union[str, os.PathLike, Dict[str, Any]],
                    strict: bool = True,
                    prefix: Optional[str] = None,
                    map_location: Any = 'cpu',
                    backend_args: Optional[dict] = None,
                    allow_nonfinite: bool = False) -> Dict[str, Any]:
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
        allow_nonfinite (bool): Load NaN / Inf values too (refused by
            default, whatever `strict`). Default: False.

    Returns:
        dict: ``format`` (detected layout), ``loaded`` (model keys filled),
        ``skipped`` (checkpoint keys of layers the model does not have),
        ``missing``/``unexpected``/``mismatched`` (non-empty only when
        ``strict=False``).

    Raises:
        CheckpointMismatchError: On any mismatch when ``strict`` (the message
            lists the keys, or names both variants for another width/arch);
            whatever `strict`, on entries that are not dense tensors, of
            another dtype class (an int64 or complex tensor for a float
            weight) or, unless `allow_nonfinite`, holding NaN / Inf. Every
            entry is checked before any is copied: on error nothing was
            loaded.
    """
    if not isinstance(model, (ReXNet, ReXNetClassifier)):
        raise TypeError('model must be a ReXNet or ReXNetClassifier, got '
                        f'{type(model).__name__}')
    is_path = isinstance(checkpoint, (str, os.PathLike))
    source = os.fspath(checkpoint) if is_path else 'state dict'
    if is_path:
        expected = expect_model(model)
        try:
            obj = load_checkpoint_file(source, map_location, backend_args)
        finally:
            stop_expecting(expected)
    else:
        obj = checkpoint
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

    # entries that do not fit are named as in the file
    file_keys = {id(v): k for k, v in state.items()}
    report = compare_state(
        target, incoming, allow_nonfinite,
        ignore_missing=lambda k: k.endswith('num_batches_tracked'),
        ignore_unexpected=is_unbuilt,
        name=lambda k: (f'{prefix or ""}{file_keys[id(incoming[k])]}'
                        if id(incoming[k]) in file_keys else k))
    skipped = [k for k in incoming if k not in target and is_unbuilt(k)]
    if strict and report.mismatched:
        ckpt_name = describe_state(canonical)
        if ckpt_name != backbone.arch_spec.name:
            raise CheckpointMismatchError(
                f'{source} holds {ckpt_name}, but the model is '
                f'{backbone.arch_spec.name}; build the model with the '
                "checkpoint's width_mult/arch or pick the matching file")
    if (strict and report) or report.garbage:
        advice = (' To load non-finite weights on purpose, pass '
                  'allow_nonfinite=True.' if report.nonfinite else '')
        raise CheckpointMismatchError(
            f'{source} ({fmt} layout) does not fit {type(model).__name__} '
            f'({backbone.arch_spec.name}): '
            + ' | '.join(report.problems()) + '. Nothing was loaded.'
            + advice)
    copy_state(target, incoming, report.fits)
    return dict(format=fmt, loaded=report.fits, skipped=skipped,
                missing=report.missing, unexpected=report.unexpected,
                mismatched=report.mismatched)
