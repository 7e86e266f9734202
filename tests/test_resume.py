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
from tests.fixtures.logs import LogLines
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


# ------------------------------- training state that does not fit the config
# mmengine 0.10.7 zips the checkpoint's schedulers with the config's and
# loads the optimizer state into whatever optimizer the config builds: a
# changed config resumes silently with the wrong learning rate, or stops
# with a bare KeyError. rexnet_det refuses by name unless told to reset.
@pytest.fixture(scope='module')
def toy_checkpoints(tmp_path_factory):
    """Iteration-2 checkpoints of the toy run: SGD (momentum) with
    LinearLR + MultiStepLR, and AdamW with the same schedulers."""
    out = {}
    for name, optimizer in (('sgd', None),
                            ('adamw', dict(type='AdamW', lr=1e-3))):
        work = str(tmp_path_factory.mktemp(name))
        runner = make_runner(work, max_iters=2, interval=2,
                             optimizer=optimizer)
        runner.train()
        runner.logger.handlers.clear()
        out[name] = os.path.join(work, 'iter_2.pth')
    weights = str(tmp_path_factory.mktemp('weights') / 'weights.pth')
    torch.save(safe_torch_load(out['sgd'])['state_dict'], weights)
    out['weights_only'] = weights
    wrapped = weights.replace('weights.pth', 'wrapped.pth')
    torch.save(dict(state_dict=safe_torch_load(weights)), wrapped)
    out['state_dict_only'] = wrapped
    return out


def _weights(runner):
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def _unchanged(runner, before):
    after = runner.model.state_dict()
    assert after.keys() == before.keys() and before
    return all(after[k].equal(v) for k, v in before.items())


def _lr(runner):
    return runner.optim_wrapper.optimizer.param_groups[0]['lr']


LINEAR = dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
              end=2)
MULTISTEP = dict(type='MultiStepLR', milestones=[3], by_epoch=False)
OTHER_SCHEDULES = {
    'fewer': ([MULTISTEP],
              "param_scheduler: the config has ['MultiStepLR'] (1), the "
              'checkpoint 2 schedulers'),
    'swapped': ([MULTISTEP, LINEAR],
                "param_scheduler[0] (MultiStepLR): the checkpoint's scheduler"
                " 0 has ['end_factor', 'start_factor', 'total_iters'] and "
                "lacks ['gamma', 'milestones']: another scheduler type"),
    'momentum': ([LINEAR, dict(MULTISTEP, type='MultiStepMomentum')],
                 "param_scheduler[1] (MultiStepMomentum): the checkpoint's "
                 "scheduler 1 lacks ['use_betas']: another scheduler type"),
    'parameter': ([dict(LINEAR, type='LinearParamScheduler',
                        param_name='weight_decay'), MULTISTEP],
                  "param_scheduler[0] (LinearParamScheduler): param_name "
                  "'lr' in the checkpoint, 'weight_decay' in the config"),
    'none': ([], 'param_scheduler: the config has [] (0), the checkpoint 2 '
             'schedulers'),
}


@pytest.mark.parametrize('kind', sorted(OTHER_SCHEDULES))
def test_resume_refuses_a_schedule_that_does_not_fit(kind, toy_checkpoints,
                                                     tmp_path):
    from rexnet_det.engine import ResumeMismatchError
    schedule, expected = OTHER_SCHEDULES[kind]
    ckpt = toy_checkpoints['sgd']
    runner = make_runner(str(tmp_path), load_from=ckpt, resume=True,
                         param_scheduler=schedule)
    before = _weights(runner)
    with pytest.raises(ResumeMismatchError) as exc:
        runner.load_or_resume()
    message = str(exc.value)
    assert message.startswith(f'cannot resume from {ckpt}: its training '
                              'state does not fit the config: ')
    assert expected in message
    assert 'resume_reset_schedule=True (tools/train.py ' \
        '--resume-reset-schedule' in message
    assert _unchanged(runner, before) and runner.iter == 0
    runner.logger.handlers.clear()


