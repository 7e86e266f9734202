"""Reading checkpoint bytes without running code from them.

:func:`safe_torch_load` is the only place this package calls
``torch.load``: always ``weights_only=True`` with the allowlist of
:mod:`.allowlist`, then :func:`~.allowlist.materialize`. Files that are not
checkpoints at all (a text file, an HTML error page saved by a failed
download, an empty or truncated file) are recognised from their first
bytes and reported as such.
"""
import io
import os
import pickle
import re
import zipfile
from typing import IO, Any, Optional, Union

import torch

from ..utils.errors import CheckpointError, UnsafeCheckpointError
from .allowlist import allowlist, materialize

Source = Union[str, os.PathLike, bytes, IO[bytes]]

_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTOCOL = 0x80  # first byte of a protocol >= 2 pickle
_HEAD = 512


def describe_head(head: bytes) -> Optional[str]:
    """Say what a file that is not a torch checkpoint looks like, from its
    first bytes; None when it could be one (zip archive or pickle)."""
    if not head:
        return 'is empty (0 bytes)'
    if head.startswith(_ZIP_MAGIC) or head[0] == _PICKLE_PROTOCOL:
        return None
    text = head.lstrip(b'\xef\xbb\xbf \t\r\n')
    lower = text[:64].lower()
    if lower.startswith((b'<!doctype html', b'<html', b'<?xml', b'<head')):
        first = text.split(b'\n', 1)[0][:40].decode('utf-8', 'replace')
        return (f'starts with `{first}`: an HTML/XML page, probably a '
                'failed download (an error or login page saved in place of '
                'the file)')
    decoded = head.decode('utf-8', 'replace')
    printable = sum(c.isprintable() or c in '\r\n\t' for c in decoded)
    if printable >= 0.95 * len(decoded):
        first = decoded.strip().split('\n', 1)[0][:40]
        return (f'is a text file (starts with `{first}`), not a PyTorch '
                'checkpoint')
    return (f'starts with bytes {head[:8].hex(" ")}, which is neither a '
            'PyTorch zip archive nor a pickle')


def _unsafe_message(source: str, exc: BaseException) -> UnsafeCheckpointError:
    # torch wraps the unpickler's reason in advice to turn weights_only off,
    # which we never pass on: keep the reason only.
    text = str(exc).split('Check the documentation of torch.load')[0]
    glob = re.search(r'GLOBAL (\S+) (?:was not an allowed global|whose '
                     r'module \S+ is blocked)', text)
    refused = re.search(r'Refused content: (.+)', text)
    if glob:
        # torch shortens builtins.exec to exec
        name = glob[1] if '.' in glob[1] else f'builtins.{glob[1]}'
        what = f'unpickling it would call or build {name}'
    elif refused:
        what = f'it holds {refused[1].strip()}'
    else:
        reason = [p.strip() for p in text.split('\n\n') if p.strip()][-1:]
        reason = reason[0].rsplit('error: ', 1)[-1] if reason else ''
        what = f'unpickling it needs something outside the allowlist ' \
               f'({reason.splitlines()[0][:200] if reason else "unknown"})'
    return UnsafeCheckpointError(
        f'refused to load checkpoint {source}: {what}. Only data is allowed '
        '(tensors, containers, numbers, strings, numpy arrays of plain '
        'numeric dtypes, mmengine HistoryBuffers), so nothing that could run '
        'code or forge memory. Nothing was loaded. If the file is your own '
        'and holds your own classes, admit them with '
        'rexnet_det.checkpoint.trusted_globals([...]).')


def safe_torch_load(f: Source, map_location: Any = 'cpu',
                    source: Optional[str] = None) -> Any:
    """``torch.load`` with ``weights_only=True`` and the allowlist.

    Args:
        f (str | PathLike | bytes | file): A local path, the file's bytes
            or a binary file object.
        map_location: As for :func:`torch.load`. Default: ``'cpu'``.
        source (str, optional): Name of the file for messages (the URL of a
            download, say). Default: the path, or ``'checkpoint'``.

    Returns:
        The loaded object, with numpy arrays and HistoryBuffers rebuilt
        from checked data.

    Raises:
        FileNotFoundError: `f` is a path that does not exist.
        UnsafeCheckpointError: The file names globals outside the allowlist
            or builds objects the allowlist refuses. Nothing is loaded.
        CheckpointError: The file is not a checkpoint (text, HTML, empty)
            or is truncated or corrupt; the message says which.
    """
    if isinstance(f, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(f))
        source = source or path
        if not os.path.isfile(path):
            raise FileNotFoundError(f'checkpoint file not found: {path}')
        with open(path, 'rb') as fh:
            head = fh.read(_HEAD)
        size = os.path.getsize(path)
        opened: Any = path
    else:
        source = source or 'checkpoint'
        opened = io.BytesIO(f) if isinstance(f, (bytes, bytearray)) else f
        position = opened.tell()
        head = opened.read(_HEAD)
        opened.seek(position)
        size = None
    problem = describe_head(head)
    if problem:
        raise CheckpointError(f'cannot load checkpoint {source}: it {problem}')
    try:
        with torch.serialization.safe_globals(allowlist()):
            obj = torch.load(opened, map_location=map_location,
                             weights_only=True)
        return materialize(obj)
    except pickle.UnpicklingError as exc:
        raise _unsafe_message(source, exc) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            KeyError, IndexError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ''
        sized = f' ({size} bytes)' if size is not None else ''
        raise CheckpointError(
            f'cannot load checkpoint {source}{sized}: the file is truncated '
            f'or corrupt ({type(exc).__name__}: {first[:200]}). Nothing was '
            'loaded; download or save it again.') from None
