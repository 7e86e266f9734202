"""tools/dist_train.sh: 2 processes, gloo on CPU, the shipped detectors."""
import os
import re
import socket
import subprocess
import sys

import pytest

from rexnet_det import safe_torch_load
from rexnet_det.datasets import make_synthetic_coco
from tests.fixtures.tiny_configs import write_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    make_synthetic_coco(root, num_train=8, num_val=1, size=64, seed=0)
    return root


@pytest.mark.parametrize('model', ['mask_rcnn', 'ssdlite'])
def test_two_process_gloo_training(model, shapes, tmp_path):
    cfg = write_tiny_config(
        str(tmp_path / f'tiny_{model}.py'), model, shapes, max_iters=3,
        ckpt_interval=3, extra_hooks=[dict(type='DumpRankStateHook')])
    work = str(tmp_path / 'work')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()),
               OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    proc = subprocess.run(
        ['bash', os.path.join(ROOT, 'tools', 'dist_train.sh'), cfg, '2',
         '--work-dir', work], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    # DDP without find_unused_parameters: a parameter without a gradient
    # would have failed the second iteration.
    wrapper = re.search(r'model_wrapper_cfg = dict\(([^)]*)\)', log)
    assert wrapper and 'find_unused_parameters=False' in wrapper[1] and \
        'MMDistributedDataParallel' in wrapper[1]
    assert 'Iter(train) [3/3]' in log
    assert 'Distributed training: True' in log and 'GPU number: 2' in log

    ranks = [safe_torch_load(os.path.join(work, f'rank{r}_state.pth'))
             for r in (0, 1)]
    params = [{k: v for k, v in s.items() if not k.endswith(BUFFERS)}
              for s in ranks]
    assert params[0].keys() == params[1].keys() and len(params[0]) > 100
    unequal = [k for k in params[0]
               if not params[0][k].equal(params[1][k])]
    assert unequal == []  # bitwise identical parameters on both ranks
    ckpt = safe_torch_load(os.path.join(work, 'iter_3.pth'))
    assert ckpt['state_dict'].keys() == ranks[0].keys()
    assert all(ckpt['state_dict'][k].equal(v) for k, v in ranks[0].items())
