"""One function that reads a checkpoint from anywhere mmengine can.

:func:`load_checkpoint_file` resolves a name with mmengine's own scheme
registry (``CheckpointLoader._schemes``: local paths, ``http(s)://``,
``open-mmlab://``, ``openmmlab://``, ``mmcls://``, ``torchvision://``,
``modelzoo://``, ``s3://``, ``petrel://``, ``pavi://`` and any a third
party registers), fetches the bytes the way mmengine would, and hands them
to :func:`~.safe_load.safe_torch_load`:

* downloads go to the torch hub cache (``torch.hub.get_dir()/checkpoints``),
  as mmengine's ``load_url`` does, under a key of the whole URL, with a
  timeout and only when complete (:mod:`.download`), and are read from
  there;
* the URL tables of ``open-mmlab://``, ``mmcls://`` and ``torchvision://``
  are mmengine's;
* ``backend_args`` reads through an mmengine file backend (S3, petrel,
  your own).

A scheme this module has no fetcher for is still loaded safely: its
mmengine loader runs with ``torch.load`` forced to ``weights_only=True``
(``TORCH_FORCE_WEIGHTS_ONLY_LOAD``) and our allowlist, so even a loader
that asks for ``weights_only=False`` cannot unpickle code.
"""
import contextlib
import os
import os.path as osp
import pickle
import re
import tempfile
from typing import Any, Callable, Dict, Iterator, Optional, Union

import torch

from ..utils.errors import CheckpointError, UnsafeCheckpointError
from .allowlist import allowlist, materialize
from .coverage import tag_source
from .download import fetch_url, hub_cache_dir
from .safe_load import _unsafe_message, safe_torch_load

Fetched = Union[str, bytes]  # a local path or the file's bytes
_TRUE = ('1', 'y', 'yes', 'true')


def _download(url: str) -> str:
    from mmengine.dist import barrier, get_dist_info
    rank, world_size = get_dist_info()
    # rank 0 downloads first, the others then find the file in the cache
    if rank == 0:
        cached = fetch_url(url)
    if world_size > 1:
        barrier()
        if rank > 0:
            cached = fetch_url(url)
    return cached


def _from_http(name: str) -> Fetched:
    return _download(name)


def _after_prefix(name: str, prefixes) -> str:
    for prefix in prefixes:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _from_openmmlab(name: str) -> Fetched:
    from mmengine.runner.checkpoint import (_get_mmengine_home,
                                            get_deprecated_model_names,
                                            get_external_models)
    model = _after_prefix(name, ('open-mmlab://', 'openmmlab://'))
    model = get_deprecated_model_names().get(model, model)
    urls = get_external_models()
    if model not in urls:
        raise CheckpointError(f'{name}: mmengine knows no open-mmlab model '
                              f'{model!r}')
    url = urls[model]
    if url.startswith(('http://', 'https://')):
        return _download(url)
    return osp.join(_get_mmengine_home(), url)


def _from_mmcls(name: str) -> Fetched:
    from mmengine.runner.checkpoint import get_mmcls_models
    urls = get_mmcls_models()
    model = _after_prefix(name, ('mmcls://', ))
    if model not in urls:
        raise CheckpointError(f'{name}: mmengine knows no mmcls model '
                              f'{model!r}')
    return _download(urls[model])


def _from_torchvision(name: str) -> Fetched:
    from mmengine.runner.checkpoint import get_torchvision_models
    try:
        urls = get_torchvision_models()
    except Exception as exc:  # torchvision missing or broken
        raise CheckpointError(f'{name}: resolving torchvision:// needs an '
                              f'importable torchvision ({type(exc).__name__}:'
                              f' {exc})') from None
    model = _after_prefix(name, ('torchvision://', 'modelzoo://'))
    if model not in urls:
        raise CheckpointError(f'{name}: torchvision has no model {model!r}')
    return _download(urls[model])


def _from_ceph(name: str) -> Fetched:
    from mmengine.fileio import get_file_backend
    return get_file_backend(name, backend_args={'backend': 'petrel'}).get(name)


def _from_pavi(name: str) -> Fetched:
    try:
        from pavi import modelcloud
    except ImportError:
        raise CheckpointError(f'{name}: loading from pavi:// needs the pavi '
                              'package') from None
    model = modelcloud.get(name[len('pavi://'):])
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, model.name)
        model.download(path)
        with open(path, 'rb') as f:
            return f.read()


