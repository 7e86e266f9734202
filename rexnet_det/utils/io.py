"""Writing files so that a reader never sees half of one."""
import contextlib
import os
import os.path as osp
import uuid
from typing import Iterator, Union

#: Suffix of the temporary files; a crashed writer leaves only these.
TMP_SUFFIX = '.rexnet_det.tmp'


@contextlib.contextmanager
def atomic_output(path: Union[str, os.PathLike],
                  fsync: bool = True) -> Iterator[str]:
    """Yield a temporary path next to `path`; on success it replaces `path`.

    For writers that want a file name (``torch.save``, ``onnx.save``,
    ``savefig``). The temporary file sits in the same folder, so the final
    ``os.replace`` is atomic on POSIX and Windows; on error it is removed
    and `path` keeps its old content.

    Args:
        path (str | PathLike): The file to create or replace.
        fsync (bool): Flush file and folder to disk before returning, so the
            new content survives a power cut. Default: True.
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # keep the extension last: some writers pick the format from it
    stem, ext = osp.splitext(osp.basename(path))
    tmp = osp.join(folder, f'.{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}'
                   f'{TMP_SUFFIX}{ext}')
    try:
        yield tmp
        if fsync:
            with open(tmp, 'rb') as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    if fsync and hasattr(os, 'O_DIRECTORY'):  # persist the rename itself
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write(data: Union[bytes, str], path: Union[str, os.PathLike],
                 fsync: bool = True) -> None:
    """Write `data` (bytes, or str as UTF-8) to `path` atomically."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    with atomic_output(path, fsync=fsync) as tmp:
        # 0o666 & ~umask, as open(path, 'wb') would give
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)


def is_temporary(name: str) -> bool:
    """Whether `name` is a file :func:`atomic_output` left behind."""
    return osp.basename(name).startswith('.') and TMP_SUFFIX in name
