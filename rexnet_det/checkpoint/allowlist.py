"""What a checkpoint may contain besides tensors: data, never machinery.

``torch.load(weights_only=True)`` rebuilds tensors and plain containers and
refuses every other global a pickle names, unless it is allowlisted. A
bare allowlist is not enough, though: an allowlisted class is rebuilt with
whatever state the file supplies. ``numpy.dtype`` plus ``ndarray`` let a
file build an object array over raw bytes, which numpy reads as pointers
(a crash, or worse), and ``HistoryBuffer`` writes the file's state into a
dict shared by the whole process.

So no real numpy or mmengine class is handed to the unpickler. Each name a
checkpoint legitimately uses maps to a stand-in that checks its arguments
and state and builds the real object only from validated data:

===========================================  ==============================
pickle global                                stand-in accepts
===========================================  ==============================
``numpy.dtype``                              bool, int, uint, float and
                                             complex dtypes; no object,
                                             structured, string or
                                             datetime dtype
``numpy[._]core.multiarray._reconstruct``    ``numpy.ndarray`` only (no
+ ``numpy.ndarray``                          subclass); raw bytes whose
                                             length matches shape x itemsize
``numpy[._]core.multiarray.scalar``          one plain value of such a dtype
``mmengine...HistoryBuffer``                 1-D numeric histories of equal
                                             length, a positive int length;
                                             the four built-in statistics
``getattr``                                  ``getattr(HistoryBuffer, s)``
                                             for its 4 statistics and
                                             ``getattr(OneCycleParamScheduler,
                                             '_annealing_cos'|'_linear')``
``bytes``                                    ``bytes()`` (protocol 2's empty
                                             bytes), nothing else
===========================================  ==============================

Anything else is refused by torch, naming the global. After unpickling,
:func:`materialize` swaps the stand-ins for the real objects. The result
holds only tensors, containers, numbers, strings, numpy arrays and scalars
of plain dtypes and HistoryBuffers.

Extra classes of your own can be admitted for one load with
:func:`trusted_globals` or for the process with :func:`trust_globals`. They
are handed to torch's own allowlist for our loads only; pickle is never
turned back on.
"""
import contextlib
import math
import pickle
from typing import Any, Dict, Iterable, Iterator, List, Tuple

import numpy as np

#: numpy dtype kinds a checkpoint may hold: bool, int, uint, float, complex.
PLAIN_KINDS = 'biufc'
#: HistoryBuffer statistics that mmengine pickles by name.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
#: Functions a OneCycle scheduler keeps as its ``anneal_func``.
ONE_CYCLE_ANNEAL = ('_annealing_cos', '_annealing_linear')

_HISTORY_BUFFER = 'mmengine.logging.history_buffer.HistoryBuffer'
_ONE_CYCLE = ('mmengine.optim.scheduler.param_scheduler.'
              'OneCycleParamScheduler')


def _refuse(message: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f'Refused content: {message}')


