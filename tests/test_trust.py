"""The trust model: a checkpoint never runs code and never half-loads, on
every route and every scheme.

Real attacks only: checkpoints carrying pickles that run code or forge
numpy memory, served by a real local HTTP server and read from real files,
through every route a user takes (``load_pretrained``, ``init_cfg``,
mmengine's loaders, Runner ``load_from`` / ``resume``, our tools, mmdet's
own ``tools/test.py``). New API names are imported inside the tests, so the
module also runs against older versions of the package.
"""
import contextlib
import json
import logging
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from rexnet_det import ReXNet, ReXNetClassifier, load_pretrained
from rexnet_det.checkpoint import (CheckpointError, CheckpointMismatchError,
                                   UnsafeCheckpointError)
from tests.conftest import ROOT, load_tool
from tests.fixtures.http_server import serve
from tests.fixtures.logs import LogLines
from tests.fixtures.tiny_configs import write_tiny_config
from tests.fixtures.toy_runner import ToyModel, make_runner

try:  # numpy >= 2
    from numpy._core import multiarray as np_multiarray
except ImportError:  # pragma: no cover
    from numpy.core import multiarray as np_multiarray


# ------------------------------------------------------------- payloads
class Exec:
    """Unpickles as exec(code), which writes `path`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return exec, (f'open({self.path!r}, "w").write("pwned")', )


class System:
    """Unpickles as os.system('touch path')."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f'touch {self.path}', )


