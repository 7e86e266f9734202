"""Checkpoint downloads: bounded in time, complete or nothing, cached by the
whole URL (issue #19, findings 10 and 13).

Against a real HTTP server on 127.0.0.1 that stalls, cuts bodies short and
answers 404, through mmengine's ``load_checkpoint`` (the route ``load_from``,
``init_cfg`` and the tools take) and ``load_checkpoint_file``.
"""
import hashlib
import os
import os.path as osp
import time

import pytest
import torch
from mmengine.runner import load_checkpoint

from rexnet_det.checkpoint import (DownloadError, DownloadTimeoutError,
                                   cached_path, hub_cache_dir,
                                   load_checkpoint_file)
from rexnet_det.checkpoint.download import (DEFAULT_TIMEOUT, TIMEOUT_ENV,
                                            download_timeout)
from tests.fixtures.http_server import serve, short_body, stall
from tests.fixtures.toy_runner import ToyModel

TIMEOUT = 0.5  # seconds, for the stall tests


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """A folder with ``a/model.pth`` (a ToyModel's weights) to serve."""
    root = tmp_path_factory.mktemp('served')
    os.makedirs(root / 'a')
    state = ToyModel().state_dict()
    torch.save(state, root / 'a' / 'model.pth')
    return str(root), state, (root / 'a' / 'model.pth').read_bytes()


@pytest.fixture
def site(served):
    with serve(served[0]) as running:
        yield running


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)


def _cached_files():
    """Every file under the hub cache, partial ones included."""
    return sorted(osp.relpath(osp.join(d, f), hub_cache_dir())
                  for d, _, files in os.walk(hub_cache_dir()) for f in files)


def _equal(model, state):
    got = model.state_dict()
    assert len(got) > 50 and set(got) == set(state)
    return all(got[k].equal(v) for k, v in state.items())


def test_download_is_cached_under_the_whole_url(site, served):
    url = site.url + 'a/model.pth'
    model = ToyModel()
    load_checkpoint(model, url, strict=True)
    assert _equal(model, served[1])
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    assert cached_path(url) == osp.join(hub_cache_dir(), key, 'model.pth')
    assert _cached_files() == [osp.join(key, 'model.pth')]
    # read from the cache from now on, by every route
    again = load_checkpoint_file(url)
    assert set(again) == set(served[1])
    load_checkpoint(ToyModel(), url, strict=True)
    assert site.requests['/a/model.pth'] == 1


def test_cache_keys():
    a = cached_path('http://one.example/a/model.pth')
    assert osp.basename(a) == 'model.pth'
    assert osp.dirname(osp.dirname(a)) == hub_cache_dir()
    others = {cached_path(u) for u in (
        'http://two.example/a/model.pth', 'http://one.example/b/model.pth',
        'http://one.example/a/model.pth?v=2', 'https://one.example/a/'
        'model.pth')}
    assert len(others) == 4 and a not in others
    for url in ('http://one.example/', 'http://one.example/x/..'):
        path = cached_path(url)
        assert osp.basename(path) == 'checkpoint'
        assert osp.dirname(osp.dirname(path)) == hub_cache_dir()


@pytest.mark.parametrize('after_headers', [True, False],
                         ids=['after-headers', 'before-headers'])
def test_stalled_server_times_out_and_caches_nothing(after_headers, site,
                                                     served, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, str(TIMEOUT))
    site.routes['/stall/model.pth'] = stall(served[2], after_headers)
    url = site.url + 'stall/model.pth'
    start = time.monotonic()
    with pytest.raises(DownloadTimeoutError) as exc:
        load_checkpoint(ToyModel(), url)
    took = time.monotonic() - start
    assert str(exc.value) == (
        f'cannot download checkpoint {url}: no data for {TIMEOUT:g} s '
        f'(timeout; set {TIMEOUT_ENV}=SECONDS to wait longer). Nothing was '
        'cached.')
    assert isinstance(exc.value, TimeoutError)
    assert TIMEOUT <= took < TIMEOUT + 3
    assert site.requests['/stall/model.pth'] == 1
    assert os.listdir(hub_cache_dir()) == []  # no file, no folder


def test_short_body_is_never_cached(site, served):
    data = served[2]
    site.routes['/short/model.pth'] = short_body(data, times=1)
    url = site.url + 'short/model.pth'
    with pytest.raises(DownloadError) as exc:
        load_checkpoint(ToyModel(), url)
    assert str(exc.value) == (
        f'cannot download checkpoint {url}: the server sent '
        f'{len(data) // 2} of the {len(data)} bytes it announced '
        '(Content-Length); the connection closed early. Nothing was cached; '
        'loading it again downloads it again.')
    assert os.listdir(hub_cache_dir()) == []  # no file, no folder
    # the next run downloads again (the server now sends it all) ...
    model = ToyModel()
    load_checkpoint(model, url, strict=True)
    assert _equal(model, served[1])
    assert site.requests['/short/model.pth'] == 2
    # ... and only the complete file is cached
    load_checkpoint(ToyModel(), url, strict=True)
    assert site.requests['/short/model.pth'] == 2
    assert os.path.getsize(cached_path(url)) == len(data)


def test_404_never_reads_another_urls_file(site):
    first = site.url + 'a/model.pth'
    load_checkpoint_file(first)  # cached: .../<key of first>/model.pth
    missing = site.url + 'b/model.pth'  # same file name, not served
    for load in (lambda: load_checkpoint(ToyModel(), missing),
                 lambda: load_checkpoint_file(missing)):
        with pytest.raises(DownloadError) as exc:
            load()
        assert str(exc.value) == (f'cannot download checkpoint {missing}: '
                                  'HTTP 404 File not found')
    assert site.requests['/b/model.pth'] == 2
    assert site.requests['/a/model.pth'] == 1
    assert not osp.exists(cached_path(missing))
    assert _cached_files() == [osp.relpath(cached_path(first),
                                           hub_cache_dir())]


def test_timeout_setting(monkeypatch):
    assert download_timeout() == DEFAULT_TIMEOUT == 60
    monkeypatch.setenv(TIMEOUT_ENV, '2.5')
    assert download_timeout() == 2.5
    for bad in ('soon', '0', '-1', 'inf', 'nan'):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=f'{TIMEOUT_ENV} must be a '
                           f"positive number of seconds, got '{bad}'"):
            download_timeout()
