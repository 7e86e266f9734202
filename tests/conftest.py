"""Fixtures shared by the whole suite."""
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope='session')
def one_thread():
    """Tiny tensors: one thread is fastest, and OpenMP spin-waits make two
    threads many times slower when other processes share the 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mmdet_scope():
    """Build from mmdet's registries (a toy Runner may have left the default
    scope at mmengine)."""
    from mmengine.registry import DefaultScope, init_default_scope
    previous = DefaultScope.get_current_instance()
    init_default_scope('mmdet')
    yield
    if previous is not None:
        init_default_scope(previous.scope_name)


@pytest.fixture(scope='session')
def make_shapes(tmp_path_factory):
    """``make_shapes(num_train, num_val, size, seed)``: the built-in shapes
    data set (COCO format, masks), generated once per argument set."""
    from rexnet_det.datasets import make_synthetic_coco
    made = {}

    def make(num_train=8, num_val=4, size=96, seed=0):
        key = (num_train, num_val, size, seed)
        if key not in made:
            root = str(tmp_path_factory.mktemp(f'shapes_{size}_{seed}'))
            make_synthetic_coco(root, num_train=num_train, num_val=num_val,
                                size=size, seed=seed)
            made[key] = root
        return made[key]

    return make


def load_tool(relative_path: str):
    """Import a tools/ script as a module, to call its main() in-process."""
    import importlib.util
    path = os.path.join(ROOT, 'tools', relative_path)
    name = 'tool_' + relative_path.replace('/', '_')[:-3]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_briefly_and_export(cfg, root: str, iters: int, onnx_name: str
                             ) -> dict:
    """Train `cfg` (datasets already pointed at the data) for `iters`
    iterations without validation, dump it and export the last checkpoint
    with ``tools/deploy/export.py``; return the paths."""
    import os.path as osp

    from mmengine.runner import Runner
    from torch.nn.modules.batchnorm import _BatchNorm
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=10**6)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1,
                                by_epoch=False, begin=0, end=10)]
    cfg.default_hooks.checkpoint = dict(
        type='AtomicCheckpointHook', interval=iters, by_epoch=False)
    cfg.log_processor = dict(by_epoch=False)
    cfg.randomness = dict(seed=0)
    cfg.work_dir = osp.join(root, 'work')
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    # BatchNorm statistics must settle within a few dozen iterations (the
    # configs' momentum 0.03 leaves eval-mode outputs nearly constant)
    for module in runner.model.modules():
        if isinstance(module, _BatchNorm):
            module.momentum = 0.3
    runner.train()
    checkpoint = osp.join(cfg.work_dir, f'iter_{iters}.pth')
    config_path = osp.join(root, 'config.py')
    cfg.dump(config_path)
    model = osp.join(root, onnx_name)
    load_tool('deploy/export.py').main([config_path, checkpoint, '--out',
                                        model])
    return dict(config=config_path, checkpoint=checkpoint, model=model)


@pytest.fixture(scope='session')
def trained_ssdlite(tmp_path_factory):
    """SSDLite-ReXNet-1.0x (configs/demo) trained a few dozen iterations on
    the built-in shapes (large objects, so that it finds some), exported
    with tools/deploy/export.py; shared by the deployment and INT8 tests."""
    import os.path as osp

    from rexnet_det.utils.configs import load_config
    from rexnet_det.datasets import SyntheticCocoSpec, make_synthetic_coco
    root = str(tmp_path_factory.mktemp('deploy_trained'))
    data = osp.join(root, 'shapes')
    make_synthetic_coco(data, num_train=64, num_val=32, seed=0,
                        spec=SyntheticCocoSpec(size=96, min_objects=1,
                                               max_objects=2, min_scale=0.35,
                                               max_scale=0.7))
    cfg = load_config(osp.join(ROOT, 'configs/demo/'
                               'ssdlite_rexnet-1.0x_shapes.py'))
    for key in ('train_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = data + '/'
    cfg.test_evaluator.ann_file = osp.join(
        data, 'annotations/instances_val.json')
    cfg.optim_wrapper = dict(type='OptimWrapper', clip_grad=dict(
        max_norm=10), optimizer=dict(type='SGD', lr=0.05, momentum=0.9,
                                     weight_decay=4e-5))
    return dict(root=root, data=data,
                **train_briefly_and_export(cfg, root, 40, 'ssdlite.onnx'))


#: Session fixtures that train or benchmark for a minute or more: under
#: pytest-xdist (``make test`` runs two workers) every test that uses one
#: goes to the same worker, so each is built once.
HEAVY_FIXTURES = ('trained_ssdlite', 'trained_mask_rcnn', 'quick')


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in HEAVY_FIXTURES:
            if name in getattr(item, 'fixturenames', ()):
                item.add_marker(pytest.mark.xdist_group(name))
                break
