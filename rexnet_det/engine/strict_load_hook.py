"""Refuse checkpoints that do not cover the model, on every Runner load.

mmengine's ``Runner.load_checkpoint`` (used by ``load_from``, ``resume``
and ``tools/test.py``) loads with ``strict=False``: a backbone-only or
ImageNet file fills the backbone, leaves neck and heads random and the
run goes on (tests report mAP 0). Runners call ``after_load_checkpoint``
on every hook before the weights are copied, so this hook stops such a
load first, whichever tool built the Runner (ours or mmdet's).
"""
from typing import Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..checkpoint import check_coverage


@HOOKS.register_module()
class StrictLoadHook(Hook):
    """Refuse a checkpoint with missing, unexpected or misshapen tensors.

    Partial loading stays possible, on purpose only: set
    ``allow_partial=True`` here or ``allow_partial_load = True`` in the
    config (``--cfg-options allow_partial_load=True``).

    Args:
        allow_partial (bool, optional): Let mmengine load whatever fits, as
            it does by default. None reads the config's
            ``allow_partial_load`` (default False).
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_partial: Optional[bool] = None) -> None:
        self.allow_partial = allow_partial

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        allow = self.allow_partial
        if allow is None:
            cfg = getattr(runner, 'cfg', None) or {}
            allow = bool(cfg.get('allow_partial_load', False))
        if allow:
            return
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        check_coverage(model, checkpoint)