def test_resume_takes_changed_settings_from_the_config(toy_checkpoints,
                                                       tmp_path):
    """New milestones and a longer run (MultiStepLR's end follows
    max_iters): the checkpoint's progress, the config's settings (mmengine
    keeps the checkpoint's, silently)."""
    ckpt = toy_checkpoints['sgd']
    runner = make_runner(str(tmp_path), max_iters=6, load_from=ckpt,
                         resume=True,
                         param_scheduler=[LINEAR, dict(MULTISTEP,
                                                       milestones=[5])])
    with LogLines(runner.logger) as lines:
        runner.load_or_resume()
    assert [line for line in lines if 'resuming the schedule' in line] == [
        f"{ckpt}: resuming the schedule with the config's "
        'param_scheduler[1] (MultiStepLR) end 6 (the checkpoint has 2); '
        'param_scheduler[1] (MultiStepLR) milestones Counter({5: 1}) (the '
        'checkpoint has Counter({3: 1}))']
    multistep = runner.param_schedulers[1]
    assert multistep.milestones == {5: 1} and multistep.end == 6
    saved = safe_torch_load(ckpt)['param_schedulers'][1]
    assert saved['end'] == 2 and saved['last_step'] >= 1
    assert multistep.last_step == saved['last_step'] and runner.iter == 2
    assert _lr(runner) == pytest.approx(0.01)
    runner.logger.handlers.clear()


def test_resume_reset_schedule_starts_the_config_schedule(toy_checkpoints,
                                                          tmp_path):
    """Finding 7's case (another set of schedulers), resumed on request:
    the LR is the new schedule's, momentum buffers are the checkpoint's."""
    ckpt = toy_checkpoints['sgd']
    saved = safe_torch_load(ckpt)
    assert saved['optimizer']['param_groups'][0]['lr'] == pytest.approx(0.01)
    constant = [dict(type='ConstantLR', factor=0.5, end=10, by_epoch=False)]
    runner = make_runner(str(tmp_path), max_iters=3, load_from=ckpt,
                         resume=True, param_scheduler=constant)
    runner.cfg.resume_reset_schedule = True
    runner.train()
    assert runner.iter == 3
    # ConstantLR's value at its first steps: 0.5 x the config's lr 0.01
    assert _lr(runner) == pytest.approx(0.005, rel=1e-12)
    assert runner.param_schedulers[0].last_step == 1
    runner.logger.handlers.clear()
    # the momentum buffers resumed: one step from them, not from zero
    fresh = make_runner(str(tmp_path / 'fresh'), max_iters=3, load_from=ckpt,
                        resume=True, param_scheduler=constant)
    fresh.cfg.resume_reset_optimizer = True
    fresh.train()
    assert _lr(fresh) == pytest.approx(0.005, rel=1e-12)
    moved = [(a - b).abs().max().item() for a, b in zip(
        runner.model.state_dict().values(), fresh.model.state_dict().values())
             if a.is_floating_point()]
    assert len(moved) > 20 and max(moved) > 1e-6
    fresh.logger.handlers.clear()


def test_resume_refuses_another_optimizer_type(toy_checkpoints, tmp_path):
    """AdamW state into an SGD config: mmengine resumes it and the first
    step fails with KeyError: 'momentum'."""
    from rexnet_det.engine import ResumeMismatchError
    ckpt = toy_checkpoints['adamw']
    runner = make_runner(str(tmp_path), max_iters=3, load_from=ckpt,
                         resume=True)
    before = _weights(runner)
    with pytest.raises(ResumeMismatchError) as exc:
        runner.load_or_resume()
    message = str(exc.value)
    assert (f'cannot resume from {ckpt}: its training state does not fit '
            "the config: optim_wrapper (SGD): the checkpoint's optimizer "
            "state (param group 0) lacks ['dampening', 'momentum'] and has "
            "['amsgrad', 'betas'") in message  # SGD fills in nesterov
    assert 'written by another optimizer type' in message
    assert 'resume_reset_optimizer=True (tools/train.py ' \
        '--resume-reset-optimizer' in message
    assert _unchanged(runner, before)
    runner.logger.handlers.clear()
    # on request: the weights and iteration resume, SGD starts afresh
    runner = make_runner(str(tmp_path / 'reset'), max_iters=3,
                         load_from=ckpt, resume=True)
    runner.cfg.resume_reset_optimizer = True
    runner.train()
    assert runner.iter == 3 and runner.param_schedulers[0].last_step == 1
    state = runner.optim_wrapper.optimizer.state_dict()['state']
    assert len(state) > 20 and all('momentum_buffer' in s
                                   for s in state.values())
    runner.logger.handlers.clear()


