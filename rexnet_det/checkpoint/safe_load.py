"""Reading checkpoint bytes without running code from them.

:func:`safe_torch_load` is the only place this package calls
``torch.load``: always ``weights_only=True`` with the allowlist of
:mod:`.allowlist`, then :func:`~.allowlist.materialize`. Files that are not
checkpoints at all (a text file, an HTML error page saved by a failed
download, a safetensors file, an empty or truncated file) are recognised
from their first bytes and reported as such; so are paths that are not
regular files (a directory, a FIFO). A zip checkpoint first passes
:func:`~.archive.check_archive` (decompressed size, CRC-32 of every record).
"""
import io
import os
import pickle
import pickletools
import re
import stat
import zipfile
from typing import IO, Any, Optional, Union

import torch

from ..utils.errors import CheckpointError, UnsafeCheckpointError
from .allowlist import allowlist, materialize
from .archive import check_archive, is_zip, take_model_budget

Source = Union[str, os.PathLike, bytes, IO[bytes]]

_PICKLE_PROTOCOL = 0x80  # first byte of a protocol >= 2 pickle
_HEAD = 512
_OPCODES = {op.code.encode('latin-1')[0] for op in pickletools.opcodes}
_FILE_KINDS = ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO,
                                                'a FIFO (named pipe)'),
               (stat.S_ISSOCK, 'a socket'), (stat.S_ISCHR, 'a device'),
               (stat.S_ISBLK, 'a device'))


def require_regular_file(path: str, what: str = 'checkpoint file') -> None:
    """Raise unless `path` is an existing regular file (reading a FIFO
    would block; a directory is not a checkpoint).

    Raises:
        FileNotFoundError: Nothing is at `path`.
        CheckpointError: Something other than a regular file is; the
            message says what.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f'{what} not found: {path}') from None
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _FILE_KINDS if test(mode)),
                'not a file')
    raise CheckpointError(f'cannot load {what} {path}: it is {kind}, not a '
                          'regular file')


def _is_safetensors(head: bytes) -> bool:
    # an 8-byte little-endian header length, then the JSON header
    return len(head) > 9 and head[8:10] in (b'{"', b"{'", b'{}') and \
        0 < int.from_bytes(head[:8], 'little') < (100 << 20)


def describe_head(head: bytes) -> Optional[str]:
    """Say what a file that is not a torch checkpoint looks like, from its
    first bytes; None when it could be one (zip archive or pickle)."""
    if not head:
        return 'is empty (0 bytes)'
    if _is_safetensors(head):
        return ('is a safetensors file, not a PyTorch checkpoint; this '
                'package reads .pth files. It holds tensors only, so it is '
                'safe to convert: torch.save(safetensors.torch.load_file('
                'path), \'model.pth\')')
    if is_zip(head) or head[0] == _PICKLE_PROTOCOL:
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


def _corruption(text: str) -> Optional[str]:
    """The unpickler's complaint when it is about broken bytes rather than
    something the allowlist refuses (None then)."""
    operand = re.search(r'Unsupported operand (\d+)', text)
    if operand and int(operand[1]) not in _OPCODES:
        return f'byte {int(operand[1]):#04x} is no pickle instruction'
    for reason in ('String is too long', 'negative argument',
                   'unsupported persistent id'):
        if reason in text:
            return reason
    return None


def _corrupt_error(source: str, size: Optional[int],
                   reason: str) -> CheckpointError:
    sized = f' ({size} bytes)' if size is not None else ''
    return CheckpointError(
        f'cannot load checkpoint {source}{sized}: the file is truncated or '
        f'corrupt ({reason[:200]}). Nothing was loaded; download or save it '
        'again.')


def _unsafe_message(source: str, exc: BaseException,
                    size: Optional[int] = None) -> CheckpointError:
    # torch wraps the unpickler's reason in advice to turn weights_only off,
    # which we never pass on: keep the reason only.
    text = str(exc).split('Check the documentation of torch.load')[0]
    broken = _corruption(text)
    if broken:
        return _corrupt_error(source, size, f'its pickle is broken: {broken}')
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
        CheckpointError: The file is not a checkpoint (text, HTML,
            safetensors, empty, not a regular file), is truncated or
            corrupt (a record fails its CRC-32), would inflate far beyond
            its size or the expected model's, or nests too deeply; the
            message says which.
    """
    model_cap = take_model_budget()  # whatever happens to this read
    if isinstance(f, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(f))
        source = source or path
        require_regular_file(path)
        with open(path, 'rb') as fh:
            head = fh.read(_HEAD)
        size = os.path.getsize(path)
        opened: Any = path
    else:
        source = source or 'checkpoint'
        opened = io.BytesIO(f) if isinstance(f, (bytes, bytearray)) else f
        position = opened.tell()
        head = opened.read(_HEAD)
        size = opened.seek(0, io.SEEK_END) - position
        opened.seek(position)
    problem = describe_head(head)
    if problem:
        raise CheckpointError(f'cannot load checkpoint {source}: it {problem}')
    if is_zip(head):
        check_archive(opened, size, source, model_cap)
    try:
        with torch.serialization.safe_globals(allowlist()):
            obj = torch.load(opened, map_location=map_location,
                             weights_only=True)
        return materialize(obj)
    except pickle.UnpicklingError as exc:
        raise _unsafe_message(source, exc, size) from None
    except RecursionError:
        raise CheckpointError(
            f'refused to load checkpoint {source}: it nests containers '
            'deeper than Python\'s recursion limit allows (a checkpoint '
            'never needs that). Nothing was loaded.') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            KeyError, IndexError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ''
        raise _corrupt_error(source, size,
                             f'{type(exc).__name__}: {first}') from None