class _Name:
    """Stands in for a class the file may only name, never construct."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, *args, **kwargs):
        raise _refuse(f'GLOBAL {self.path} may not be called or '
                      'constructed here')

    def __repr__(self) -> str:
        return self.path


_NDARRAY = _Name('numpy.ndarray')
_ONE_CYCLE_NAME = _Name(_ONE_CYCLE)


class PendingDtype:
    """Stand-in for ``numpy.dtype(spec, align, copy)`` and its state."""

    def __init__(self, spec: Any = None, align: Any = False,
                 copy: Any = False) -> None:
        if not isinstance(spec, str):
            raise _refuse(f'numpy.dtype({spec!r}): only a dtype name is '
                          'allowed')
        try:
            dtype = np.dtype(spec)
        except TypeError:
            raise _refuse(f'numpy.dtype({spec!r}) is not a dtype') from None
        if dtype.kind not in PLAIN_KINDS or dtype.fields is not None or \
                dtype.subdtype is not None or dtype.hasobject:
            raise _refuse(f'numpy.dtype({spec!r}): only bool, int, uint, '
                          'float and complex dtypes are allowed, not '
                          f'{dtype.kind!r} ({dtype})')
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        # numpy's layout: (version, byteorder, subarray, names, fields,
        # elsize, alignment, flags[, metadata]). For a plain dtype all but
        # the byte order are fixed; anything else would reshape it.
        if not isinstance(state, tuple) or len(state) not in (8, 9) or \
                state[0] not in (3, 4):
            raise _refuse(f'numpy dtype state {state!r}')
        _, order, subarray, names, fields, elsize, alignment, flags = \
            state[:8]
        metadata = state[8] if len(state) == 9 else None
        if order not in ('<', '>', '|', '=') or \
                (subarray, names, fields, metadata) != (None, ) * 4 or \
                (elsize, alignment, flags) != (-1, -1, 0):
            raise _refuse(f'numpy dtype state {state!r}: only plain '
                          'numeric dtypes are allowed')
        if order in '<>':
            self.dtype = self.dtype.newbyteorder(order)


def _dtype_of(value: Any, where: str) -> np.dtype:
    if not isinstance(value, PendingDtype):
        raise _refuse(f'{where}: dtype {value!r} was not built by '
                      'numpy.dtype')
    return value.dtype


def _check_bytes(raw: Any, count: int, dtype: np.dtype, where: str) -> bytes:
    if not isinstance(raw, (bytes, bytearray)):
        raise _refuse(f'{where}: data of type {type(raw).__name__}, '
                      'expected bytes')
    if len(raw) != count * dtype.itemsize:
        raise _refuse(f'{where}: {len(raw)} bytes of data, but {count} '
                      f'values of {dtype} need {count * dtype.itemsize}')
    return bytes(raw)


class PendingArray:
    """What ``_reconstruct`` returns; ``__setstate__`` gets the array's
    shape, dtype and raw bytes and builds a copy from them."""

    array = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5 or \
                state[0] != 1:
            raise _refuse(f'numpy array state of type '
                          f'{type(state).__name__}')
        _, shape, dtype, fortran, raw = state
        if not isinstance(shape, tuple) or not all(
                type(n) is int and n >= 0 for n in shape):
            raise _refuse(f'numpy array shape {shape!r}')
        if type(fortran) is not bool:
            raise _refuse(f'numpy array order flag {fortran!r}')
        dtype = _dtype_of(dtype, 'numpy array')
        count = math.prod(shape)
        raw = _check_bytes(raw, count, dtype, f'numpy array of shape {shape}')
        self.array = np.frombuffer(raw, dtype=dtype).reshape(
            shape, order='F' if fortran else 'C').copy(order='K')


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> PendingArray:
    if subtype is not _NDARRAY:
        raise _refuse(f'numpy _reconstruct of {subtype!r}: only '
                      'numpy.ndarray is allowed')
    return PendingArray()


def _scalar(dtype: Any, raw: Any = None) -> Any:
    dtype = _dtype_of(dtype, 'numpy scalar')
    raw = _check_bytes(raw, 1, dtype, f'numpy {dtype} scalar')
    return np.frombuffer(raw, dtype=dtype)[0]


class PendingHistoryBuffer:
    """Stand-in for mmengine's ``HistoryBuffer``: keeps its state until
    :func:`materialize` builds a real one from the checked values."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _empty_bytes(*args: Any) -> bytes:
    """Stands in for ``builtins.bytes``: pickle protocol 2 writes ``b''``
    (an empty array's data) as ``bytes()``; nothing else is allowed."""
    if args:
        raise _refuse(f'bytes{args!r}: only bytes() is allowed')
    return b''


_STATISTIC = object()  # getattr(HistoryBuffer, <built-in statistic>)


def _getattr(obj: Any, name: Any) -> Any:
    """Stands in for ``builtins.getattr``: resolves only the attribute
    lookups mmengine checkpoints contain."""
    if obj is PendingHistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return _STATISTIC
    if obj is _ONE_CYCLE_NAME and name in ONE_CYCLE_ANNEAL:
        from mmengine.optim.scheduler.param_scheduler import \
            OneCycleParamScheduler
        return getattr(OneCycleParamScheduler, name)
    raise _refuse(f'getattr({obj!r}, {name!r}) is not an allowed '
                  'attribute lookup')


