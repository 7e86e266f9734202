"""Resume only a training state that fits the config, and say so by name.

mmengine 0.10's ``Runner.resume`` trusts the checkpoint's training state:

* it reads ``meta['epoch']``, ``meta['iter']`` and ``message_hub`` without
  looking (a weights-only file stops with ``KeyError: 'meta'``);
* it loads the optimizer state into whatever optimizer the config builds
  (AdamW state into SGD replaces SGD's settings with AdamW's, and the first
  step stops with ``KeyError: 'momentum'``);
* it ``zip``\\ s the checkpoint's LR/momentum schedulers with the config's
  and overwrites each one's settings with the checkpoint's: another list of
  schedulers resumes silently with the wrong learning rate, and a changed
  setting (new milestones, the ``end`` of a longer run) is silently
  ignored;
* the message hub's ``best_ckpt*`` paths are files mmengine's
  ``CheckpointHook`` later deletes (``rmtree`` for a folder), and its
  ``keep_ckpt_ids`` name the checkpoints it deletes.

:func:`check_resume` runs on the loaded checkpoint before any of it is used
(:mod:`rexnet_det.integration` puts a :class:`ResumeCheckHook` first for the
length of every ``Runner.resume``). Schedulers of the same type and
parameter as the config's resume their progress with the config's settings
(logged). Anything else that does not fit is refused, naming the file and
the scheduler or optimizer, unless the config asks to start that part
afresh:

* ``resume_reset_schedule=True`` (``tools/train.py
  --resume-reset-schedule``): the checkpoint's scheduler states are not
  loaded; the config's schedulers start from their first step at the
  resumed iteration, and the optimizer's settings (``lr``, ``momentum``,
  ...) are the config's at that step. Per-parameter optimizer state
  (momentum buffers, Adam moments) is still resumed.
* ``resume_reset_optimizer=True`` (``--resume-reset-optimizer``): neither
  the optimizer state nor the schedulers are loaded (weights, iteration
  and message hub are).
"""
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.hooks import CheckpointHook, Hook
from mmengine.optim import OptimWrapperDict

from ..utils.errors import CheckpointError, CheckpointMismatchError

RESET_SCHEDULE = 'resume_reset_schedule'
RESET_OPTIMIZER = 'resume_reset_optimizer'
# Scheduler state that changes while training (everything else is a
# setting from the config), read from every scheduler mmengine and mmdet
# register: mmengine's _ParamScheduler and ReduceOnPlateau.
PROGRESS = frozenset({
    'last_step', '_global_step', '_last_value', 'base_values', 'best',
    'num_bad_epochs', 'cooldown_counter'
})
# scheduler settings that make it another schedule, not a changed one
STRUCTURAL = ('param_name', 'by_epoch')
# param-group keys that are not optimizer settings
_NOT_SETTINGS = ('params', 'param_names')
_HINT = {
    RESET_SCHEDULE: 'to start the config\'s schedule afresh at the resumed '
    'iteration',
    RESET_OPTIMIZER: 'to start the optimizer state and schedule afresh',
}


class ResumeMismatchError(CheckpointMismatchError):
    """A checkpoint whose training state does not fit the config. Nothing
    of it was loaded."""


