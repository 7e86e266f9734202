"""Does a checkpoint cover a whole model?

mmengine's ``Runner.load_checkpoint`` (``load_from``, ``resume``,
``tools/test.py``) loads with ``strict=False``: a backbone-only or ImageNet
file fills the backbone, leaves neck and heads random, logs a warning and
the run goes on, evaluating to mAP 0. :func:`check_coverage` refuses that,
listing what is missing and, when the file is an ImageNet or backbone
checkpoint, saying where it belongs.
"""
import re
from collections import OrderedDict
from typing import Any, List, Optional

import torch
import torch.nn as nn

from ..models.pretrained_init import SOURCE_KEY
from ..utils.errors import CheckpointMismatchError
from .formats import CheckpointFormatError, detect_format

_LISTED = 10


def source_of(checkpoint: Any, default: str = 'the checkpoint') -> str:
    """The file a checkpoint was read from, as our loader recorded it."""
    state = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    meta = getattr(state, '_metadata', None) or {}
    return meta.get('', {}).get(SOURCE_KEY, default)


def tag_source(checkpoint: Any, source: str) -> Any:
    """Record `source` where mmengine hands it to ``_load_from_state_dict``
    (the state dict's per-module ``_metadata``), so load errors name it.

    Returns:
        The checkpoint; a plain-dict state dict becomes an OrderedDict, the
        only kind that can carry ``_metadata``.
    """
    wrapped = isinstance(checkpoint, dict) and isinstance(
        checkpoint.get('state_dict'), dict)
    state = checkpoint['state_dict'] if wrapped else checkpoint
    if not isinstance(state, dict) or not state or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        return checkpoint
    if not isinstance(state, OrderedDict):
        state = OrderedDict(state)
        if wrapped:
            checkpoint['state_dict'] = state
        else:
            checkpoint = state
    meta = getattr(state, '_metadata', None)
    if meta is None:
        meta = state._metadata = OrderedDict({'': {}})
    for entry in meta.values():
        if isinstance(entry, dict):
            entry[SOURCE_KEY] = source
    meta.setdefault('', {})[SOURCE_KEY] = source
    return checkpoint


def _hint(state: dict) -> Optional[str]:
    """Where a ReXNet ImageNet or backbone file belongs, if it is one."""
    try:
        fmt = detect_format(state)
    except CheckpointFormatError:
        return None
    if fmt in ('clovaai', 'timm'):
        return (f'this is an ImageNet ReXNet checkpoint ({fmt} layout); use '
                "it as `model.backbone.init_cfg=dict(type='Pretrained', "
                "checkpoint=...)`, not as load_from or a test checkpoint")
    if fmt == 'rexnet_det_backbone' or all(
            k.startswith(('backbone.', 'head.')) for k in state):
        return ('this is an ImageNet ReXNet checkpoint (a classifier or a '
                'bare backbone); use it as `model.backbone.init_cfg='
                "dict(type='Pretrained', checkpoint=...)`")
    return None


def _listed(keys: List[str]) -> str:
    """Counts per top-level module, then the first keys."""
    groups: dict = {}
    for key in keys:
        top = key.split('.', 1)[0]
        groups[top] = groups.get(top, 0) + 1
    counts = ', '.join(f'{top}.* {n}' for top, n in groups.items())
    more = ', ...' if len(keys) > _LISTED else ''
    return f'{counts}; ' + ', '.join(keys[:_LISTED]) + more


def key_problems(missing: List[str], unexpected: List[str],
                 mismatched: List[str]) -> List[str]:
    """The parts of a load error, one per kind of problem (empty: none)."""
    problems = []
    for kind, keys in (('missing keys', missing),
                       ('unexpected keys', unexpected),
                       ('shape mismatch', mismatched)):
        if keys:
            problems.append(f'{kind} ({len(keys)}): {_listed(keys)}')
    return problems


def check_coverage(model: nn.Module, checkpoint: Any,
                   source: Optional[str] = None) -> None:
    """Raise unless `checkpoint` holds exactly the tensors of `model`.

    Args:
        model (nn.Module): The model about to be filled (unwrapped).
        checkpoint: The loaded checkpoint (``{'state_dict': ...}`` or a
            plain state dict). A DDP ``module.`` prefix is ignored.
        source (str, optional): The file, for the message. Default: what
            our loader recorded in the checkpoint.

    Raises:
        CheckpointMismatchError: Keys are missing or unexpected, or shapes
            differ. The message lists them and hints at ``init_cfg`` for
            ImageNet / backbone-only files.
    """
    source = source or source_of(checkpoint)
    state = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else checkpoint
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f'{source} holds no state dict (got '
                                      f'{type(state).__name__})')
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model '
                  f'{tuple(target[k].shape)}' for k, v in state.items()
                  if k in target and hasattr(v, 'shape') and
                  tuple(v.shape) != tuple(target[k].shape)]
    problems = key_problems(missing, unexpected, mismatched)
    if not problems:
        return
    hint = _hint(state)
    raise CheckpointMismatchError(
        f'{source} does not cover {type(model).__name__}: '
        + ' | '.join(problems) + '. Nothing was loaded.'
        + (f' Hint: {hint}.' if hint else '')
        + ' To load it partially on purpose, set allow_partial_load=True in '
        'the config (--cfg-options allow_partial_load=True).')
