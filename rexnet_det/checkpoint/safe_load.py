"""Loading checkpoints without running code from them.

Every checkpoint this package reads goes through :func:`safe_torch_load`:
``torch.load(weights_only=True)`` plus an explicit allowlist of the few
objects that checkpoints written by mmengine contain. We found them by
listing the pickle globals of a checkpoint saved by an mmengine ``Runner``
(SGD and AdamW, ``LinearLR`` + ``MultiStepLR``, message hub, dataset meta):

* ``mmengine.logging.history_buffer.HistoryBuffer`` (message hub scalars);
* ``getattr`` - only as ``getattr(HistoryBuffer, <statistic>)``, the way a
  HistoryBuffer pickles its ``min``/``max``/``current``/``mean`` methods.
  The real ``getattr`` is never allowlisted;
* numpy arrays and scalars (``_reconstruct``, ``scalar``, ``ndarray``,
  ``dtype`` and the dtype classes of plain numeric dtypes; no object
  dtype), under their numpy 2 and numpy 1 names;
* ``collections.Counter`` (``MultiStepLR`` milestones),
  ``collections.OrderedDict`` and ``_codecs.encode``, which torch allows by
  default.

Pickle is never turned back on. :func:`install_mmengine_loader` routes
mmengine's checkpoint loaders (``load_from``, ``--resume``, ``Pretrained``
init of other modules, ``tools/test.py``) through the same allowlist. That
also fixes mmengine 0.10.7 under torch >= 2.6, which cannot resume from the
checkpoints it writes itself (``Unsupported global: GLOBAL
mmengine.logging.history_buffer.HistoryBuffer``).
"""
import contextlib
import functools
import os
import pickle
import re
import zipfile
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

SafeGlobal = Union[Callable, Tuple[Callable, str]]

#: Statistics a HistoryBuffer pickles as ``getattr(HistoryBuffer, name)``.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose unpickling would run code or build objects outside
    the allowlist. Nothing of it was loaded."""


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` while unpickling: resolves only
    the statistics methods of ``HistoryBuffer``."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Unsupported global: GLOBAL getattr({obj!r}, {name!r}) is not an '
        'allowed attribute lookup')


def _numpy_globals() -> List[SafeGlobal]:
    """numpy objects that pickled arrays and scalars refer to."""
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
        np.uint32, np.uint64, np.float16, np.float32, np.float64, np.str_)]
    # Files pickled under numpy 1 name the functions numpy.core.multiarray.*
    aliases = [(fn, f'numpy.{pkg}.multiarray.{fn.__name__}')
               for fn in (_reconstruct, scalar) for pkg in ('core', '_core')]
    return [np.ndarray, np.dtype, *dtype_classes, *aliases]


def safe_globals() -> List[SafeGlobal]:
    """The allowlist: the only non-tensor globals a checkpoint may name."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
            *_numpy_globals()]


@contextlib.contextmanager
def allowlist() -> Iterator[None]:
    """Context in which ``torch.load(weights_only=True)`` accepts the
    allowlist (and nothing more)."""
    with torch.serialization.safe_globals(safe_globals()):
        yield


def _refusal(filename: str, exc: BaseException) -> UnsafeCheckpointError:
    text = str(exc)
    match = (re.search(r'GLOBAL (.+?) (?:was not|whose module|is not)', text)
             or re.search(r'unrecognized function (.+?)(?: which|$)', text,
                          re.M)
             or re.search(r'(Can only [^\n]*)', text))
    what = match[1].strip() if match else (text.splitlines() or [''])[0]
    return UnsafeCheckpointError(
        f'refused to load checkpoint {filename}: unpickling it would use '
        f'{what}, which is not on the allowlist of safe types (tensors, '
        'containers, numbers, numpy arrays, mmengine HistoryBuffer), so it '
        'may run code. Nothing was loaded. Only load checkpoints from '
        'sources you trust, and do not turn off weights_only.')


def safe_torch_load(filename: Union[str, os.PathLike],
                    map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and the allowlist.

    Args:
        filename (str | PathLike): Path of the checkpoint.
        map_location: As for :func:`torch.load`. Default: ``'cpu'``.

    Returns:
        The loaded object (usually a dict).

    Raises:
        FileNotFoundError: The file does not exist.
        UnsafeCheckpointError: The file asks for globals outside the
            allowlist (for example code to run); nothing is loaded.
        CheckpointError: The file is truncated, corrupt or not a checkpoint.
    """
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        with allowlist():
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(filename, exc) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ''
        raise CheckpointError(
            f'cannot read checkpoint {filename}: the file is truncated, '
            f'corrupt or not a PyTorch checkpoint ({type(exc).__name__}: '
            f'{first})') from None


def load_from_local_safe(filename: str,
                         map_location: Optional[Any] = None) -> Any:
    """mmengine loader for local paths (``CheckpointLoader`` scheme ``''``).

    mmengine logs the loader's name after ``load_from_``: "Loads checkpoint
    by local_safe backend".
    """
    checkpoint = safe_torch_load(os.path.expanduser(filename), map_location)
    _tag_source(checkpoint, filename)
    return checkpoint


def _tag_source(checkpoint: Any, filename: str) -> None:
    """Record the file in the state dict's per-module ``_metadata``, which
    mmengine hands to each module's ``_load_from_state_dict``, so that a
    ReXNet refusing the tensors can name the file."""
    from ..models.pretrained_init import SOURCE_KEY
    state = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    for entry in getattr(state, '_metadata', {}).values():
        if isinstance(entry, dict):
            entry[SOURCE_KEY] = filename


def _weights_only_forced(loader: Callable) -> Callable:
    """Run one of mmengine's remote loaders (http, open-mmlab://, s3, ...)
    with the allowlist. They call ``torch.load`` without ``weights_only``,
    which is ``True`` by default since torch 2.6 unless the environment
    says otherwise; we refuse then rather than unpickle freely."""

    @functools.wraps(loader)
    def load(filename: str, map_location: Optional[Any] = None) -> Any:
        if os.getenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '0').lower() in (
                '1', 'y', 'yes', 'true'):
            raise UnsafeCheckpointError(
                f'refused to load checkpoint {filename}: '
                'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set, so torch would '
                'unpickle it without restrictions. Unset it; rexnet_det '
                'loads mmengine checkpoints with weights_only=True.')
        try:
            with allowlist():
                return loader(filename, map_location)
        except pickle.UnpicklingError as exc:
            raise _refusal(filename, exc) from None

    load.rexnet_det_safe = True
    return load


_INSTALLED = False


def install_mmengine_loader() -> None:
    """Make mmengine load checkpoints with the allowlist, never unpickling
    freely.

    Idempotent; called on ``import rexnet_det``. Local paths are read by
    :func:`safe_torch_load`; every other scheme registered at that time
    (http(s), ``open-mmlab://``, ``torchvision://``, s3, ...) runs inside
    the allowlist with ``weights_only`` on. This covers
    ``mmengine.runner.load_checkpoint``, ``Runner.load_checkpoint``
    (``load_from``, ``tools/test.py``), ``Runner.resume`` and
    ``Pretrained`` init.
    """
    global _INSTALLED
    if _INSTALLED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if prefix and not getattr(loader, 'rexnet_det_safe', False):
            CheckpointLoader.register_scheme(
                prefixes=prefix, loader=_weights_only_forced(loader),
                force=True)
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local_safe, force=True)
    _INSTALLED = True
