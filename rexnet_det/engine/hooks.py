"""Training hooks: stop on non-finite losses, dump per-rank weights."""
import math
import os
import os.path as osp
from typing import Any, Dict, Optional

import torch
from mmdet.registry import HOOKS
from mmengine.dist import all_reduce, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..utils.io import atomic_output


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss or weights; nothing was saved."""


def _value(v: Any) -> float:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean())
    return float(v)


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop training at the first NaN/inf loss, before it reaches a
    checkpoint.

    mmdet's ``CheckInvalidLossHook`` checks every 50 iterations and fails
    with ``AssertionError: None``. This hook checks every loss term after
    every iteration, before ``CheckpointHook`` runs (higher priority), and
    raises :class:`NonFiniteLossError` naming the iteration and the terms.
    As a second line it refuses to write a checkpoint whose weights are not
    finite (``before_save_checkpoint``), whatever made them so (e.g.
    overflowing gradients with a finite loss).

    Args:
        check_weights_on_save (bool): Also check every floating point tensor
            of the state dict before a checkpoint is written. Default: True.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, check_weights_on_save: bool = True) -> None:
        self.check_weights_on_save = check_weights_on_save

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[Dict[str, Any]] = None) -> None:
        if not outputs:
            return
        values = {}
        for key, v in outputs.items():
            if 'loss' in key:
                try:
                    values[key] = _value(v)
                except (TypeError, ValueError):
                    continue
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if get_world_size() > 1:
            # a NaN on one rank must stop all of them, or the others hang
            flag = torch.tensor(float(bool(bad)))
            all_reduce(flag, op='max')
            if flag.item() and not bad:
                bad = ['(on another rank)']
        if bad:
            terms = ', '.join(f'{k}={v:.4g}' for k, v in values.items())
            last = runner.message_hub.get_info('last_ckpt')
            raise NonFiniteLossError(
                f'non-finite loss at iteration {runner.iter + 1} (epoch '
                f'{runner.epoch + 1}): {", ".join(bad)} ({terms}). Training '
                'stopped before this iteration\'s weights were saved; the '
                f'last checkpoint is {last or "none (none written yet)"}. '
                'Lower the learning rate, add warmup or gradient clipping '
                '(optim_wrapper.clip_grad), or check the annotations.')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.check_weights_on_save:
            return
        bad = [k for k, v in checkpoint.get('state_dict', {}).items()
               if isinstance(v, torch.Tensor) and v.is_floating_point()
               and not bool(torch.isfinite(v).all())]
        if bad:
            raise NonFiniteLossError(
                f'refusing to save a checkpoint at iteration {runner.iter} '
                f'(epoch {runner.epoch}): {len(bad)} tensors hold NaN/inf, '
                f'e.g. {", ".join(bad[:3])}. The previous checkpoint is '
                'kept.')


@HOOKS.register_module()
class DumpRankStateHook(Hook):
    """Write each rank's model state dict after training, for checking that
    data-parallel ranks ended with the same weights.

    Every rank saves ``<out_dir>/rank<R>_state.pth`` (plain tensors, so it
    loads with ``weights_only=True``).

    Args:
        out_dir (str, optional): Folder; default: the runner's work_dir.
    """

    priority = 'LOWEST'

    def __init__(self, out_dir: Optional[str] = None) -> None:
        self.out_dir = out_dir

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        out_dir = self.out_dir or runner.work_dir
        os.makedirs(out_dir, exist_ok=True)
        path = osp.join(out_dir, f'rank{get_rank()}_state.pth')
        state = {k: v.detach().cpu().clone()
                 for k, v in model.state_dict().items()}
        with atomic_output(path) as tmp:
            torch.save(state, tmp)
