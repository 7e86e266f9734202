"""Checks on a torch zip checkpoint before torch reads it.

torch's zip reader trusts the archive: it inflates a record to whatever
size the central directory claims (a 1 MB deflated record becomes a 1 GiB
tensor) and never verifies the CRC-32 the writer stored, so bytes
overwritten on disk load as garbage weights without a word.
:func:`check_archive` reads the central directory with Python's
``zipfile`` and refuses, naming the file and the record,

* records compressed other than stored or deflated (torch writes stored);
* more data than ``INFLATE_RATIO`` times the file size (plus
  ``INFLATE_SLACK``): only compression could make that, and torch never
  compresses;
* more data than ``MODEL_FACTOR`` times the model being loaded (plus
  ``MODEL_SLACK``), when a loader said which model that is
  (:func:`expect_model`, used up by the next read; our loaders and
  ``StrictLoadHook`` do);
* any record whose CRC-32 does not match its data. A file saved with
  ``torch.serialization.set_crc32_options(False)`` stores no CRC at all;
  it loads with a warning that its integrity cannot be checked.

All of this happens before anything is inflated into memory.
"""
import weakref
import zipfile
import zlib
from typing import IO, Any, List, Optional, Tuple, Union

import torch.nn as nn
from mmengine.logging import print_log

from ..utils.errors import CheckpointError

#: Uncompressed data may exceed the file size this many times...
INFLATE_RATIO = 10
#: ...plus this many bytes.
INFLATE_SLACK = 16 << 20
#: Data may exceed the expected model's tensors this many times (a resume
#: file adds optimizer state, e.g. Adam's two moments, and EMA weights)...
MODEL_FACTOR = 8
#: ...plus this many bytes (an ImageNet file for a partial backbone).
MODEL_SLACK = 256 << 20
_CHUNK = 1 << 20

_expected: List[Tuple[Any, int]] = []  # (weakref to model, bytes)


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's state dict."""
    return sum(t.numel() * t.element_size()
               for t in model.state_dict().values())


def expect_model(model: nn.Module) -> Tuple[Any, int]:
    """Tell the reader which model the next load fills, so that a file
    whose data far exceeds it is refused before inflating. The next read
    uses the entry up; :func:`stop_expecting` drops it unused. A model that
    no longer exists is ignored.

    Returns:
        The entry to pass to :func:`stop_expecting`.
    """
    entry = (weakref.ref(model), model_bytes(model))
    _expected.append(entry)
    return entry


def stop_expecting(entry: Tuple[Any, int]) -> None:
    """Drop an entry of :func:`expect_model` no read has used."""
    if entry in _expected:
        _expected.remove(entry)


def take_model_budget() -> Optional[int]:
    """The newest live model's bound, used up by this read."""
    while _expected:
        ref, nbytes = _expected.pop()
        if ref() is not None:
            return MODEL_FACTOR * nbytes + MODEL_SLACK
    return None


def _mib(n: int) -> str:
    return f'{n / (1 << 20):.1f} MiB'


def check_archive(f: Union[str, IO[bytes]], size: int, source: str,
                  model_cap: Optional[int] = None) -> None:
    """Refuse a zip checkpoint that would inflate too far or whose data
    fails its CRC-32 (see the module docstring).

    Args:
        f (str | file): The zip file's path, or a seekable binary file
            positioned at its start (left there).
        size (int): The file's size in bytes.
        source (str): The file's name, for messages.
        model_cap (int, optional): Most bytes of data allowed for the model
            being loaded (:func:`take_model_budget`). Default: no bound.

    Raises:
        CheckpointError: The message names the file, the record and the
            limit or the failed check. Nothing was loaded.
    """
    position = None if isinstance(f, str) else f.tell()
    try:
        with zipfile.ZipFile(f) as archive:
            infos = archive.infolist()
            _check_sizes(infos, size, source, model_cap)
            if _has_crcs(infos, source):
                _check_crcs(archive, infos, source)
    except zipfile.BadZipFile as exc:
        raise CheckpointError(
            f'cannot load checkpoint {source} ({size} bytes): the file is '
            f'truncated or corrupt (its zip directory is unreadable: '
            f'{exc}). Nothing was loaded; download or save it again.'
        ) from None
    finally:
        if position is not None:
            f.seek(position)


def _check_sizes(infos: List[zipfile.ZipInfo], size: int, source: str,
                 model_cap: Optional[int]) -> None:
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED,
                                      zipfile.ZIP_DEFLATED):
            raise CheckpointError(
                f'refused to load checkpoint {source}: record '
                f'{info.filename} uses zip compression method '
                f'{info.compress_type}; torch writes records uncompressed. '
                'Nothing was loaded.')
    total = sum(info.file_size for info in infos)
    largest = max(infos, key=lambda i: i.file_size, default=None)
    file_cap = INFLATE_RATIO * size + INFLATE_SLACK
    if total > file_cap:
        raise CheckpointError(
            f'refused to load checkpoint {source}: its records inflate to '
            f'{_mib(total)} from a {_mib(size)} file (largest: '
            f'{largest.filename}, {_mib(largest.compress_size)} -> '
            f'{_mib(largest.file_size)}), more than the limit of '
            f'{INFLATE_RATIO}x the file size + {_mib(INFLATE_SLACK)}. torch '
            'never compresses checkpoints: this is a decompression bomb or '
            'a corrupt zip directory. Nothing was loaded.')
    if model_cap is not None and total > model_cap:
        raise CheckpointError(
            f'refused to load checkpoint {source}: it holds {_mib(total)} '
            f'of data (largest record: {largest.filename}, '
            f'{_mib(largest.file_size)}), more than {MODEL_FACTOR}x the '
            f'model being loaded + {_mib(MODEL_SLACK)} = {_mib(model_cap)}. '
            'It cannot be a checkpoint of this model. Nothing was loaded.')


def _has_crcs(infos: List[zipfile.ZipInfo], source: str) -> bool:
    """False (with a warning) for a file saved without CRC-32s."""
    if any(info.CRC for info in infos) or not any(
            info.file_size for info in infos):
        return True
    print_log(f'{source} was saved without CRC-32 checksums (torch.'
              'serialization.set_crc32_options(False)): its integrity '
              'cannot be checked', logger='current', level=30)
    return False


def _check_crcs(archive: zipfile.ZipFile, infos: List[zipfile.ZipInfo],
                source: str) -> None:
    for info in infos:
        try:
            with archive.open(info) as member:
                while member.read(_CHUNK):
                    pass
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise CheckpointError(
                f'cannot load checkpoint {source}: record {info.filename} '
                f'is corrupt ({type(exc).__name__}: {exc}); its bytes were '
                'changed after it was written (a disk or transfer error). '
                'Nothing was loaded; download or save it again.') from None


def is_zip(head: bytes) -> bool:
    """Whether a file's first bytes start a zip archive."""
    return head.startswith(b'PK\x03\x04')


__all__ = ['check_archive', 'expect_model', 'stop_expecting', 'model_bytes',
           'is_zip', 'take_model_budget']