class Gadget:
    """getattr(OneCycle scheduler class, '__init__'): a lookup outside the
    allowed anneal functions."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        from mmengine.optim.scheduler.param_scheduler import \
            OneCycleParamScheduler
        return getattr, (OneCycleParamScheduler, '__init__')


PAYLOADS = {'exec': Exec, 'os.system': System, 'getattr': Gadget}
REFUSED_GLOBAL = {'exec': 'builtins.exec', 'os.system': 'posix.system',
                  'getattr': "'__init__'"}


class Forged:
    """A hand-written numpy reconstruction: ``_reconstruct`` + BUILD with
    the given dtype and raw bytes, exactly as a crafted file would hold."""

    def __init__(self, dtype, shape, raw, subtype=np.ndarray):
        self.args = (subtype, (0, ), b'b')
        self.state = (1, shape, dtype, False, raw)

    def __reduce__(self):
        return np_multiarray._reconstruct, self.args, self.state


class DtypeState:
    """``numpy.dtype('f8')`` whose pickled state claims it holds objects."""

    def __reduce__(self):
        return np.dtype, ('f8', False, True), (3, '<', None, None, None, -1,
                                                -1, 63)


FORGED = {
    # numpy reads 4 x 8 raw bytes as PyObject pointers: a crash or worse
    'object_dtype': lambda: Forged(np.dtype(object), (4, ), b'\x41' * 32),
    'struct_with_object': lambda: Forged(
        np.dtype([('a', 'O'), ('b', 'f8')]), (2, ), b'\x41' * 32),
    'byte_count': lambda: Forged(np.dtype('f8'), (1000, ), b'\0' * 8),
    'subclass': lambda: Forged(np.dtype('f8'), (1, ), b'\0' * 8,
                               subtype=np.recarray),
    'dtype_flags': DtypeState,
}
FORGED_MESSAGE = {
    'object_dtype': "numpy.dtype('O8'): only bool, int, uint, float and "
                    'complex dtypes are allowed',
    'struct_with_object': "numpy.dtype('V16')",
    'byte_count': '8 bytes of data, but 1000 values of float64 need 8000',
    'subclass': 'numpy.rec.recarray',
    'dtype_flags': 'only plain numeric dtypes are allowed',
}


# ------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Benign and malicious checkpoints of every kind the routes need."""
    root = tmp_path_factory.mktemp('files')
    work = str(root / 'runner')
    make_runner(work, max_iters=2, interval=2).train()
    toy = torch.load(osp.join(work, 'iter_2.pth'), weights_only=False)
    shutil.copy(osp.join(work, 'iter_2.pth'), root / 'runner_iter_2.pth')
    out = {'runner': str(root / 'runner_iter_2.pth'), 'dir': root}
    classifier = ReXNetClassifier().state_dict()
    torch.save(classifier, root / 'classifier.pth')
    out['classifier'] = str(root / 'classifier.pth')
    torch.save(toy['state_dict'], root / 'toy_weights.pth')
    out['toy_weights'] = str(root / 'toy_weights.pth')
    for kind, payload in PAYLOADS.items():
        for what, state in (('toy', toy['state_dict']),
                            ('classifier', classifier)):
            marker = str(root / f'pwned_{kind}_{what}')
            path = root / f'evil_{kind}_{what}.pth'
            torch.save(dict(state_dict=state, meta=dict(n=payload(marker))),
                       path)
            out[f'evil_{kind}_{what}'] = (str(path), marker)
    (root / 'page.pth').write_text(
        '<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>'
        '<body>Not Found</body></html>\n')
    out['html'] = str(root / 'page.pth')
    (root / 'notes.pth').write_text('epoch 12: loss 0.53\nepoch 13: 0.51\n')
    out['text'] = str(root / 'notes.pth')
    (root / 'empty.pth').write_bytes(b'')
    out['empty'] = str(root / 'empty.pth')
    data = open(out['runner'], 'rb').read()
    (root / 'truncated.pth').write_bytes(data[:len(data) // 2])
    out['truncated'] = str(root / 'truncated.pth')
    return out


@pytest.fixture(scope='module')
def server(files):
    """A real HTTP server on 127.0.0.1 serving the files' folder."""
    with serve(str(files['dir'])) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_caches(tmp_path, monkeypatch):
    """Downloads land in this test's own torch hub cache; open-mmlab names
    resolve through this test's own mmengine home."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine_home'))
    os.makedirs(tmp_path / 'mmengine_home', exist_ok=True)


def _name(scheme, path, server, tmp_path):
    """How `path` is reached under `scheme`."""
    base = osp.basename(path)
    if scheme == 'local':
        return path
    if scheme == 'http':
        return server.url + base
    if scheme == 'open-mmlab':
        # mmengine resolves open-mmlab://NAME through MMENGINE_HOME's
        # open_mmlab.json (its documented hook for custom models).
        name = base.replace('.', '_')
        with open(tmp_path / 'mmengine_home' / 'open_mmlab.json', 'w') as f:
            json.dump({name: server.url + base}, f)
        return f'open-mmlab://{name}'
    raise ValueError(scheme)


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys() and before
    return all(after[k].equal(v) for k, v in before.items())


# --------------------------------------------------------------- routes
# Each route loads `name` into a fresh model and returns that model.
def route_load_pretrained(name, tmp_path):
    model = ReXNet(out_indices=(1, ))
    load_pretrained(model, name)
    return model


def route_init_cfg(name, tmp_path):
    model = ReXNet(out_indices=(1, ), init_cfg=dict(
        type='Pretrained', checkpoint=name, prefix='backbone.'))
    model.init_weights()
    return model


def route_init_cfg_list(name, tmp_path):
    model = ReXNet(out_indices=(1, ), init_cfg=[
        dict(type='Kaiming', layer='Conv2d'),
        dict(type='Pretrained', checkpoint=name, prefix='backbone')])
    model.init_weights()
    return model


def route_mmengine_load_checkpoint(name, tmp_path):
    model = ToyModel()
    load_checkpoint(model, name)
    return model


def route_checkpoint_loader(name, tmp_path):
    model = ToyModel()
    model.load_state_dict(
        CheckpointLoader.load_checkpoint(name)['state_dict'])
    return model


def route_pretrained_init_of_other_module(name, tmp_path):
    model = BaseModule(init_cfg=dict(type='Pretrained', checkpoint=name))
    model.backbone = ReXNet(out_indices=(1, ))
    model.head = nn.Conv2d(38, 2, 1)
    model.init_weights()
    return model


def route_runner_load_from(name, tmp_path):
    runner = make_runner(str(tmp_path / 'load_from'), load_from=name)
    runner.load_or_resume()
    return runner.model


def route_runner_resume(name, tmp_path):
    runner = make_runner(str(tmp_path / 'resume'), load_from=name,
                         resume=True)
    runner.load_or_resume()
    assert runner.iter == 2
    return runner.model


def route_convert_tool(name, tmp_path):
    out = str(tmp_path / 'converted.pth')
    try:
        load_tool('convert_checkpoint.py').main([name, out, '--to', 'timm'])
    except SystemExit as exc:  # the tool reports errors by exiting
        assert not osp.exists(out)
        raise UnsafeCheckpointError(str(exc.code)) from None
    model = ReXNetClassifier()
    load_pretrained(model, out)
    return model


def route_load_model(name, tmp_path):
    """What tools/deploy/fuse.py, export_onnx.py and the analysis tools
    use to open a checkpoint."""
    from rexnet_det.checkpoint import load_model
    return load_model(name)[0]


ROUTES = {
    'load_pretrained': (route_load_pretrained, 'toy'),
    'init_cfg': (route_init_cfg, 'toy'),
    'init_cfg_list': (route_init_cfg_list, 'toy'),
    'mmengine_load_checkpoint': (route_mmengine_load_checkpoint, 'toy'),
    'checkpoint_loader': (route_checkpoint_loader, 'toy'),
    'pretrained_init_of_other_module':
    (route_pretrained_init_of_other_module, 'toy'),
    'runner_load_from': (route_runner_load_from, 'toy'),
    'runner_resume': (route_runner_resume, 'toy'),
    'convert_tool': (route_convert_tool, 'classifier'),
    'load_model': (route_load_model, 'classifier'),
}
BENIGN = {'toy': 'runner', 'classifier': 'classifier'}
SCHEMES = ('local', 'http', 'open-mmlab')


def test_payloads_are_live(files, tmp_path):
    """Unrestricted unpickling runs them: the refusals below mean something.
    mmengine's own http route (torch.hub, weights_only=False) is one."""
    path, marker = files['evil_exec_toy']
    torch.load(path, weights_only=False)
    assert osp.exists(marker)
    os.remove(marker)


@pytest.mark.parametrize('scheme', SCHEMES)
@pytest.mark.parametrize('route', sorted(ROUTES))
def test_every_route_and_scheme_refuses_code(route, scheme, files, server,
                                             tmp_path):
    fn, kind = ROUTES[route]
    path, marker = files[f'evil_exec_{kind}']
    name = _name(scheme, path, server, tmp_path)
    with pytest.raises(UnsafeCheckpointError) as exc:
        fn(name, tmp_path)
    message = str(exc.value)
    assert osp.basename(path) in message and 'Nothing was loaded' in message
    assert 'builtins.exec' in message
    assert 'weights_only=False' not in message
    assert not osp.exists(marker)


@pytest.mark.parametrize('scheme', SCHEMES)
@pytest.mark.parametrize('route', sorted(ROUTES))
def test_every_route_and_scheme_loads_benign(route, scheme, files, server,
                                             tmp_path):
    fn, kind = ROUTES[route]
    path = files[BENIGN[kind]]
    name = _name(scheme, path, server, tmp_path)
    model = fn(name, tmp_path)
    expected = torch.load(path, weights_only=False)
    expected = expected.get('state_dict', expected)
    got = model.state_dict()
    # a bare ReXNet holds the checkpoint's backbone.* tensors
    prefix = '' if set(got) <= set(expected) else 'backbone.'
    assert len(got) > 50 and set(prefix + k for k in got) <= set(expected)
    assert all(v.equal(expected[prefix + k]) for k, v in got.items())
    if scheme != 'local':  # downloads go to the torch hub cache
        from rexnet_det.checkpoint import cached_path
        cached = cached_path(server.url + osp.basename(path))
        assert cached.startswith(osp.join(os.environ['TORCH_HOME'], 'hub',
                                          'checkpoints', ''))
        assert osp.isfile(cached)


@pytest.mark.parametrize('kind', sorted(PAYLOADS))
def test_every_payload_is_refused(kind, files, server, tmp_path):
    path, marker = files[f'evil_{kind}_toy']
    for name in (path, server.url + osp.basename(path)):
        with pytest.raises(UnsafeCheckpointError) as exc:
            load_checkpoint(ToyModel(), name)
        assert REFUSED_GLOBAL[kind] in str(exc.value)
    assert not osp.exists(marker)


def test_backend_args_route(files, tmp_path):
    """Storage reached through mmengine file backends (S3, petrel, your
    own) goes through the same safe loader."""
    from mmengine.fileio import BaseStorageBackend, register_backend

    from rexnet_det.checkpoint import load_checkpoint_file

    @register_backend('rexnet_det_test_store', force=True)
    class Store(BaseStorageBackend):
        """Serves files of one local folder under store://NAME."""

        def __init__(self, root):
            self.root = root

        def get(self, filepath):
            with open(osp.join(self.root, filepath[len('store://'):]),
                      'rb') as f:
                return f.read()

        def get_text(self, filepath, encoding='utf-8'):
            return self.get(filepath).decode(encoding)

    args = dict(backend='rexnet_det_test_store', root=str(files['dir']))
    evil, marker = files['evil_exec_toy']
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file('store://' + osp.basename(evil),
                             backend_args=args)
    model = ReXNet(out_indices=(1, ), init_cfg=dict(
        type='Pretrained', prefix='backbone.', backend_args=args,
        checkpoint='store://' + osp.basename(files['runner'])))
    model.init_weights()
    expected = torch.load(files['runner'], weights_only=False)['state_dict']
    assert all(v.equal(expected['backbone.' + k])
               for k, v in model.state_dict().items())
    assert not osp.exists(marker)


def test_scheme_without_fetcher_is_forced_weights_only(files, server,
                                                       tmp_path):
    """A scheme registered by a third party after rexnet_det: its own loader
    runs, but torch.load inside it is forced to weights_only."""
    calls = []

    def load_from_mirror(filename, map_location=None):
        calls.append(filename)
        real = osp.join(server.root, filename[len('mirror://'):])
        return torch.load(real, map_location=map_location,
                          weights_only=False)

    CheckpointLoader.register_scheme('mirror://', load_from_mirror)
    try:
        path, marker = files['evil_exec_toy']
        with pytest.raises(UnsafeCheckpointError, match='builtins.exec'):
            load_checkpoint(ToyModel(), 'mirror://' + osp.basename(path))
        assert not osp.exists(marker)
        loaded = load_checkpoint(
            ToyModel(), 'mirror://' + osp.basename(files['runner']))
        assert 'state_dict' in loaded and len(calls) == 2
    finally:
        CheckpointLoader._schemes.pop('mirror://', None)


def test_torchvision_scheme_without_torchvision_is_clear(tmp_path):
    from rexnet_det.checkpoint import load_checkpoint_file
    with pytest.raises(CheckpointError,
                       match='torchvision://resnet50: resolving '
                       'torchvision:// needs an importable torchvision'):
        load_checkpoint_file('torchvision://resnet50')


def test_mmcls_scheme_reads_through_the_hub_cache(files, tmp_path):
    """mmcls:// names resolve with mmengine's table; a file already in the
    torch hub cache is read from there (no network), by the safe loader."""
    from mmengine.runner.checkpoint import get_mmcls_models

    from rexnet_det.checkpoint import cached_path, load_checkpoint_file
    url = get_mmcls_models()['resnet50']
    cached = cached_path(url)
    os.makedirs(osp.dirname(cached))
    path, marker = files['evil_exec_toy']
    shutil.copy(path, cached)
    with pytest.raises(UnsafeCheckpointError, match=osp.basename(url)):
        load_checkpoint_file('mmcls://resnet50')
    assert not osp.exists(marker)


# ------------------------------------------------- forged numpy objects
@pytest.mark.parametrize('kind', sorted(FORGED))
def test_forged_numpy_objects_are_refused(kind, tmp_path):
    path = str(tmp_path / f'{kind}.pth')
    torch.save(dict(state_dict=ToyModel().state_dict(),
                    message_hub=dict(x=FORGED[kind]())), path)
    with pytest.raises(UnsafeCheckpointError) as exc:
        load_checkpoint(ToyModel(), path)
    assert FORGED_MESSAGE[kind] in str(exc.value)
    assert path in str(exc.value)


def test_object_array_never_crashes_the_process(tmp_path):
    """The forged object array, resumed in a fresh process: refused with a
    clear error, exit 0 (an allowlist of plain numpy globals segfaults)."""
    path = str(tmp_path / 'object.pth')
    torch.save(dict(state_dict=ToyModel().state_dict(),
                    message_hub=dict(x=FORGED['object_dtype']())), path)
    script = textwrap.dedent(f"""
        import rexnet_det
        from mmengine.runner import CheckpointLoader
        try:
            ckpt = CheckpointLoader.load_checkpoint({path!r})
            print(repr(ckpt['message_hub']['x']))
        except rexnet_det.UnsafeCheckpointError as exc:
            print('REFUSED', exc)
        """)
    proc = subprocess.run([sys.executable, '-c', script], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert 'REFUSED' in proc.stdout and "numpy.dtype('O8')" in proc.stdout


def test_plain_numpy_data_still_loads(tmp_path):
    arrays = {str(d): np.arange(6).astype(d).reshape(2, 3)
              for d in ('bool', 'int8', 'uint16', 'int32', 'int64',
                        'float16', 'float32', 'float64', 'complex64')}
    scalars = [np.float32(1.5), np.int64(-3), np.bool_(True)]
    fortran = np.asfortranarray(np.arange(6.).reshape(2, 3))
    big_endian = np.arange(4, dtype='>i4')
    path = str(tmp_path / 'numpy.pth')
    torch.save(dict(a=arrays, s=scalars, f=fortran, b=big_endian,
                    e=np.zeros((0, 3))), path)
    from rexnet_det import safe_torch_load
    got = safe_torch_load(path)
    assert got['a'].keys() == arrays.keys()
    for key, value in arrays.items():
        assert got['a'][key].dtype == value.dtype
        assert np.array_equal(got['a'][key], value)
    assert [type(s) for s in got['s']] == [type(s) for s in scalars]
    assert got['s'] == scalars
    assert np.array_equal(got['f'], fortran) and got['f'].flags.f_contiguous
    assert got['b'].dtype == big_endian.dtype
    assert np.array_equal(got['b'], big_endian)
    assert got['e'].shape == (0, 3)


# ------------------------------------------------- not-a-checkpoint files
NOT_A_CHECKPOINT = {
    'html': 'starts with `<!DOCTYPE html>`: an HTML/XML page, probably a '
            'failed download',
    'text': 'is a text file (starts with `epoch 12: loss 0.53`)',
    'empty': 'is empty (0 bytes)',
    'truncated': 'is truncated or corrupt',
}


@pytest.mark.parametrize('kind', sorted(NOT_A_CHECKPOINT))
@pytest.mark.parametrize('scheme', ('local', 'http'))
def test_not_a_checkpoint_is_named(kind, scheme, files, server, tmp_path):
    name = _name(scheme, files[kind], server, tmp_path)
    for load in (lambda: load_checkpoint(ToyModel(), name),
                 lambda: load_pretrained(ReXNet(out_indices=(1, )), name)):
        with pytest.raises(CheckpointError) as exc:
            load()
        message = str(exc.value)
        assert NOT_A_CHECKPOINT[kind] in message
        assert name in message and 'weights_only' not in message
        if scheme == 'http':  # says where the downloaded bytes are
            assert osp.join('hub', 'checkpoints') in message


# ------------------------------------------------------------ half loads
@pytest.fixture(scope='module')
def detector(files, tmp_path_factory, make_shapes):
    """A tiny SSDLite config, its full checkpoint and partial files."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from rexnet_det.checkpoint import convert_state_dict
    root = tmp_path_factory.mktemp('detector')
    data = make_shapes(4, 2, 64, 0)
    cfg = write_tiny_config(str(root / 'ssdlite.py'), 'ssdlite', data,
                            with_test=True)
    init_default_scope('mmdet')
    model = MODELS.build(Config.fromfile(cfg).model)
    state = model.state_dict()
    out = dict(config=cfg, full=str(root / 'full.pth'))
    torch.save(dict(state_dict=state, meta=dict()), out['full'])
    out['backbone_only'] = str(root / 'backbone_only.pth')
    torch.save(dict(state_dict={k: v for k, v in state.items()
                                if k.startswith('backbone.')}),
               out['backbone_only'])
    out['clovaai'] = str(root / 'rexnetv1_1.0.pth')
    torch.save(convert_state_dict(ReXNetClassifier().state_dict(),
                                  'clovaai'), out['clovaai'])
    out['classifier'] = files['classifier']
    return out


HALF = {
    'backbone_only': 'this is an ImageNet ReXNet checkpoint (a classifier or '
                     'a bare backbone); use it as `model.backbone.init_cfg',
    'clovaai': 'this is an ImageNet ReXNet checkpoint (clovaai layout); use '
               'it as `model.backbone.init_cfg',
    'classifier': 'this is an ImageNet ReXNet checkpoint (a classifier or a '
                  'bare backbone)',
}


@pytest.mark.parametrize('kind', sorted(HALF))
def test_tools_test_refuses_partial_checkpoints(kind, detector, tmp_path):
    test_tool = load_tool('test.py')
    with pytest.raises(CheckpointMismatchError) as exc:
        test_tool.main([detector['config'], detector[kind], '--work-dir',
                        str(tmp_path)])
    message = str(exc.value)
    assert detector[kind] in message and HALF[kind] in message
    assert 'missing keys (' in message and 'neck.' in message


@pytest.mark.parametrize('kind', sorted(HALF))
def test_load_from_refuses_partial_checkpoints(kind, detector, tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(detector['config'])
    cfg.work_dir = str(tmp_path)
    cfg.load_from = detector[kind]
    runner = Runner.from_cfg(cfg)
    before = _snapshot(runner.model)
    with pytest.raises(CheckpointMismatchError, match='allow_partial_load'):
        runner.load_or_resume()
    assert _unchanged(runner.model, before)


def test_partial_load_is_an_explicit_opt_in(detector, tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(detector['config'])
    cfg.work_dir = str(tmp_path)
    cfg.load_from = detector['backbone_only']
    cfg.allow_partial_load = True
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    expected = torch.load(detector['backbone_only'])['state_dict']
    got = runner.model.state_dict()
    assert len(expected) > 100
    assert all(got[k].equal(v) for k, v in expected.items())


def test_full_checkpoint_still_tests(detector, tmp_path):
    out = str(tmp_path / 'results.json')
    load_tool('test.py').main([detector['config'], detector['full'],
                               '--work-dir', str(tmp_path), '--out', out])
    with open(out) as f:
        results = json.load(f)
    assert len(results) > 0 and {'bbox', 'score'} <= set(results[0])


def test_mmdet_own_test_tool_refuses_code_and_half_loads(detector, files,
                                                         server, tmp_path):
    """mmdet's tools/test.py with our config: the config's custom_imports
    install the same protection."""
    import mmdet
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'test.py')
    path, marker = files['evil_exec_toy']
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    for checkpoint, expected in (
            (server.url + osp.basename(path), 'UnsafeCheckpointError'),
            (detector['backbone_only'], 'CheckpointMismatchError')):
        proc = subprocess.run(
            [sys.executable, tool, detector['config'], checkpoint,
             '--work-dir', str(tmp_path / 'work')], cwd=str(tmp_path),
            env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode != 0
        assert expected in proc.stderr, proc.stderr[-3000:]
    assert not osp.exists(marker)


# ------------------------------------------ everything a Runner writes
def _scheduler_args(name):
    """Minimal arguments of each registered scheduler type."""
    base = name
    for suffix in ('LR', 'Momentum', 'ParamScheduler'):
        if name.endswith(suffix):
            base = name[:-len(suffix)]
    args = {
        'Constant': dict(factor=0.5, end=2),
        'CosineAnnealing': dict(T_max=4),
        'CosineRestart': dict(periods=[2, 2], restart_weights=[1, 0.5],
                              eta_min=0.0),
        'Exponential': dict(gamma=0.9),
        'Linear': dict(start_factor=0.5, end=2),
        'MultiStep': dict(milestones=[1]),
        'OneCycle': dict(eta_max=0.1, total_steps=10),
        'Poly': dict(eta_min=0.001, power=1.0, end=4),
        'ReduceOnPlateau': dict(monitor='loss'),
        'Step': dict(step_size=1, gamma=0.9),
        'QuadraticWarmup': dict(end=2),
    }[base]
    if name.endswith('ParamScheduler'):  # OneCycle drives the lr only
        args['param_name'] = 'lr' if base == 'OneCycle' else 'weight_decay'
    # ReduceOnPlateau steps on validation epochs only
    return dict(type=name, by_epoch=base == 'ReduceOnPlateau', **args)


def _registered_schedulers():
    import mmdet.engine  # noqa: F401  mmdet's own schedulers
    from mmdet.registry import PARAM_SCHEDULERS as MMDET
    from mmengine.registry import PARAM_SCHEDULERS
    names = set(PARAM_SCHEDULERS.module_dict) | set(MMDET.module_dict)
    return sorted(names)


def _resume_pair(tmp_path, tag, **runner_args):
    first = make_runner(str(tmp_path / tag), max_iters=2, interval=2,
                        **runner_args)
    first.train()
    # train() resumes as a user's run does (schedulers are built first),
    # then stops: the resumed run is already at max_iters
    second = make_runner(str(tmp_path / tag), max_iters=2, resume=True,
                         **runner_args)
    second.train()
    return first, second


@pytest.mark.parametrize('group', ['LR', 'Momentum', 'ParamScheduler'])
def test_every_scheduler_resumes(group, tmp_path):
    names = [n for n in _registered_schedulers() if n.endswith(group)]
    assert len(names) >= 9
    first, second = _resume_pair(
        tmp_path, group,
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
                       weight_decay=1e-4),
        param_scheduler=[_scheduler_args(n) for n in names])
    assert second.iter == 2
    assert [type(s).__name__ for s in second.param_schedulers] == names
    for old, new in zip(first.param_schedulers, second.param_schedulers):
        name = type(old).__name__
        assert new.last_step == old.last_step, name
        assert new.last_step >= (-1 if 'ReduceOnPlateau' in name else 1)
        assert new._last_value == pytest.approx(old._last_value), name
    key = {'LR': 'lr', 'Momentum': 'momentum',
           'ParamScheduler': 'weight_decay'}[group]
    assert second.optim_wrapper.optimizer.param_groups[0][key] == \
        pytest.approx(first.optim_wrapper.optimizer.param_groups[0][key])


# torch.optim classes mmengine registers but cannot train with its loop
CANNOT_TRAIN = {
    'Optimizer': 'the abstract base class',
    'ZeroRedundancyOptimizer': 'needs a distributed process group',
    'LBFGS': 'step() needs a closure, which OptimWrapper does not pass',
    'SparseAdam': 'needs sparse gradients',
}
if hasattr(torch.optim, 'Muon'):  # torch >= 2.9
    CANNOT_TRAIN['Muon'] = 'accepts 2-D parameters only'



def test_every_optimizer_resumes(tmp_path):
    from mmengine.registry import OPTIMIZERS
    names = sorted(set(OPTIMIZERS.module_dict) - set(CANNOT_TRAIN))
    assert set(CANNOT_TRAIN) <= set(OPTIMIZERS.module_dict)
    assert len(names) >= 11
    for name in names:
        # with momentum, SGD and RMSprop keep per-parameter state too
        extra = dict(momentum=0.9) if name in ('SGD', 'RMSprop') else {}
        first, second = _resume_pair(tmp_path, name,
                                     optimizer=dict(type=name, lr=0.01,
                                                    **extra),
                                     param_scheduler=[])
        saved = first.optim_wrapper.optimizer.state_dict()
        loaded = second.optim_wrapper.optimizer.state_dict()
        assert saved['state'] and loaded['state'].keys() == \
            saved['state'].keys(), name
        for index, state in saved['state'].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    assert loaded['state'][index][key].equal(value), \
                        (name, key)
                else:
                    assert loaded['state'][index][key] == value, (name, key)


# --------------------------------------- config text stored in checkpoints
# mmengine turns checkpoint text back into a Config with Config.fromstring,
# which executes it: Runner.resume with meta['config'], BaseInferencer (so
# DetInferencer(model=None, weights=...)) with the `cfg` texts.
def config_payload(marker):
    """Config text that writes `marker` if it is ever run."""
    return (f'import os\nopen({marker!r}, "w").write("pwned")\n'
            "model = dict(type='ToyModel')\n")


def with_config_text(src, dst, text, fields):
    """A copy of checkpoint `src` with `text` at each of `fields`."""
    ckpt = torch.load(src, weights_only=False)
    for field in fields:
        parent = ckpt
        for key in field[:-1]:
            parent = parent.setdefault(key, {})
        parent[field[-1]] = text
    torch.save(ckpt, dst)
    return str(dst)


def test_config_text_payload_is_live(tmp_path):
    """mmengine's Config.fromstring runs it: the tests below mean
    something."""
    from mmengine.config import Config
    marker = tmp_path / 'pwned'
    Config.fromstring(config_payload(str(marker)), file_format='.py')
    assert marker.read_text() == 'pwned'


FIELDS = ('meta.config', 'meta.cfg', 'message_hub.runtime_info.cfg')
NOT_USED = ('{}: not using the config text in {}: a checkpoint\'s config is '
            'never built or run (give the config file, e.g. '
            'DetInferencer(model=CONFIG, weights=...))')


def attack(*fields):
    """The end of the log line for config payloads in `fields`."""
    return ('; it is not plain data, so it may be an attack (' + '; '.join(
        f'{f}: line 1: an `ast.Import` statement, not `NAME = literal`'
        for f in fields) + ')')


@pytest.mark.parametrize('field', FIELDS)
def test_resume_never_runs_config_text(field, files, tmp_path):
    marker = tmp_path / 'pwned'
    evil = with_config_text(files['runner'], tmp_path / 'evil.pth',
                            config_payload(str(marker)),
                            [tuple(field.split('.'))])
    runner = make_runner(str(tmp_path / 'work'), load_from=evil,
                         resume=True)
    with LogLines(runner.logger) as lines:
        runner.load_or_resume()
    assert runner.iter == 2
    assert not marker.exists()
    # the toy run saved (empty) texts in meta.cfg and the message hub
    removed = ', '.join(f for f in FIELDS if f == field or f != 'meta.config')
    assert [line for line in lines if 'config text' in line] == [
        NOT_USED.format(evil, removed) + attack(field)]
    runner.logger.handlers.clear()


@pytest.fixture(scope='module')
def detector_run(detector, tmp_path_factory):
    """One iteration of the tiny SSDLite with our tools/train.py: a real
    training checkpoint (its config texts are mmengine's own dumps), and a
    copy whose three config texts run code."""
    root = tmp_path_factory.mktemp('detector_run')
    load_tool('train.py').main([
        detector['config'], '--work-dir', str(root / 'work'),
        '--cfg-options', 'train_cfg.max_iters=1',
        'default_hooks.checkpoint.interval=1'])
    real = str(root / 'work' / 'iter_1.pth')
    marker = root / 'pwned'
    evil = with_config_text(real, root / 'evil.pth',
                            config_payload(str(marker)),
                            [tuple(f.split('.')) for f in FIELDS])
    return SimpleNamespace(config=detector['config'], real=real, evil=evil,
                           marker=marker, root=root)


def _log_text(work_dir):
    logs = [osp.join(d, f) for d, _, names in os.walk(work_dir)
            for f in names if f.endswith('.log')]
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        return f.read()


def test_tools_train_resume_never_runs_config_text(detector_run, tmp_path):
    """Ours in-process, then mmdet's own tools/train.py with our config."""
    import mmdet
    run = detector_run
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')
    assert osp.isfile(tool)
    warning = NOT_USED.format(run.evil, ', '.join(FIELDS)) + attack(*FIELDS)
    for name in ('ours', 'mmdet'):
        work = str(tmp_path / name)
        args = [run.config, '--work-dir', work, '--resume', run.evil,
                '--cfg-options', 'train_cfg.max_iters=1']
        if name == 'ours':
            load_tool('train.py').main(args)
        else:
            proc = subprocess.run(
                [sys.executable, tool, *args], cwd=str(tmp_path),
                capture_output=True, text=True, timeout=600,
                env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'))
            assert proc.returncode == 0, proc.stderr[-3000:]
        log = _log_text(work)
        assert 'resumed epoch: 0, iter: 1' in log
        assert warning in log
        assert not run.marker.exists()


def test_det_inferencer_never_builds_config_text(detector_run, make_shapes):
    """mmdet's DetInferencer(model=None, weights=...) would build the model
    from the checkpoint's config text: it stops and the log says why; with
    the config file given, the same checkpoint predicts."""
    from mmdet.apis import DetInferencer
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    run = detector_run
    for weights in (run.real, run.evil):
        with LogLines(MMLogger.get_current_instance()) as lines, \
                pytest.raises(ValueError, match='Cannot find the config in '
                              'the checkpoint'):
            DetInferencer(model=None, weights=weights, device='cpu')
        expected = NOT_USED.format(weights, ', '.join(FIELDS[1:])) \
            if weights == run.real else \
            NOT_USED.format(weights, ', '.join(FIELDS)) + attack(*FIELDS)
        assert [line for line in lines if 'config text' in line] == [
            expected]
    assert not run.marker.exists()
    cfg = Config.fromfile(run.config)
    cfg.test_dataloader.dataset.pipeline[0].type = 'LoadImageFromFile'
    inferencer = DetInferencer(model=cfg, weights=run.evil, device='cpu')
    assert isinstance(inferencer.model.backbone, ReXNet)
    val = osp.join(make_shapes(4, 2, 64, 0), 'val')
    result = inferencer(osp.join(val, sorted(os.listdir(val))[0]),
                        return_datasamples=True)
    boxes = result['predictions'][0].pred_instances.bboxes
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 0
    assert not run.marker.exists()


# text each field could hold: none is plain data, and the reason says why
CONFIG_TEXT_ATTACKS = {
    'import': ('import os', 'an `ast.Import` statement'),
    'call': ("x = __import__('os').system('id')", '`ast.Call` is not'),
    'attribute': ('x = ().__class__', '`ast.Attribute` is not'),
    'name': ('x = open', '`ast.Name` is not'),
    'f-string': ("x = f'{open}'", '`ast.JoinedStr` is not'),
    'lambda': ('x = lambda: 0', '`ast.Lambda` is not'),
    'comprehension': ('x = [i for i in ()]', '`ast.ListComp` is not'),
    'operator': ("x = 'a' * 10**9", '`ast.BinOp` is not'),
    'unpacking': ('x = dict(**y)', '`ast.Call` is not'),
    'base': ("_base_ = ['/etc/evil.py']", '`_base_` is not data'),
    'if': ('if True:\n    x = 1', 'an `ast.If` statement'),
    'deep': ('x = ' + '[' * 70 + ']' * 70, 'nested deeper than 64'),
    'not text': (b'x = 1', 'a bytes, not text'),
}


@pytest.mark.parametrize('kind', sorted(CONFIG_TEXT_ATTACKS))
def test_config_text_that_is_not_data_is_flagged(kind):
    from rexnet_det.checkpoint.config_text import defuse_config_texts
    text, reason = CONFIG_TEXT_ATTACKS[kind]
    ckpt = dict(meta=dict(cfg=text, iter=3))
    level, line = defuse_config_texts(ckpt, 'x.pth')
    assert ckpt == dict(meta=dict(iter=3))
    assert level == logging.WARNING
    assert line.startswith(NOT_USED.format('x.pth', 'meta.cfg') +
                           '; it is not plain data, so it may be an attack '
                           '(meta.cfg: ')
    assert reason in line


def test_config_dumps_read_as_plain_data(detector_run):
    """What mmengine writes into a checkpoint reads as data (so benign files
    log at INFO), with the values mmengine's own reading gives."""
    from mmengine.config import Config

    from rexnet_det.checkpoint.config_text import (defuse_config_texts,
                                                   read_config_text)
    ckpt = torch.load(detector_run.real, weights_only=False)
    text = ckpt['meta']['cfg']
    assert text == ckpt['message_hub']['runtime_info']['cfg']
    data = read_config_text(text)
    assert data['model']['backbone']['type'] == 'ReXNet'
    assert data == Config.fromstring(text, file_format='.py').to_dict()
    assert defuse_config_texts(ckpt, 'a.pth') == (
        logging.INFO, NOT_USED.format('a.pth', ', '.join(FIELDS[1:])))
    assert 'cfg' not in ckpt['meta']
    assert 'cfg' not in ckpt['message_hub']['runtime_info']


# ------------------------------------------------------- trusted opt-in
class MyStats:
    """A user's own class in their own checkpoints."""

    def __init__(self, count=0):
        self.count = count


def test_trusted_globals_admit_own_classes_for_one_load(tmp_path):
    from rexnet_det import trusted_globals
    from rexnet_det.checkpoint import load_checkpoint_file
    path = str(tmp_path / 'own.pth')
    torch.save(dict(stats=MyStats(7)), path)
    with pytest.raises(UnsafeCheckpointError, match='MyStats'):
        load_checkpoint_file(path)
    with trusted_globals([MyStats]):
        loaded = load_checkpoint_file(path)
    assert isinstance(loaded['stats'], MyStats) and loaded['stats'].count == 7
    # only for that block, and never through pickle: code is still refused
    with pytest.raises(UnsafeCheckpointError, match='MyStats'):
        load_checkpoint_file(path)
    evil = str(tmp_path / 'evil.pth')
    marker = str(tmp_path / 'pwned')
    torch.save(dict(stats=MyStats(1), n=Exec(marker)), evil)
    with trusted_globals([MyStats]), \
            pytest.raises(UnsafeCheckpointError, match='builtins.exec'):
        load_checkpoint_file(evil)
    assert not osp.exists(marker)
    assert MyStats not in torch.serialization.get_safe_globals()


# ------------------------------------------------- the integration module
def test_integration_covers_the_whole_registry_and_is_idempotent():
    from rexnet_det import integration
    assert integration.install() is True
    assert integration.install() is True  # idempotent
    schemes = CheckpointLoader._schemes
    assert set(schemes) >= {'', 'http://', 'https://', 'open-mmlab://',
                            'openmmlab://', 'mmcls://', 'torchvision://',
                            'modelzoo://', 'pavi://', r'(\S+\:)?s3://',
                            r'(\S+\:)?petrel://'}
    assert all(getattr(loader, 'rexnet_det_prefix', None) == prefix
               for prefix, loader in schemes.items()
               if prefix != 'mirror://')
    from rexnet_det.checkpoint.schemes import FETCHERS
    unknown = set(schemes) - set(FETCHERS) - {''}
    assert unknown == set()  # every mmengine scheme has a safe fetcher


def test_integration_can_be_switched_off_and_restored(files):
    from rexnet_det import integration
    path, marker = files['evil_exec_toy']
    integration.uninstall()
    try:
        assert not getattr(CheckpointLoader._schemes[''],
                           'rexnet_det_prefix', None)
    finally:
        integration.install()
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(ToyModel(), path)
    # a fresh interpreter: the switch is read at import time
    script = ('import rexnet_det\n'
              'from mmengine.runner import CheckpointLoader\n'
              "print('ACTIVE', hasattr(CheckpointLoader._schemes[''], "
              "'rexnet_det_prefix'))\n")
    proc = subprocess.run(
        [sys.executable, '-c', script], cwd=ROOT, capture_output=True,
        text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=ROOT,
                 REXNET_DET_MMENGINE_INTEGRATION='0'))
    assert 'ACTIVE False' in proc.stdout, proc.stderr[-2000:]
    # and in this process, imported with the default, it is active
    assert getattr(CheckpointLoader._schemes[''], 'rexnet_det_prefix',
                   None) == ''
    assert not osp.exists(marker)


@contextlib.contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_env_override_cannot_turn_pickle_back_on(files, server, tmp_path):
    path, marker = files['evil_exec_toy']
    with _env(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1'):
        for name in (path, server.url + osp.basename(path)):
            with pytest.raises(UnsafeCheckpointError, match='builtins.exec'):
                load_checkpoint(ToyModel(), name)
    assert not osp.exists(marker)


def test_refusal_message_is_pickle_error_free(files):
    """Our errors are CheckpointErrors, not pickle's, so callers can catch
    one type."""
    path, _ = files['evil_os.system_toy']
    with pytest.raises(UnsafeCheckpointError) as exc:
        load_checkpoint(ToyModel(), path)
    assert not isinstance(exc.value, pickle.UnpicklingError)
