"""Does a checkpoint cover a whole model?

mmengine's ``Runner.load_checkpoint`` (``load_from``, ``resume``,
``tools/test.py``) loads with ``strict=False``: a backbone-only or ImageNet
file fills the backbone, leaves neck and heads random, logs a warning and
the run goes on, evaluating to mAP 0; one entry that is not a dense tensor
is skipped with a warning. :func:`check_coverage` refuses both before
anything is copied, listing what is missing or wrong and, when the file is
an ImageNet or backbone checkpoint, saying where it belongs.
"""
import re
from collections import OrderedDict
from typing import Any, Optional

import torch
import torch.nn as nn

from ..models.pretrained_init import SOURCE_KEY
from ..utils.errors import CheckpointMismatchError
from ..utils.strict_state import compare_state
from .formats import CheckpointFormatError, detect_format


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
    # a dict with some tensors: entries of other kinds are refused by name
    # later, and that message needs the file's name
    if not isinstance(state, dict) or not any(
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
    # every module the keys name, also in a hand-made dict without
    # _metadata (an added entry holds no 'version': the same as none)
    for key in state:
        parts = key.split('.')[:-1] if isinstance(key, str) else []
        for n in range(len(parts) + 1):
            entry = meta.setdefault('.'.join(parts[:n]), {})
            if isinstance(entry, dict):
                entry[SOURCE_KEY] = source
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


def check_coverage(model: nn.Module, checkpoint: Any,
                   source: Optional[str] = None, partial: bool = False,
                   allow_nonfinite: bool = False) -> None:
    """Raise unless every entry of `checkpoint` fits `model` and together
    they cover it (:func:`~rexnet_det.utils.strict_state.compare_state`).

    Args:
        model (nn.Module): The model about to be filled (unwrapped).
        checkpoint: The loaded checkpoint (``{'state_dict': ...}`` or a
            plain state dict). A DDP ``module.`` prefix is ignored.
        source (str, optional): The file, for the message. Default: what
            our loader recorded in the checkpoint.
        partial (bool): Tolerate missing and unexpected keys and other
            shapes (mmengine skips those); entries that would copy garbage
            or fail to copy are still refused. Default: False.
        allow_nonfinite (bool): Let NaN / Inf weights through.
            Default: False.

    Raises:
        CheckpointMismatchError: Keys are missing or unexpected, shapes or
            dtype classes differ, an entry is not a dense tensor, or a
            value is NaN / Inf. The message lists them and hints at
            ``init_cfg`` for ImageNet / backbone-only files. Nothing was
            loaded.
    """
    source = source or source_of(checkpoint)
    state = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else checkpoint
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f'{source} holds no state dict (got '
                                      f'{type(state).__name__})')
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    report = compare_state(model.state_dict(), state, allow_nonfinite)
    if not report or (partial and not report.garbage):
        return
    hint = _hint(state) if report.missing and not partial else None
    advice = []
    if report.nonfinite:
        advice.append('To load non-finite weights on purpose, set '
                      'allow_nonfinite_weights=True in the config')
    if not report.garbage:  # then not partial
        advice.append('To load it partially on purpose, set '
                      'allow_partial_load=True in the config '
                      '(--cfg-options allow_partial_load=True)')
    verb = 'does not cover' if report.missing and not partial \
        else 'does not fit'
    raise CheckpointMismatchError(
        f'{source} {verb} {type(model).__name__}: '
        + ' | '.join(report.problems(garbage_only=partial))
        + '. Nothing was loaded.'
        + (f' Hint: {hint}.' if hint else '')
        + ''.join(f' {a}.' for a in advice))