def require_training_state(checkpoint: Any, source: str) -> None:
    """Refuse a file without the state ``Runner.resume`` reads.

    Raises:
        CheckpointError: No ``meta`` with integer ``epoch`` and ``iter``,
            or no ``message_hub`` dict (a weights-only or exported file).
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    lacks = []
    if not isinstance(meta, dict):
        lacks.append('meta')
    else:
        lacks += [f'meta.{k}' for k in ('epoch', 'iter')
                  if type(meta.get(k)) is not int]
    if not isinstance(checkpoint, dict) or not isinstance(
            checkpoint.get('message_hub'), dict):
        lacks.append('message_hub')
    if lacks:
        raise CheckpointError(
            f'cannot resume from {source}: it holds no training state (no '
            f'{", ".join(lacks)}); it is a weights-only or exported file. To '
            'start training from its weights, use load_from instead of '
            f'--resume (--cfg-options load_from={source})')


def _settings(group: dict) -> set:
    return {k for k in group
            if k not in _NOT_SETTINGS and not k.startswith('initial_')}


def _as_loaded(optimizer: torch.optim.Optimizer, saved: list) -> list:
    """The saved param groups as ``load_state_dict`` leaves them: torch
    optimizers fill in settings added after the file was written."""
    try:
        probe = type(optimizer)(
            [{'params': [torch.zeros(1, requires_grad=True)]}
             for _ in saved], **optimizer.defaults)
        probe.load_state_dict({'state': {}, 'param_groups': [
            {**{k: v for k, v in g.items() if k not in _NOT_SETTINGS},
             'params': [i]} for i, g in enumerate(saved)]})
        return probe.param_groups
    except (TypeError, ValueError, RuntimeError, KeyError):
        return saved  # an optimizer we cannot probe: compare as saved


def optimizer_misfit(optimizer: torch.optim.Optimizer, saved: Any,
                     label: str) -> Optional[str]:
    """Why `saved` (an optimizer ``state_dict``) does not fit `optimizer`,
    or None when it does."""
    name = f'{label} ({type(optimizer).__name__})'
    groups = saved.get('param_groups') if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not all(
            isinstance(g, dict) and isinstance(g.get('params'), list)
            for g in groups):
        return f'{name}: the checkpoint holds no optimizer param_groups'
    ours = optimizer.param_groups
    if [len(g['params']) for g in groups] != [len(g['params'])
                                              for g in ours]:
        return (f'{name}: the checkpoint has {len(groups)} parameter '
                f'groups of {[len(g["params"]) for g in groups]} '
                f'parameters, the config {len(ours)} of '
                f'{[len(g["params"]) for g in ours]} (paramwise_cfg or '
                'the model changed)')
    for index, (group, loaded) in enumerate(
            zip(ours, _as_loaded(optimizer, groups))):
        lacks = sorted(_settings(group) - _settings(loaded))
        alien = sorted(_settings(loaded) - _settings(group))
        if lacks or alien:
            return (f'{name}: the checkpoint\'s optimizer state (param group '
                    f'{index}) lacks {lacks} and has {alien}: it was '
                    f'written by another optimizer type')
    return None


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):  # tensors, arrays
        return repr(a) == repr(b)


def reconcile_schedulers(schedulers: Optional[list], saved: Any,
                         label: str) -> Tuple[Optional[str], List[str]]:
    """Fit `saved` (a list of scheduler state dicts) to the built
    `schedulers`.

    The list must match one to one in type (the state's keys),
    ``param_name`` and ``by_epoch``. A setting the config changed (an
    ``end`` that follows a longer ``max_iters``, new milestones) is taken
    from the config, in `saved`, keeping the checkpoint's progress.

    Returns:
        (why the lists do not match, or None; the settings taken from the
        config, for the log).
    """
    ours = list(schedulers or [])
    names = [type(s).__name__ for s in ours]
    if not isinstance(saved, list) or not all(
            isinstance(s, dict) for s in saved):
        saved = [] if saved is None else None
    if saved is None or len(saved) != len(ours):
        count = 'no list' if saved is None else len(saved)
        return (f'{label}: the config has {names} ({len(ours)}), the '
                f'checkpoint {count} schedulers'), []
    adopted = []
    for index, (scheduler, state) in enumerate(zip(ours, saved)):
        where = f'{label}[{index}] ({names[index]})'
        current = scheduler.state_dict()
        if set(current) != set(state):
            has, lacks = set(state) - set(current), set(current) - set(state)
            differ = ' and '.join(
                [f'has {sorted(has)}'] * bool(has) +
                [f'lacks {sorted(lacks)}'] * bool(lacks))
            return (f'{where}: the checkpoint\'s scheduler {index} {differ}'
                    ': another scheduler type'), []
        for key in STRUCTURAL:
            if not _same(current.get(key), state.get(key)):
                return (f'{where}: {key} {state.get(key)!r} in the '
                        f'checkpoint, {current.get(key)!r} in the config'), []
        for key in sorted(current):
            if key not in PROGRESS and not _same(current[key], state[key]):
                adopted.append(f'{where} {key} {current[key]!r} (the '
                               f'checkpoint has {state[key]!r})')
                state[key] = current[key]
    return None, adopted


def _optimizers(optim_wrapper: Any) -> Dict[str, torch.optim.Optimizer]:
    if isinstance(optim_wrapper, OptimWrapperDict):
        return {f'optim_wrapper.{k}': w.optimizer
                for k, w in optim_wrapper.items()}
    return {'optim_wrapper': optim_wrapper.optimizer}


def _saved_optimizers(optim_wrapper: Any, saved: Any) -> Dict[str, Any]:
    if isinstance(optim_wrapper, OptimWrapperDict):
        saved = saved if isinstance(saved, dict) else {}
        return {f'optim_wrapper.{k}': saved.get(k) for k in optim_wrapper}
    return {'optim_wrapper': saved}


def _scheduler_lists(schedulers: Any, saved: Any) -> List[tuple]:
    if isinstance(schedulers, dict):
        saved = saved if isinstance(saved, dict) else {}
        return [(f'param_scheduler.{k}', v, saved.get(k))
                for k, v in schedulers.items()]
    return [('param_scheduler', schedulers, saved)]


def _hub_paths(runner, checkpoint: dict, source: str) -> List[str]:
    """Drop message-hub entries that would make mmengine's CheckpointHook
    delete files outside this run's checkpoint folders."""
    info = checkpoint['message_hub'].get('runtime_info')
    if not isinstance(info, dict):
        return []
    folders = [runner.work_dir] + [
        h.out_dir for h in runner.hooks
        if isinstance(h, CheckpointHook) and isinstance(h.out_dir, str)]
    folders = [osp.realpath(f) for f in folders]
    notes = []
    for key in [k for k in info if str(k).startswith('best_ckpt')]:
        path = info[key]
        inside = isinstance(path, str) and any(
            osp.realpath(path).startswith(f + osp.sep) for f in folders)
        if not (inside and path.endswith('.pth')):
            del info[key]
            notes.append(f'{key}={path!r}')
    ids = info.get('keep_ckpt_ids')
    if ids is not None and not (isinstance(ids, list) and all(
            type(i) is int for i in ids)):
        del info['keep_ckpt_ids']
        notes.append(f'keep_ckpt_ids={ids!r}')
    return [f'{source}: ignored message_hub.runtime_info {n}: mmengine '
            'deletes the checkpoints it names, and it is not a checkpoint of '
            'this run' for n in notes]


def check_resume(runner, checkpoint: Any, source: str,
                 resume_optimizer: bool = True,
                 resume_param_scheduler: bool = True) -> None:
    """Refuse, or reset on request, training state that does not fit.

    Changes `checkpoint` in place (only on request, or to drop unsafe
    message-hub paths) and builds the runner's optimizer wrapper and
    schedulers if they are still configs, as ``Runner.resume`` would.

    Args:
        runner (Runner): The resuming runner; its config's
            ``resume_reset_schedule`` / ``resume_reset_optimizer`` are read.
        checkpoint: The loaded checkpoint.
        source (str): The file's name, for messages.
        resume_optimizer (bool): As passed to ``Runner.resume``.
        resume_param_scheduler (bool): As passed to ``Runner.resume``.

    Raises:
        CheckpointError: The file holds no training state.
        ResumeMismatchError: Its optimizer or scheduler state does not fit
            the config (the message names them and the option to reset).
    """
    require_training_state(checkpoint, source)
    for note in _hub_paths(runner, checkpoint, source):
        runner.logger.warning(note)
    cfg = runner.cfg or {}
    reset_optimizer = bool(cfg.get(RESET_OPTIMIZER, False))
    reset_schedule = reset_optimizer or bool(cfg.get(RESET_SCHEDULE, False))
    if runner.optim_wrapper is None:
        return  # nothing to resume into (mmengine skips it too)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    if runner.param_schedulers is not None:
        runner.param_schedulers = runner.build_param_scheduler(
            runner.param_schedulers)
    if reset_optimizer:
        checkpoint.pop('optimizer', None)
        checkpoint.pop('param_schedulers', None)
        runner.logger.warning(f'{source}: {RESET_OPTIMIZER}=True: the '
                              'optimizer state and schedulers start afresh')
        return
    optimizers = _optimizers(runner.optim_wrapper)
    saved = _saved_optimizers(runner.optim_wrapper,
                              checkpoint.get('optimizer'))
    problems = []
    if resume_optimizer and 'optimizer' in checkpoint:
        problems = [p for p in (optimizer_misfit(o, saved[k], k)
                                for k, o in optimizers.items()) if p]
    if problems:
        _refuse(source, problems, RESET_OPTIMIZER)
    if reset_schedule:
        checkpoint.pop('param_schedulers', None)
        for label, optimizer in optimizers.items():
            state = saved[label] if resume_optimizer else None
            groups = state['param_groups'] if isinstance(state, dict) else []
            for group, saved_group in zip(optimizer.param_groups, groups):
                saved_group.update({k: v for k, v in group.items()
                                    if k not in _NOT_SETTINGS})
        runner.logger.warning(f'{source}: {RESET_SCHEDULE}=True: the '
                              'schedule starts afresh at the resumed '
                              'iteration')
        return
    if not resume_param_scheduler:
        return
    adopted = []
    for label, ours, theirs in _scheduler_lists(
            runner.param_schedulers, checkpoint.get('param_schedulers')):
        problem, taken = reconcile_schedulers(ours, theirs, label)
        problems += [problem] if problem else []
        adopted += taken
    if problems:
        _refuse(source, problems, RESET_SCHEDULE)
    if adopted:
        runner.logger.warning(f'{source}: resuming the schedule with the '
                              f'config\'s {"; ".join(adopted)}')


def _refuse(source: str, problems: List[str], option: str) -> None:
    raise ResumeMismatchError(
        f'cannot resume from {source}: its training state does not fit the '
        f'config: {" | ".join(problems)}. Nothing was loaded. Resume with '
        f'the config it was trained with, or set {option}=True '
        f'(tools/train.py --{option.replace("_", "-")}; --cfg-options '
        f'{option}=True) {_HINT[option]}.')


class ResumeCheckHook(Hook):
    """Runs :func:`check_resume` when the checkpoint is loaded, before
    mmengine uses any of it. Added for one ``Runner.resume`` by
    :mod:`rexnet_det.integration`; not meant for configs."""

    priority = 'HIGHEST'

    def __init__(self, source: str, resume_optimizer: bool = True,
                 resume_param_scheduler: bool = True) -> None:
        self.source = str(source)
        self.resume_optimizer = resume_optimizer
        self.resume_param_scheduler = resume_param_scheduler

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        check_resume(runner, checkpoint, self.source, self.resume_optimizer,
                     self.resume_param_scheduler)
