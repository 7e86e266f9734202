"""Checkpoints never run code, and bad files never half-load.

Every loading path: ``load_pretrained``, ReXNet ``init_cfg`` Pretrained,
mmengine's ``Pretrained`` init of other modules, ``load_checkpoint``,
Runner ``load_from`` and ``resume``, remote (http) loads, ``tools/test.py``
and ``tools/convert_checkpoint.py``.
"""
import os
import pickle
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import BaseModule
from mmengine.runner import checkpoint as mm_ckpt
from mmengine.runner import load_checkpoint

from rexnet_det import ReXNet, load_pretrained, safe_torch_load
from rexnet_det.checkpoint import (CheckpointError, CheckpointMismatchError,
                                   UnsafeCheckpointError, safe_globals)
from rexnet_det.checkpoint import safe_load
from rexnet_det.datasets import make_synthetic_coco
from tests.fixtures.tiny_configs import write_tiny_config
from tests.fixtures.toy_runner import ToyModel, make_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Tiny tensors: one thread is fastest, and OpenMP spin-waits make two
    threads 100x slower when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------- payloads
class _Exec:
    """Unpickles as exec(code): writes `path`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return exec, (f'open({self.path!r}, "w").write("pwned")', )


class _System:
    """Unpickles as os.system('touch path')."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f'touch {self.path}', )


class _Gadget:
    """Unpickles as getattr(HistoryBuffer, '__init__'): a lookup outside the
    four statistics the stand-in getattr resolves."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


PAYLOADS = {'exec': _Exec, 'os.system': _System, 'getattr': _Gadget}


def _evil(tmp_path, kind, state_dict):
    """A checkpoint with valid weights and a payload in its meta."""
    marker = str(tmp_path / f'pwned_{kind.replace(".", "_")}')
    path = str(tmp_path / f'evil_{kind}.pth')
    torch.save(dict(state_dict=state_dict,
                    meta=dict(note=PAYLOADS[kind](marker))), path)
    return path, marker


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys() and before
    return all(after[k].equal(v) for k, v in before.items())


@pytest.mark.parametrize('kind', ['exec', 'os.system'])
def test_payloads_are_live(kind, tmp_path):
    """Unrestricted unpickling runs them: the tests below can fail."""
    path, marker = _evil(tmp_path, kind, {'w': torch.zeros(1)})
    torch.load(path, weights_only=False)
    assert os.path.exists(marker)


# ------------------------------------------- every path refuses payloads
def _path_load_pretrained(path, tmp_path):
    load_pretrained(ReXNet(out_indices=(1, )), path)


def _path_init_cfg(path, tmp_path):
    ReXNet(out_indices=(1, ), init_cfg=dict(type='Pretrained',
                                            checkpoint=path)).init_weights()


def _path_mmengine_pretrained_init(path, tmp_path):
    module = BaseModule(init_cfg=dict(type='Pretrained', checkpoint=path))
    module.conv = nn.Conv2d(3, 8, 3)
    module.init_weights()


def _path_load_checkpoint(path, tmp_path):
    load_checkpoint(ToyModel(), path)


def _path_runner_load_from(path, tmp_path):
    make_runner(str(tmp_path / 'lf'), load_from=path).load_or_resume()


def _path_runner_resume(path, tmp_path):
    make_runner(str(tmp_path / 'rs'), load_from=path,
                resume=True).load_or_resume()


def _path_http(path, tmp_path, monkeypatch=None):
    # mmengine downloads, then torch.load()s without weights_only: stand
    # in for the download, keep mmengine's own torch.load call.
    mm_ckpt.CheckpointLoader.load_checkpoint(
        'https://example.com/' + os.path.basename(path))


def _path_convert_tool(path, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    try:
        import convert_checkpoint
    finally:
        sys.path.pop(0)
    with pytest.raises(SystemExit) as exc:
        convert_checkpoint.main([path, str(tmp_path / 'out.pth'), '--to',
                                 'timm'])
    assert not os.path.exists(tmp_path / 'out.pth')
    raise UnsafeCheckpointError(str(exc.value))


PATHS = {
    'load_pretrained': _path_load_pretrained,
    'init_cfg': _path_init_cfg,
    'mmengine_pretrained_init': _path_mmengine_pretrained_init,
    'load_checkpoint': _path_load_checkpoint,
    'runner_load_from': _path_runner_load_from,
    'runner_resume': _path_runner_resume,
    'http': _path_http,
    'convert_checkpoint': _path_convert_tool,
}


@pytest.fixture
def fake_download(monkeypatch, tmp_path):
    """``load_url`` that 'downloads' from tmp_path and torch.loads like
    mmengine's (no weights_only argument)."""
    def load_url(url, map_location=None, **kwargs):
        return torch.load(str(tmp_path / url.rsplit('/', 1)[1]),
                          map_location=map_location)
    monkeypatch.setattr(mm_ckpt, 'load_url', load_url)


