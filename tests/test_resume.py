"""Never lose progress: SIGKILL mid-run, then --resume; crashes mid-save."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from rexnet_det import safe_torch_load
from rexnet_det.datasets import make_synthetic_coco
from rexnet_det.utils.io import is_temporary
from tests.fixtures.tiny_configs import write_tiny_config
from tests.fixtures.toy_runner import make_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'tools', 'train.py')
# Resumed and uninterrupted runs execute the same float ops on the same
# values (weights, momentum, BN statistics and LR schedule come back exactly
# from the checkpoint; data order and flips replay from the seed), and CPU
# kernels are deterministic for a fixed thread count: we measured a max
# difference of 0.0. The tolerance only absorbs a different reduction order
# should a kernel pick another algorithm; it is >100x below the change that
# the resumed iterations make to the weights (asserted below).
ATOL = 1e-6


def _env():
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1',
                MKL_NUM_THREADS='1')


def _train(cfg, work_dir, *args):
    return subprocess.Popen(
        [sys.executable, TRAIN, cfg, '--work-dir', work_dir, *args],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _max_diff(a, b):
    assert a.keys() == b.keys() and a
    return max((x.double() - y.double()).abs().max().item()
               for x, y in zip(a.values(), b.values())
               if x.is_floating_point())


def _iters(log):
    """{iteration: 'lr: ... grad_norm: ... loss: ...'} from a log."""
    found = {}
    for m in re.finditer(r'Iter\(train\) \[(\d+)/\d+\] +(lr: \S+).*?'
                         r'data_time: \S+ +(.*)$', log, re.M):
        found[int(m[1])] = f'{m[2]} {m[3]}'
    return found


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Tiny tensors: one thread is fastest, and OpenMP spin-waits make two
    threads 100x slower when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    make_synthetic_coco(root, num_train=8, num_val=1, size=64, seed=0)
    return root


def test_sigkill_then_resume_matches_uninterrupted(shapes, tmp_path):
    cfg = write_tiny_config(str(tmp_path / 'tiny_ssdlite.py'), 'ssdlite',
                            shapes, max_iters=6, ckpt_interval=2)
    full, crashed = str(tmp_path / 'full'), str(tmp_path / 'crashed')
    uninterrupted = _train(cfg, full)

    proc = _train(cfg, crashed)
    marker = os.path.join(crashed, 'last_checkpoint')
    deadline = time.time() + 300
    while not os.path.exists(marker) and proc.poll() is None:
        assert time.time() < deadline, 'no checkpoint within 300 s'
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(crashed, 'iter_6.pth')), \
        'the run finished before it was killed'
    with open(marker) as f:
        saved = f.read().strip()
    resumed_from = safe_torch_load(saved)  # pruned once the run goes on
    step = resumed_from['meta']['iter']
    assert step in (2, 4)  # usually 2: killed as soon as it appeared
    assert saved == os.path.join(crashed, f'iter_{step}.pth')

    log = _finish(_train(cfg, crashed, '--resume'))
    assert f'resumed epoch: 0, iter: {step}' in log
    full_log = _finish(uninterrupted)
    # the same learning rate, gradient norm and losses after the resume
    assert sorted(_iters(log)) == list(range(step + 1, 7))
    assert _iters(log) == {k: v for k, v in _iters(full_log).items()
                           if k > step}

    a = safe_torch_load(os.path.join(full, 'iter_6.pth'))
    b = safe_torch_load(os.path.join(crashed, 'iter_6.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == 6
    # the resumed iterations really changed the weights ...
    moved = _max_diff(resumed_from['state_dict'], b['state_dict'])
    assert moved > 100 * ATOL
    # ... exactly as the uninterrupted run did
    assert _max_diff(a['state_dict'], b['state_dict']) <= ATOL
    momentum = [{k: v['momentum_buffer'] for k, v in
                 c['optimizer']['state'].items()} for c in (a, b)]
    assert len(momentum[0]) > 100
    assert _max_diff(*momentum) <= ATOL
    assert a['param_schedulers'] == b['param_schedulers']
    assert len(b['param_schedulers']) == 2
    assert a['meta']['dataset_meta'] == b['meta']['dataset_meta']
    assert b['meta']['dataset_meta']['classes'] == (
        'circle', 'rectangle', 'triangle', 'ellipse')


# Simulates SIGKILL in the middle of writing a checkpoint: the second large
# binary write (the iteration-2 checkpoint) writes half its bytes, then the
# process kills itself. Both mmengine's LocalBackend (open) and
# AtomicCheckpointHook (os.fdopen) are intercepted.
_CRASH_SCRIPT = textwrap.dedent('''
    import builtins, os, signal, sys
    from tests.fixtures.toy_runner import make_runner
    writes = [0]

    class Killing:
        """A binary file whose second large write is torn by SIGKILL."""
        def __init__(self, f):
            self.f = f
        def write(self, data):
            if len(data) > 50000:
                writes[0] += 1
                if writes[0] == 2:
                    self.f.write(data[:len(data) // 2])
                    self.f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            return self.f.write(data)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.f.__exit__(*exc)
        def __getattr__(self, name):
            return getattr(self.f, name)

    real_open, real_fdopen = builtins.open, os.fdopen
    def open_(file, mode='r', *a, **k):
        f = real_open(file, mode, *a, **k)
        return Killing(f) if 'w' in mode and 'b' in mode else f
    builtins.open = open_
    os.fdopen = lambda *a, **k: Killing(real_fdopen(*a, **k))
    make_runner(sys.argv[2], max_iters=3, ckpt_hook=sys.argv[1],
                interval=1, max_keep_ckpts=1).train()
''')


@pytest.mark.parametrize('hook', ['AtomicCheckpointHook', 'CheckpointHook'])
def test_kill_during_checkpoint_write(hook, tmp_path):
    work = str(tmp_path / 'work')
    proc = subprocess.run([sys.executable, '-c', _CRASH_SCRIPT, hook, work],
                          cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    with open(os.path.join(work, 'last_checkpoint')) as f:
        pointed = f.read().strip()
    assert pointed == os.path.join(work, 'iter_1.pth')
    if hook == 'CheckpointHook':
        # mmengine 0.10.7 deleted iter_1 before writing iter_2 (torn), so
        # there is nothing to resume from: the reason for our hook.
        assert not os.path.exists(pointed)
        assert os.path.getsize(os.path.join(work, 'iter_2.pth')) > 0
        return
    assert not os.path.exists(os.path.join(work, 'iter_2.pth'))
    leftovers = [n for n in os.listdir(work) if is_temporary(n)]
    assert len(leftovers) == 1 and leftovers[0].startswith('.iter_2.')
    assert safe_torch_load(pointed)['meta']['iter'] == 1
    runner = make_runner(work, max_iters=3, interval=1, max_keep_ckpts=1,
                         resume=True)
    runner.train()
    assert runner.iter == 3
    assert sorted(n for n in os.listdir(work) if 'iter_' in n) == [
        'iter_3.pth'
    ]  # the torn temporary file was cleaned up, old checkpoints pruned
    runner.logger.handlers.clear()


def test_atomic_checkpoint_hook_keeps_mmengine_bookkeeping(tmp_path):
    runner = make_runner(str(tmp_path), max_iters=4, interval=1,
                         max_keep_ckpts=2)
    runner.train()
    files = sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth'))
    assert files == ['iter_3.pth', 'iter_4.pth']
    ckpt = safe_torch_load(str(tmp_path / 'iter_4.pth'))
    info = ckpt['message_hub']['runtime_info']
    assert info['keep_ckpt_ids'] == [3, 4]
    assert info['last_ckpt'] == str(tmp_path / 'iter_4.pth')
    assert (tmp_path / 'last_checkpoint').read_text() == str(
        tmp_path / 'iter_4.pth')
    assert oct(os.stat(tmp_path / 'iter_4.pth').st_mode & 0o777) == oct(
        0o666 & ~_umask())
    torch.testing.assert_close(
        ckpt['state_dict']['head.weight'],
        runner.model.state_dict()['head.weight'])


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
