"""Downloading checkpoints: bounded in time, complete or nothing, cached by
the whole URL.

torch.hub's ``download_url_to_file`` (which mmengine's ``load_url`` uses)
opens the URL without a timeout, so a server that sends its headers and
then stalls hangs the load forever; it accepts a body shorter than the
``Content-Length`` it was promised; and the hub cache is keyed on the file
name, so a URL that fails silently reads another URL's file of the same
name. :func:`fetch_url` instead

* gives up with a :class:`DownloadTimeoutError` naming the URL when no data
  arrives for ``timeout`` seconds (``REXNET_DET_DOWNLOAD_TIMEOUT``, default
  60 s), while connecting or while reading;
* writes to a hidden temporary file next to the cache entry, checks the
  received length against ``Content-Length`` and renames the file into
  place only when it is complete; the temporary file is removed on every
  failure, Ctrl-C included;
* caches each URL under ``<hub cache>/<16 hex digits of sha256(URL)>/<file
  name>``, so a cache entry belongs to exactly one URL and keeps a readable
  name.
"""
import contextlib
import hashlib
import http.client
import os
import os.path as osp
import tempfile
import urllib.error
import urllib.request
from typing import Optional
from urllib.parse import urlparse

import torch

from ..utils.errors import CheckpointError

TIMEOUT_ENV = 'REXNET_DET_DOWNLOAD_TIMEOUT'
DEFAULT_TIMEOUT = 60.0  # seconds without any data before a download fails
_CHUNK = 1 << 16


class DownloadError(CheckpointError):
    """A checkpoint download that failed; nothing was cached. The message
    names the URL."""


class DownloadTimeoutError(DownloadError, TimeoutError):
    """A download that received no data for the configured timeout."""


def hub_cache_dir() -> str:
    """Where downloads go: ``<torch hub dir>/checkpoints``, as mmengine's
    and torchvision's ``load_url``."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def cached_path(url: str) -> str:
    """The cache entry of `url`: ``<hub cache>/<key>/<file name>``, with
    ``key`` the first 16 hex digits of the URL's SHA-256.

    Args:
        url (str): The whole URL, query included.

    Returns:
        str: The path the download of `url` is (or will be) cached at.
    """
    key = hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]
    name = osp.basename(urlparse(url).path)
    if name in ('', '.', '..'):  # never a directory of the cache
        name = 'checkpoint'
    return osp.join(hub_cache_dir(), key, name)


def download_timeout() -> float:
    """Seconds without data before a download fails:
    ``REXNET_DET_DOWNLOAD_TIMEOUT`` or :data:`DEFAULT_TIMEOUT`.

    Raises:
        ValueError: The variable is not a positive number.
    """
    value = os.environ.get(TIMEOUT_ENV, '').strip()
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = float('nan')
    if not seconds > 0 or seconds == float('inf'):
        raise ValueError(f'{TIMEOUT_ENV} must be a positive number of '
                         f'seconds, got {value!r}')
    return seconds


def _copy_body(url: str, out, timeout: float) -> None:
    """Stream `url` into the open file `out`; refuse a short body."""
    request = urllib.request.Request(url,
                                     headers={'User-Agent': 'rexnet_det'})
    # the timeout bounds connecting and every single read
    with urllib.request.urlopen(request, timeout=timeout) as response:
        declared = response.headers.get('Content-Length', '').strip()
        received = 0
        while True:
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            out.write(chunk)
            received += len(chunk)
    if declared.isdigit() and received != int(declared):
        raise DownloadError(
            f'cannot download checkpoint {url}: the server sent {received} '
            f'of the {int(declared)} bytes it announced (Content-Length); '
            'the connection closed early. Nothing was cached; loading it '
            'again downloads it again.')


def fetch_url(url: str, timeout: Optional[float] = None) -> str:
    """Download `url` into its cache entry unless it is already there.

    Args:
        url (str): An ``http://`` or ``https://`` URL.
        timeout (float, optional): Seconds without data (connecting or
            reading) before the download fails. Default: None
            (:func:`download_timeout`).

    Returns:
        str: The cached file, complete.

    Raises:
        DownloadTimeoutError: No data for `timeout` seconds.
        DownloadError: Any other failure (HTTP status such as 404, short
            body, connection refused). Nothing is cached either way.
    """
    cached = cached_path(url)
    if osp.isfile(cached):
        return cached
    timeout = download_timeout() if timeout is None else timeout
    folder = osp.dirname(cached)
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(
        dir=folder, prefix=f'.{osp.basename(cached)}.', suffix='.partial')
    try:
        with os.fdopen(fd, 'wb') as out:
            _copy_body(url, out, timeout)
        os.replace(partial, cached)  # atomic: complete or absent
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DownloadError(f'cannot download checkpoint {url}: HTTP '
                            f'{exc.code} {exc.reason}') from None
    except (TimeoutError, urllib.error.URLError, http.client.HTTPException,
            OSError) as exc:
        reason = getattr(exc, 'reason', exc)
        if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
            raise DownloadTimeoutError(
                f'cannot download checkpoint {url}: no data for '
                f'{timeout:g} s (timeout; set {TIMEOUT_ENV}=SECONDS to wait '
                'longer). Nothing was cached.') from None
        raise DownloadError(f'cannot download checkpoint {url}: '
                            f'{type(exc).__name__}: {reason}') from None
    finally:
        if osp.exists(partial):
            os.remove(partial)
            with contextlib.suppress(OSError):  # kept if another is in it
                os.rmdir(folder)
    return cached


__all__ = ['DownloadError', 'DownloadTimeoutError', 'cached_path',
           'download_timeout', 'fetch_url', 'hub_cache_dir', 'TIMEOUT_ENV',
           'DEFAULT_TIMEOUT']