@pytest.mark.parametrize('kind', sorted(PAYLOADS))
@pytest.mark.parametrize('path_name', sorted(PATHS))
def test_every_path_refuses_code(path_name, kind, tmp_path, fake_download):
    path, marker = _evil(tmp_path, kind, ToyModel().state_dict())
    with pytest.raises(UnsafeCheckpointError) as exc:
        PATHS[path_name](path, tmp_path)
    message = str(exc.value)
    assert os.path.basename(path) in message
    assert 'Nothing was loaded' in message
    expected = {'exec': 'exec', 'os.system': 'posix.system',
                'getattr': '__init__'}[kind]
    assert expected in message
    assert not os.path.exists(marker)


def test_tools_test_refuses_code(tmp_path):
    data = str(tmp_path / 'data')
    make_synthetic_coco(data, num_train=2, num_val=1, size=64, seed=0)
    cfg = write_tiny_config(str(tmp_path / 'cfg.py'), 'ssdlite', data,
                            with_test=True)
    from mmdet.registry import MODELS
    from mmengine.config import Config
    import rexnet_det  # noqa: F401
    model = MODELS.build(Config.fromfile(cfg).model)
    path, marker = _evil(tmp_path, 'exec', model.state_dict())
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', cfg, path, '--work-dir',
         str(tmp_path / 'work')], cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'),
        timeout=300)
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError: refused to load checkpoint ' + path in \
        proc.stderr
    assert not os.path.exists(marker)


def test_env_override_cannot_turn_pickle_back_on(tmp_path, monkeypatch,
                                                 fake_download):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    path, marker = _evil(tmp_path, 'exec', ToyModel().state_dict())
    with pytest.raises(UnsafeCheckpointError, match='refused'):
        safe_torch_load(path)  # explicit weights_only=True wins
    with pytest.raises(UnsafeCheckpointError,
                       match='TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set'):
        _path_http(path, tmp_path)
    assert not os.path.exists(marker)


# ------------------------------- real mmengine checkpoints and allowlist
@pytest.fixture(scope='module')
def mmengine_ckpt(tmp_path_factory):
    """A checkpoint written by an mmengine Runner (toy ReXNet, 2 iters)."""
    work = str(tmp_path_factory.mktemp('runner'))
    make_runner(work, max_iters=2, interval=2).train()
    return os.path.join(work, 'iter_2.pth')


