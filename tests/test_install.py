"""The package works from a non-editable install, run from another folder:
configs ship inside it, nothing assumes the repository layout."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from tests.conftest import ROOT

SCRIPT = textwrap.dedent('''
    import json, os, os.path as osp, sys
    import rexnet_det
    assert rexnet_det.__file__.startswith({site!r}), rexnet_det.__file__
    assert not osp.exists(osp.join(osp.dirname(rexnet_det.__file__), '..',
                                   'tools'))
    from mmengine.config import Config
    from mmengine.runner import Runner
    from rexnet_det.checkpoint import load_model
    from rexnet_det.datasets import make_synthetic_coco
    from rexnet_det.utils.configs import build_model, load_config

    data = make_synthetic_coco('data', num_train=4, num_val=2, size=64)
    # a downstream project's config inheriting ours by scope
    with open('mine.py', 'w') as f:
        f.write("_base_ = ['rexnet_det::demo/ssdlite_rexnet-1.0x_shapes.py']\\n"
                "data_root = {data!r}\\n")
    cfg = Config.fromfile('mine.py')
    for split in ('train', 'val', 'test'):
        cfg[split + '_dataloader'].dataset.data_root = 'data/'
        cfg[split + '_dataloader'].batch_size = 2
    for split in ('val', 'test'):
        cfg[split + '_evaluator'].ann_file = \\
            'data/annotations/instances_val.json'
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=2)
    cfg.default_hooks.checkpoint = dict(type='AtomicCheckpointHook',
                                        interval=2, by_epoch=False)
    cfg.param_scheduler = []
    cfg.log_processor = dict(by_epoch=False)
    cfg.work_dir = 'work'
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    detector = build_model(load_config(
        'rexnet_det::ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py'))
    params = sum(p.numel() for p in detector.parameters())
    model, spec, source = load_model('rexnet-1.0x')
    print('RESULT', json.dumps(dict(
        ckpt=osp.isfile('work/iter_2.pth'), metric=sorted(metrics)[:1],
        spec=spec.name, params=round(params / 1e6, 2))))
''')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """rexnet_det built as a wheel and installed into a folder of its own
    (no editable link back to the checkout)."""
    root = tmp_path_factory.mktemp('install')
    # build from a copy: setuptools writes build/ next to setup.py
    source = root / 'src'
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        '.venv', '.git', 'build', 'work_dirs', '*.egg-info', '__pycache__',
        'data', '.pytest_cache'))
    wheels = root / 'wheels'
    build = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '-q', '-w', str(wheels), str(source)],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel, = glob.glob(str(wheels / 'rexnet_det-*.whl'))
    site = root / 'site'
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)  # what pip install --target does for a wheel
    return wheel, str(site)


def test_wheel_ships_every_config(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.split('.mim/configs/', 1)[1] for n in names
               if '.mim/configs/' in n and n.endswith('.py')}
    in_repo = {osp.relpath(p, osp.join(ROOT, 'configs'))
               for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                                  recursive=True)}
    assert in_repo and shipped == in_repo
    assert 'rexnet_det/.mim/model-index.yml' in names
    assert 'rexnet_det/.mim/configs/metafile.yml' in names


def _modules(paths) -> set:
    """Dotted module names of the ``.py`` files among `paths` (relative,
    '/'-separated), configs under ``.mim`` left out."""
    return {p[:-3].replace('/', '.').replace('.__init__', '')
            for p in paths if p.endswith('.py') and '/.mim/' not in p}


def test_wheel_ships_the_product_and_no_benchmark_code(installed):
    wheel, _ = installed
    shipped = _modules(n for n in zipfile.ZipFile(wheel).namelist()
                       if '.dist-info/' not in n)
    # exactly the package's own modules: nothing from tools/ or tests/
    source = _modules(osp.relpath(p, ROOT).replace(os.sep, '/') for p in
                      glob.glob(osp.join(ROOT, 'rexnet_det', '**', '*.py'),
                                recursive=True))
    assert shipped == source
    assert {m.split('.')[0] for m in shipped} == {'rexnet_det'}
    assert {'rexnet_det.models', 'rexnet_det.checkpoint',
            'rexnet_det.engine', 'rexnet_det.datasets',
            'rexnet_det.evaluation', 'rexnet_det.deploy',
            'rexnet_det.deploy.detector'} <= shipped
    # no benchmark, peer or analysis module under any name
    tool_names = {osp.splitext(osp.basename(p))[0] for p in glob.glob(
        osp.join(ROOT, 'tools', '**', '*.py'), recursive=True)} - {
        '__init__', 'export', 'train', 'test', 'verify', 'fuse',
        'quantize'}  # CLIs named after the package module they wrap
    assert {'benchmark', 'busy_weights', 'onnx_graph', 'timing',
            'gpu_throughput', 'rank', 'demo'} <= tool_names
    leaked = sorted(m for m in shipped if m.rsplit('.', 1)[-1] in tool_names
                    or {'analysis', 'apps', 'bench'} & set(m.split('.')))
    assert leaked == []


def test_train_test_and_build_from_another_folder(installed, tmp_path):
    _, site = installed
    env = dict(os.environ, PYTHONPATH=site, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-c', SCRIPT.format(site=site, data='data/')],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT')]
    assert line, proc.stdout[-2000:]
    assert '"ckpt": true' in line[0] and '"spec": "rexnet-1.0x"' in line[0]
    assert '"metric": ["coco/bbox_mAP"]' in line[0]
    assert '"params": 5.54' in line[0]  # SSDLite-ReXNet-1.0x, as in a checkout
