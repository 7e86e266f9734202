"""Loading checkpoints without running code from them.

Every checkpoint this package reads goes through :func:`safe_torch_load`:
``torch.load(weights_only=True)`` plus an explicit allowlist of the few
classes that checkpoints saved by mmengine contain (its ``HistoryBuffer`` and
numpy arrays and scalars in the message hub). Pickle is never turned back on.

:func:`install_mmengine_loader` routes mmengine's local-file loader
(``load_from``, ``--resume``, ``Pretrained`` init of other modules) through
the same function. That also fixes mmengine 0.10.7 under torch >= 2.6, where
resuming fails on every checkpoint mmengine itself wrote.
"""
import os
import pickle
import zipfile
from typing import Any, List, Optional

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose unpickling would run code or build objects outside
    the allowlist. Nothing of it was loaded."""


def _numpy_globals() -> List[Any]:
    """numpy objects that pickled arrays and scalars refer to."""
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
        np.uint32, np.uint64, np.float16, np.float32, np.float64, np.str_)]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


def safe_globals() -> List[Any]:
    """The allowlist: the only non-tensor globals a checkpoint may name."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, *_numpy_globals()]


def safe_torch_load(filename: str, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and the allowlist.

    Args:
        filename (str): Path of the checkpoint.
        map_location: As for :func:`torch.load`. Default: ``'cpu'``.

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
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if 'GLOBAL' in line or
                       'Unsupported' in line), reason[0] if reason else '')
        raise UnsafeCheckpointError(
            f'refused to load checkpoint {filename}: it needs objects outside '
            f'the safe allowlist ({detail.strip()}). Nothing was loaded. '
            'Only load checkpoints from sources you trust; do not disable '
            'weights_only.') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            ValueError) as exc:
        raise CheckpointError(
            f'cannot read checkpoint {filename}: the file is truncated, '
            f'corrupt or not a PyTorch checkpoint ({type(exc).__name__}: '
            f'{str(exc).splitlines()[0] if str(exc) else ""})') from None


def _mmengine_local_loader(filename: str,
                           map_location: Optional[Any] = None) -> Any:
    filename = os.path.expanduser(filename)
    return safe_torch_load(filename, map_location=map_location)


_INSTALLED = False


def install_mmengine_loader() -> None:
    """Make mmengine load local checkpoints with :func:`safe_torch_load`.

    Idempotent. Affects ``mmengine.runner.load_checkpoint`` (``load_from``,
    ``resume``, ``Pretrained`` init) for local paths; URLs and other schemes
    keep mmengine's loaders.
    """
    global _INSTALLED
    if _INSTALLED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', force=True)(
        _mmengine_local_loader)
    _INSTALLED = True