@pytest.mark.parametrize('kind', ['weights_only', 'state_dict_only'])
def test_resume_from_a_file_without_training_state(kind, toy_checkpoints,
                                                   tmp_path):
    """mmengine: a bare KeyError: 'meta'."""
    from rexnet_det import CheckpointError
    path = toy_checkpoints[kind]
    runner = make_runner(str(tmp_path), load_from=path, resume=True)
    with pytest.raises(CheckpointError) as exc:
        runner.load_or_resume()
    assert str(exc.value) == (
        f'cannot resume from {path}: it holds no training state (no meta, '
        'message_hub); it is a weights-only or exported file. To start '
        'training from its weights, use load_from instead of --resume '
        f'(--cfg-options load_from={path})')
    runner.logger.handlers.clear()


def test_resume_drops_hub_paths_mmengine_would_delete(toy_checkpoints,
                                                      tmp_path):
    """mmengine's CheckpointHook deletes (rmtree for a folder) the previous
    best checkpoint named in the message hub, and the keep_ckpt_ids files:
    from a checkpoint, only names inside this run's folders are kept."""
    victim = tmp_path / 'victim'
    victim.mkdir()
    (victim / 'data.txt').write_text('keep')
    ckpt = safe_torch_load(toy_checkpoints['sgd'])
    info = ckpt['message_hub']['runtime_info']
    info['best_ckpt'] = str(victim)
    info['best_ckpt_coco/bbox_mAP'] = str(tmp_path / 'work' / 'best.pth')
    info['keep_ckpt_ids'] = ['../../victim']
    path = str(tmp_path / 'crafted.pth')
    torch.save(ckpt, path)
    runner = make_runner(str(tmp_path / 'work'), load_from=path, resume=True)
    with LogLines(runner.logger) as lines:
        runner.load_or_resume()
    assert [line for line in lines if 'ignored message_hub' in line] == [
        f'{path}: ignored message_hub.runtime_info {entry}: mmengine deletes '
        'the checkpoints it names, and it is not a checkpoint of this run'
        for entry in (f'best_ckpt={str(victim)!r}',
                      "keep_ckpt_ids=['../../victim']")]
    hub = runner.message_hub.runtime_info
    assert 'best_ckpt' not in hub and 'keep_ckpt_ids' not in hub
    assert hub['best_ckpt_coco/bbox_mAP'] == str(tmp_path / 'work' /
                                                 'best.pth')
    assert runner.iter == 2 and (victim / 'data.txt').read_text() == 'keep'
    runner.logger.handlers.clear()


def test_train_tool_reset_flags(shapes, toy_checkpoints, tmp_path):
    from tests.conftest import load_tool
    tool = load_tool('train.py')
    cfg = write_tiny_config(str(tmp_path / 'tiny.py'), 'ssdlite', shapes)
    built = tool.build_cfg(tool.parse_args(
        [cfg, '--resume', toy_checkpoints['sgd'], '--resume-reset-schedule']))
    assert built.resume_reset_schedule is True and built.resume is True
    assert 'resume_reset_optimizer' not in built
    with pytest.raises(ValueError, match='--resume-reset-schedule/'
                       '--resume-reset-optimizer need --resume'):
        tool.build_cfg(tool.parse_args([cfg, '--resume-reset-optimizer']))
