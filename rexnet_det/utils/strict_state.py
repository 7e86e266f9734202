"""The one strict comparison of a checkpoint's entries with a model's.

Every route that fills a model from a file decides with
:func:`compare_state` whether all of it can be copied, before anything is:
``load_pretrained`` and ``init_cfg=dict(type='Pretrained')``
(:mod:`rexnet_det.checkpoint.loader`), ``load_from``, ``resume`` and
``tools/test.py`` (``StrictLoadHook`` through
:func:`rexnet_det.checkpoint.check_coverage`), and a parent module's load
reaching a ReXNet (:mod:`rexnet_det.models.pretrained_init`).

An entry fits a model tensor when it is

* a real tensor: exactly ``torch.Tensor`` or ``nn.Parameter``, not a numpy
  array, number, string, ``None`` or tensor subclass;
* dense and in memory: strided layout (not sparse), not a ``meta`` tensor
  (which has no data), on the CPU or on the model tensor's device;
* of the same shape;
* of the same dtype class: floating into floating, integer into integer,
  bool into bool (precision may differ: float16 into float32 is exact;
  complex or int64 into a float weight is not);
* finite: no NaN or Inf, unless the caller allows non-finite values.

torch's ``load_state_dict(strict=False)``, which mmengine uses, copies
entry by entry and turns a failed copy into a warning: one bad entry means
a half-loaded model. Hence the check of every entry first.

This sits in the bottom floor so that the model floor can use it too.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
import torch.nn as nn

_LISTED = 10
_TENSOR_TYPES = (torch.Tensor, nn.Parameter)


def dtype_class(dtype: torch.dtype) -> str:
    """``'floating'``, ``'complex'``, ``'bool'``, ``'quantized'`` or
    ``'integer'``."""
    if dtype.is_floating_point:
        return 'floating'
    if dtype.is_complex:
        return 'complex'
    if dtype == torch.bool:
        return 'bool'
    if str(dtype).split('.')[-1].startswith(('qint', 'quint')):
        return 'quantized'
    return 'integer'


def storage_problem(value: Any,
                    devices: Optional[tuple] = None) -> Optional[str]:
    """Why `value` is not a dense tensor with data in memory, on one of
    `devices` (device types; None: any but ``meta``). None when it is."""
    if type(value) not in _TENSOR_TYPES:
        kind = type(value)
        name = kind.__name__ if kind.__module__ == 'builtins' else \
            f'{kind.__module__}.{kind.__name__}'
        return f'of type {name}, not a tensor'
    if value.is_meta:
        return 'a meta tensor (no data)'
    if value.layout != torch.strided:
        return f'a {str(value.layout).split(".")[-1]} tensor, not dense'
    if devices is not None and value.device.type not in devices:
        return f'a tensor on {value.device}'
    return None


def nonfinite_count(value: torch.Tensor) -> int:
    """How many NaN or Inf values a floating or complex tensor holds."""
    if not (value.dtype.is_floating_point or value.dtype.is_complex):
        return 0
    return int(value.numel() - torch.isfinite(value).sum())


def listed(keys: List[str]) -> str:
    """Counts per top-level module, then the first keys."""
    groups: Dict[str, int] = {}
    for key in keys:
        top = key.split(':', 1)[0].split('.', 1)[0]
        groups[top] = groups.get(top, 0) + 1
    counts = ', '.join(f'{top}.* {n}' for top, n in groups.items())
    more = ', ...' if len(keys) > _LISTED else ''
    return f'{counts}; ' + ', '.join(keys[:_LISTED]) + more


@dataclass
class StateReport:
    """What :func:`compare_state` found; each list holds key names (with
    the detail after a colon where there is one)."""
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    not_tensors: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)
    wrong_dtype: List[str] = field(default_factory=list)
    nonfinite: List[str] = field(default_factory=list)
    fits: List[str] = field(default_factory=list)  # keys safe to copy

    _KINDS = (('missing keys', 'missing'), ('unexpected keys', 'unexpected'),
              ('not dense tensors', 'not_tensors'),
              ('shape mismatch', 'mismatched'),
              ('dtype mismatch', 'wrong_dtype'),
              ('non-finite values', 'nonfinite'))

    _GARBAGE = ('not_tensors', 'wrong_dtype', 'nonfinite')

    def problems(self, garbage_only: bool = False) -> List[str]:
        """The parts of an error message, one per kind of problem (only
        those of :attr:`garbage` if `garbage_only`)."""
        return [f'{kind} ({len(keys)}): {listed(keys)}'
                for kind, attr in self._KINDS
                if (keys := getattr(self, attr)) and
                (attr in self._GARBAGE or not garbage_only)]

    @property
    def garbage(self) -> bool:
        """Entries that would copy garbage or fail to copy (anything but
        keys missing on one side or shapes differing)."""
        return any(getattr(self, attr) for attr in self._GARBAGE)

    def __bool__(self) -> bool:
        return bool(self.problems())


def compare_state(target: Mapping[str, torch.Tensor],
                  incoming: Mapping[str, Any],
                  allow_nonfinite: bool = False,
                  ignore_missing: Optional[Callable[[str], bool]] = None,
                  ignore_unexpected: Optional[Callable[[str], bool]] = None,
                  name: Callable[[str], str] = str) -> StateReport:
    """Compare every entry of `incoming` with the model's `target`.

    Args:
        target (Mapping): The model's state dict (or the part being filled).
        incoming (Mapping): The checkpoint's entries, under the same names.
        allow_nonfinite (bool): Let NaN / Inf through. Default: False.
        ignore_missing (callable, optional): Keys of `target` that may be
            absent from `incoming`. Default: none.
        ignore_unexpected (callable, optional): Keys of `incoming` that may
            be absent from `target` (and are then not checked).
        name (callable): How the key of an entry that does not fit is shown
            (e.g. its name in the file when `incoming` was converted; keys
            missing or unexpected are the model's names). Default: the key.

    Returns:
        StateReport: Empty (falsy) when every entry fits; ``fits`` lists the
        keys that can be copied.
    """
    report = StateReport()
    for key in target:
        if key not in incoming and not (ignore_missing and
                                        ignore_missing(key)):
            report.missing.append(key)
    for key, value in incoming.items():
        want = target.get(key)
        shown = name(key)
        if want is None:
            if not (ignore_unexpected and ignore_unexpected(key)):
                report.unexpected.append(key)
            continue
        problem = storage_problem(value, ('cpu', want.device.type))
        if problem:
            report.not_tensors.append(f'{shown}: {problem}')
        elif value.shape != want.shape:
            report.mismatched.append(f'{shown}: checkpoint '
                                     f'{tuple(value.shape)} vs model '
                                     f'{tuple(want.shape)}')
        elif dtype_class(value.dtype) != dtype_class(want.dtype):
            report.wrong_dtype.append(f'{shown}: checkpoint {value.dtype} vs '
                                      f'model {want.dtype}')
        elif not allow_nonfinite and (bad := nonfinite_count(value)):
            report.nonfinite.append(f'{shown}: {bad} of {value.numel()} are '
                                    'NaN or Inf')
        else:
            report.fits.append(key)
    return report


def copy_state(target: Mapping[str, torch.Tensor],
               incoming: Mapping[str, torch.Tensor],
               keys: List[str]) -> None:
    """Copy `keys` of `incoming` into the model tensors of `target` (call
    only with keys :func:`compare_state` found fitting)."""
    with torch.no_grad():
        for key in keys:
            target[key].copy_(incoming[key])
