"""Refuse checkpoints that do not fit the model, on every Runner load.

mmengine's ``Runner.load_checkpoint`` (used by ``load_from``, ``resume``
and ``tools/test.py``) loads with ``strict=False``: a backbone-only or
ImageNet file fills the backbone, leaves neck and heads random and the
run goes on (tests report mAP 0); an entry that is not a dense tensor (a
meta or sparse tensor, a numpy array, a number) is skipped with a warning.
Runners call ``after_load_checkpoint`` on every hook before the weights are
copied, so this hook checks every entry first
(:func:`~rexnet_det.checkpoint.check_coverage`), whichever tool built the
Runner (ours or mmdet's). In ``before_run`` it also tells the reader how
big the model is, so that a file claiming far more data is refused before
it is inflated (:func:`~rexnet_det.checkpoint.expect_model`).
"""
from typing import Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..checkpoint import check_coverage, expect_model, stop_expecting


@HOOKS.register_module()
class StrictLoadHook(Hook):
    """Refuse a checkpoint with missing, unexpected or misshapen tensors.

    Partial loading stays possible, on purpose only: set
    ``allow_partial=True`` here or ``allow_partial_load = True`` in the
    config (``--cfg-options allow_partial_load=True``). Entries that would
    copy garbage (not dense tensors, another dtype class, NaN / Inf) are
    refused even then. NaN / Inf weights load only with
    ``allow_nonfinite=True`` here or ``allow_nonfinite_weights = True`` in
    the config.

    Args:
        allow_partial (bool, optional): Let mmengine skip missing,
            unexpected and misshapen tensors, as it does by default. None
            reads the config's ``allow_partial_load`` (default False).
        allow_nonfinite (bool, optional): Load NaN / Inf weights. None reads
            the config's ``allow_nonfinite_weights`` (default False).
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_partial: Optional[bool] = None,
                 allow_nonfinite: Optional[bool] = None) -> None:
        self.allow_partial = allow_partial
        self.allow_nonfinite = allow_nonfinite
        self._expecting = None

    def _setting(self, runner, value: Optional[bool], name: str) -> bool:
        if value is not None:
            return value
        cfg = getattr(runner, 'cfg', None) or {}
        return bool(cfg.get(name, False))

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) \
            else runner.model

    def before_run(self, runner) -> None:
        # Runner.train/val/test call before_run, then load_or_resume.
        self._expecting = expect_model(self._model(runner))

    def after_run(self, runner) -> None:
        self._stop_expecting()

    def _stop_expecting(self) -> None:
        if self._expecting is not None:
            stop_expecting(self._expecting)
            self._expecting = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._stop_expecting()
        check_coverage(
            self._model(runner), checkpoint,
            partial=self._setting(runner, self.allow_partial,
                                  'allow_partial_load'),
            allow_nonfinite=self._setting(runner, self.allow_nonfinite,
                                          'allow_nonfinite_weights'))