def test_allowlist_loads_real_mmengine_checkpoint(mmengine_ckpt):
    ckpt = safe_torch_load(mmengine_ckpt)
    assert set(ckpt) == {'meta', 'state_dict', 'message_hub', 'optimizer',
                         'param_schedulers'}
    scalars = ckpt['message_hub']['log_scalars']
    buffer = scalars['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert isinstance(buffer._log_history, np.ndarray)
    assert buffer.statistics('mean') == pytest.approx(
        float(np.mean(buffer._log_history)))
    assert isinstance(ckpt['param_schedulers'][1]['milestones'], Counter)
    assert ckpt['meta']['dataset_meta']['classes'] == ('a', 'b')
    assert ckpt['meta']['iter'] == 2
    assert len(ckpt['optimizer']['state']) > 10


@pytest.mark.parametrize('entry', [
    'HistoryBuffer', 'builtins.getattr', 'numpy._core.multiarray._reconstruct',
    'numpy._core.multiarray.scalar', 'ndarray', 'dtype', 'dtype classes'
])
def test_every_allowlist_entry_is_needed(entry, mmengine_ckpt, monkeypatch):
    """Drop one entry: the real checkpoint no longer loads."""
    full = safe_globals()

    def named(item):
        if isinstance(item, tuple):
            return item[1]
        if entry == 'dtype classes':
            return 'dtype classes' if isinstance(item, type) and issubclass(
                item, np.dtype) and item is not np.dtype else ''
        return item.__name__

    reduced = [g for g in full if named(g) != entry]
    assert len(reduced) < len(full)
    monkeypatch.setattr(safe_load, 'safe_globals', lambda: reduced)
    with pytest.raises(UnsafeCheckpointError, match='refused'):
        safe_torch_load(mmengine_ckpt)


def test_mmengine_cannot_resume_without_our_loader(mmengine_ckpt, tmp_path,
                                                   monkeypatch):
    """mmengine 0.10.7 + torch >= 2.6 fail on their own checkpoints; the
    loader installed by ``import rexnet_det`` fixes it."""
    monkeypatch.setitem(mm_ckpt.CheckpointLoader._schemes, '',
                        mm_ckpt.load_from_local)
    runner = make_runner(str(tmp_path / 'a'), max_iters=4,
                         load_from=mmengine_ckpt, resume=True)
    with pytest.raises(pickle.UnpicklingError,
                       match='mmengine.logging.history_buffer.HistoryBuffer'):
        runner.load_or_resume()
    monkeypatch.undo()
    runner = make_runner(str(tmp_path / 'b'), max_iters=4,
                         load_from=mmengine_ckpt, resume=True)
    runner.load_or_resume()
    assert runner.iter == 2
    saved = safe_torch_load(mmengine_ckpt)
    state = runner.optim_wrapper.optimizer.state_dict()['state']
    assert state.keys() == saved['optimizer']['state'].keys() and state
    assert all(v['momentum_buffer'].equal(
        saved['optimizer']['state'][k]['momentum_buffer'])
        for k, v in state.items())
    assert [s.last_step for s in runner.param_schedulers] == [
        s['last_step'] for s in saved['param_schedulers']]
    assert runner.message_hub.get_scalar('train/loss').current() == \
        pytest.approx(saved['message_hub']['log_scalars']['train/loss']
                      .current())


# ------------------------------ truncated / corrupt / missing / other arch
def _bad_file(kind, tmp_path, good):
    path = str(tmp_path / f'{kind}.pth')
    if kind == 'missing':
        return path
    if kind == 'truncated':
        data = open(good, 'rb').read()
        data = data[:len(data) // 2]
    elif kind == 'corrupt':
        data = b'PK\x03\x04' + os.urandom(4096)
    elif kind == 'empty':
        data = b''
    with open(path, 'wb') as f:
        f.write(data)
    return path


BAD = {
    'missing': (FileNotFoundError, 'checkpoint file not found'),
    'truncated': (CheckpointError, 'truncated, corrupt or not a PyTorch'),
    'corrupt': (CheckpointError, 'truncated, corrupt or not a PyTorch'),
    'empty': (CheckpointError, 'truncated, corrupt or not a PyTorch'),
    'other_width': (CheckpointMismatchError, 'ReXNet 1.3x'),
    'lite_arch': (CheckpointMismatchError, 'ReXNet-lite 1.0x'),
}


@pytest.fixture(scope='module')
def good_files(tmp_path_factory):
    root = tmp_path_factory.mktemp('good')
    files = {}
    for name, model in (('good', ToyModel()),
                        ('other_width', ToyModel(width_mult=1.3))):
        files[name] = str(root / f'{name}.pth')
        torch.save(dict(state_dict=model.state_dict()), files[name])
    lite = ToyModel()
    lite.backbone = ReXNet(arch='lite', out_indices=(1, ))
    files['lite_arch'] = str(root / 'lite_arch.pth')
    torch.save(dict(state_dict=lite.state_dict()), files['lite_arch'])
    return files


@pytest.mark.parametrize('kind', sorted(BAD))
@pytest.mark.parametrize('path_name', [
    'load_pretrained', 'init_cfg', 'load_checkpoint', 'runner_load_from',
    'runner_resume'
])
def test_bad_files_give_clear_errors_and_load_nothing(
        path_name, kind, good_files, tmp_path):
    path = good_files.get(kind) or _bad_file(kind, tmp_path,
                                             good_files['good'])
    error, text = BAD[kind]
    if path_name.startswith('runner'):
        runner = make_runner(str(tmp_path / 'w'), load_from=path,
                             resume=path_name == 'runner_resume')
        model = runner.model
        load = runner.load_or_resume
    elif path_name == 'load_checkpoint':
        model = ToyModel()
        load = lambda: load_checkpoint(model, path)  # noqa: E731
    elif path_name == 'init_cfg':
        model = ReXNet(out_indices=(1, ), init_cfg=dict(
            type='Pretrained', checkpoint=path, prefix='backbone.'))
        load = model.init_weights
    else:
        model = ReXNet(out_indices=(1, ))
        load = lambda: load_pretrained(model, path)  # noqa: E731
    before = _snapshot(model)
    with pytest.raises(error) as exc:
        load()
    message = str(exc.value)
    assert path in message and text in message
    if kind in ('other_width', 'lite_arch'):
        assert 'ReXNet 1.0x' in message
    assert _unchanged(model, before)


def test_other_width_through_mmengine_loads_nothing_else(good_files):
    """mmengine loads with strict=False; without our guard the head (same
    shape in both widths) would load while the backbone stayed random."""
    model = ToyModel()
    model.head = nn.Conv2d(61, 2, 1)  # the 1.3x head has 80 inputs: widen
    other = ToyModel(width_mult=1.3)
    other.head = nn.Conv2d(61, 2, 1)
    state = other.state_dict()
    before = _snapshot(model)
    with pytest.raises(CheckpointMismatchError, match='Nothing was loaded'):
        model.load_state_dict(state, strict=False)
    assert _unchanged(model, before)


def test_classifier_head_of_other_size_is_still_skipped():
    """The guard covers the backbone only: fine-tuning an ImageNet
    classifier to other classes through mmengine still works."""
    from mmengine.runner.checkpoint import load_state_dict

    from rexnet_det import ReXNetClassifier
    source = ReXNetClassifier(num_classes=10).state_dict()
    model = ReXNetClassifier(num_classes=5)
    head = model.head.fc.weight.clone()
    load_state_dict(model, source, strict=False)
    assert model.head.fc.weight.equal(head)
    backbone = {k: v for k, v in model.state_dict().items()
                if k.startswith('backbone.')}
    assert len(backbone) > 100
    assert all(source[k].equal(v) for k, v in backbone.items())