def _build_history_buffer(state: Any) -> Any:
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = {'max_length', '_log_history', '_count_history',
               'statistics_methods'}
    if not isinstance(state, dict) or not set(state) <= allowed:
        raise _refuse(f'HistoryBuffer state with keys '
                      f'{sorted(state) if isinstance(state, dict) else state}')
    methods = state.get('statistics_methods', {})
    if not isinstance(methods, dict) or any(
            v is not _STATISTIC or k not in HISTORY_BUFFER_STATISTICS
            for k, v in methods.items()):
        raise _refuse('HistoryBuffer statistics other than the built-in '
                      f'{HISTORY_BUFFER_STATISTICS}')
    logs, counts = state.get('_log_history'), state.get('_count_history')
    length = state.get('max_length')
    for name, value in (('_log_history', logs), ('_count_history', counts)):
        if not isinstance(value, np.ndarray) or value.ndim != 1:
            raise _refuse(f'HistoryBuffer {name} must be a 1-D array')
    if len(logs) != len(counts) or type(length) is not int or length < 1:
        raise _refuse('HistoryBuffer histories of different lengths or an '
                      f'invalid max_length {length!r}')
    buffer = HistoryBuffer(max_length=length)
    buffer._log_history, buffer._count_history = logs, counts
    return buffer


def materialize(obj: Any) -> Any:
    """Replace the stand-ins in an unpickled object by real objects.

    Raises:
        pickle.UnpicklingError: A stand-in never received its state.
    """
    memo: Dict[int, Any] = {}

    def walk(x: Any) -> Any:
        key = id(x)
        if key in memo:
            return memo[key]
        if isinstance(x, PendingArray):
            if x.array is None:
                raise _refuse('numpy array without data')
            out = x.array
        elif isinstance(x, PendingDtype):
            out = x.dtype
        elif isinstance(x, PendingHistoryBuffer):
            state = x.state
            if isinstance(state, dict):  # statistics stay markers
                state = {k: v if k == 'statistics_methods' else walk(v)
                         for k, v in state.items()}
            out = _build_history_buffer(state)
        elif x is _STATISTIC or isinstance(x, _Name):
            raise _refuse(f'a bare reference to {x!r}')
        elif isinstance(x, dict):  # dict, OrderedDict, Counter
            memo[key] = x
            for k in list(x):
                x[k] = walk(x[k])
            return x
        elif isinstance(x, list):
            memo[key] = x
            x[:] = [walk(v) for v in x]
            return x
        elif isinstance(x, tuple):
            out = tuple(walk(v) for v in x)
        elif isinstance(x, (set, frozenset)):
            out = type(x)(walk(v) for v in x)
        else:
            return x
        memo[key] = out
        return out

    return walk(obj)


def _numpy_names() -> List[Tuple[Any, str]]:
    names = [(PendingDtype, 'numpy.dtype'), (_NDARRAY, 'numpy.ndarray')]
    # numpy 2 pickles numpy._core.*, numpy 1 numpy.core.*; both load.
    for package in ('numpy.core', 'numpy._core'):
        names += [(_reconstruct, f'{package}.multiarray._reconstruct'),
                  (_scalar, f'{package}.multiarray.scalar')]
    return names


def _builtin_allowlist() -> List[Any]:
    return [
        *_numpy_names(),
        (PendingHistoryBuffer, _HISTORY_BUFFER),
        (_ONE_CYCLE_NAME, _ONE_CYCLE),
        (_getattr, 'builtins.getattr'),
        (_empty_bytes, 'builtins.bytes'),
        # BUILD only calls __setstate__ on instances of listed types.
        PendingArray,
    ]


_TRUSTED: List[Any] = []


def trust_globals(objects: Iterable[Any]) -> None:
    """Admit your own classes or functions in every checkpoint this package
    loads, for the rest of the process.

    Only for checkpoints you wrote yourself: an admitted class is rebuilt
    from the file's data, so it must not run code when it is. Pickle stays
    off (``weights_only=True``); only these names are added to torch's
    allowlist, and only during our loads.

    Args:
        objects: Classes or functions, or ``(object, 'module.Name')`` pairs
            to map a name in the file to an object.
    """
    _TRUSTED.extend(objects)


@contextlib.contextmanager
def trusted_globals(objects: Iterable[Any]) -> Iterator[None]:
    """:func:`trust_globals` for the loads inside a ``with`` block."""
    objects = list(objects)
    start = len(_TRUSTED)
    _TRUSTED.extend(objects)
    try:
        yield
    finally:
        del _TRUSTED[start:start + len(objects)]


def allowlist() -> List[Any]:
    """Everything a load admits: the stand-ins plus trusted globals."""
    return _builtin_allowlist() + list(_TRUSTED)