#: mmengine scheme prefix (as registered) -> fetcher.
FETCHERS: Dict[str, Callable[[str], Fetched]] = {
    'http://': _from_http,
    'https://': _from_http,
    'open-mmlab://': _from_openmmlab,
    'openmmlab://': _from_openmmlab,
    'mmcls://': _from_mmcls,
    'torchvision://': _from_torchvision,
    'modelzoo://': _from_torchvision,
    r'(\S+\:)?s3://': _from_ceph,
    r'(\S+\:)?petrel://': _from_ceph,
    'pavi://': _from_pavi,
}

# Loaders mmengine registered before ours replaced them (set by
# rexnet_det.integration), for schemes without a fetcher.
ORIGINAL_LOADERS: Dict[str, Callable] = {}


def scheme_of(name: str) -> str:
    """The prefix of mmengine's scheme registry that `name` matches, in
    mmengine's own order ('' for local paths)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefix in CheckpointLoader._schemes:
        if re.match(prefix, name) is not None:
            return prefix
    return ''


@contextlib.contextmanager
def weights_only_forced() -> Iterator[None]:
    """Make every ``torch.load`` in the block use ``weights_only=True`` and
    our allowlist, even one that passes ``weights_only=False``."""
    if os.getenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '0').lower() in _TRUE:
        raise UnsafeCheckpointError(
            'refused to load a checkpoint: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD '
            'is set, which would let torch unpickle it without '
            'restrictions. Unset it.')
    previous = os.environ.get('TORCH_FORCE_WEIGHTS_ONLY_LOAD')
    os.environ['TORCH_FORCE_WEIGHTS_ONLY_LOAD'] = '1'
    try:
        with torch.serialization.safe_globals(allowlist()):
            yield
    finally:
        if previous is None:
            os.environ.pop('TORCH_FORCE_WEIGHTS_ONLY_LOAD', None)
        else:
            os.environ['TORCH_FORCE_WEIGHTS_ONLY_LOAD'] = previous


def _through_original(prefix: str, name: str, map_location: Any) -> Any:
    from mmengine.runner.checkpoint import CheckpointLoader
    loader = ORIGINAL_LOADERS.get(prefix, CheckpointLoader._schemes[prefix])
    try:
        with weights_only_forced():
            return materialize(loader(name, map_location))
    except pickle.UnpicklingError as exc:
        raise _unsafe_message(name, exc) from None


def load_checkpoint_file(name: Union[str, os.PathLike],
                         map_location: Any = 'cpu',
                         backend_args: Optional[dict] = None) -> Any:
    """Read a checkpoint from a path, a URL or any mmengine scheme, safely.

    Every route in this package ends here: ``load_pretrained``,
    ``init_cfg=dict(type='Pretrained')``, mmengine's ``load_checkpoint``
    and ``CheckpointLoader`` (``load_from``, ``resume``, ``tools/test.py``,
    mmdet's own tools), our conversion, fusion and export tools.

    Args:
        name (str | PathLike): Local path, URL or ``scheme://...`` name.
        map_location: As for :func:`torch.load`. Default: ``'cpu'``.
        backend_args (dict, optional): Read the bytes through the mmengine
            file backend these arguments select (e.g.
            ``dict(backend='petrel')``). Default: None (by scheme).

    Returns:
        The loaded checkpoint object.

    Raises:
        FileNotFoundError: A local file does not exist.
        UnsafeCheckpointError: The file would run code or build objects
            outside the allowlist. Nothing is loaded.
        DownloadTimeoutError: A download received no data for
            ``REXNET_DET_DOWNLOAD_TIMEOUT`` seconds (default 60); nothing
            was cached.
        DownloadError: A download failed (HTTP error, short body); the
            message names the URL and nothing was cached.
        CheckpointError: Not a checkpoint, truncated or corrupt; the
            message names the file.
    """
    name = os.fspath(name)
    prefix = scheme_of(name)
    fetcher = FETCHERS.get(prefix)
    if backend_args:
        from mmengine.fileio import get
        checkpoint = safe_torch_load(get(name, backend_args=backend_args),
                                     map_location, source=name)
    elif prefix == '':
        checkpoint = safe_torch_load(name, map_location)
    elif fetcher is None:
        checkpoint = _through_original(prefix, name, map_location)
    else:
        fetched = fetcher(name)
        label = name if isinstance(fetched, bytes) or fetched == name \
            else f'{name} (read from {fetched})'
        checkpoint = safe_torch_load(fetched, map_location, source=label)
        if fetcher is _from_mmcls:
            from mmengine.runner.checkpoint import _process_mmcls_checkpoint
            checkpoint = _process_mmcls_checkpoint(checkpoint)
    return tag_source(checkpoint, name)


__all__ = ['load_checkpoint_file', 'hub_cache_dir', 'scheme_of',
           'weights_only_forced', 'FETCHERS']
