"""Everything rexnet_det changes in mmengine, in one place: the trust model.

``import rexnet_det`` (also through a config's ``custom_imports``, so for
mmdet's own ``tools/train.py`` and ``tools/test.py`` too) calls
:func:`install`, which makes exactly these changes to mmengine, and no
others:

1. **Every checkpoint scheme loads safely.** Each loader registered in
   mmengine's ``CheckpointLoader`` (the list is read from the registry
   itself: local paths, ``http(s)://``, ``open-mmlab://``, ``openmmlab://``,
   ``mmcls://``, ``torchvision://``, ``modelzoo://``, ``s3://``,
   ``petrel://``, ``pavi://``, and any scheme registered before the import)
   is replaced by :func:`rexnet_det.checkpoint.load_checkpoint_file`, and
   ``CheckpointLoader.load_checkpoint`` itself routes there, so schemes
   registered later are covered as well. Why: mmengine's local loader calls
   ``torch.load`` without ``weights_only`` and its http loader goes through
   ``torch.hub.load_state_dict_from_url(weights_only=False)``, which runs
   any code a downloaded file carries. Our loader unpickles with
   ``weights_only=True`` and an allowlist that admits data only
   (:mod:`rexnet_det.checkpoint.allowlist`). This is also what lets
   mmengine 0.10 resume its own checkpoints under torch >= 2.6, whose
   default ``weights_only=True`` refuses mmengine's ``HistoryBuffer``.
   Routes covered: ``load_from``, ``resume``, ``tools/test.py``,
   ``mmengine.runner.load_checkpoint``, ``init_cfg=dict(type='Pretrained')``
   of any module.
2. **Config text in a checkpoint is never run or built.** The same
   loaders pass what they load through
   :func:`rexnet_det.checkpoint.config_text.defuse_config_texts`, which
   removes ``meta['config']``, ``meta['cfg']`` and
   ``message_hub['runtime_info']['cfg']`` from the loaded dict and logs one
   line naming the file (a warning when the text is not plain data). Why:
   ``Runner.resume`` and ``FlexibleRunner.resume`` pass ``meta['config']``
   to ``Config.fromstring``, which executes it, and mmengine's
   ``BaseInferencer`` (so mmdet's ``DetInferencer(model=None,
   weights=...)``) does the same with the ``cfg`` texts, then builds what
   they name (``type='os.system'`` is a call).
3. **Resume checks the training state first.** ``Runner.resume`` runs with
   :class:`rexnet_det.engine.resume_check.ResumeCheckHook` first among its
   hooks, which refuses, by name, a file without training state and
   optimizer or scheduler state that does not fit the config (mmengine
   raises a bare ``KeyError`` or resumes the wrong learning rate), unless
   the config sets ``resume_reset_schedule`` / ``resume_reset_optimizer``;
   it also drops message-hub paths that mmengine's ``CheckpointHook``
   would delete outside the run's folders.
4. **``rexnet_det::`` config bases resolve.** ``rexnet_det`` is added to
   ``mmengine.config.utils.MODULE2PACKAGE`` and mmengine's
   ``get_installed_path`` finds this package's own folder (an editable
   install puts none in site-packages), so other projects can write
   ``_base_ = ['rexnet_det::ssdlite/...py']``.

Not done here, because they need no change to mmengine: strict loading of
whole detectors (the ``StrictLoadHook`` in our configs), atomic
checkpoints (``AtomicCheckpointHook``), the NaN guard, and the models,
hooks, datasets and transforms, which are ordinary registrations in mmdet's
registries.

:func:`install` is idempotent. Set ``REXNET_DET_MMENGINE_INTEGRATION=0``
before the import to skip it (mmengine then behaves as shipped: resume
fails under torch >= 2.6, remote checkpoints can run code, and so can the
config text of any checkpoint on resume), or call :func:`uninstall` to
restore mmengine's loaders and ``Runner.resume``.
"""
import os
from typing import Any, Callable, Dict, Optional

from .utils.configs import CONFIG_SCOPE, PACKAGE_DIR

ENV_SWITCH = 'REXNET_DET_MMENGINE_INTEGRATION'

_saved: Dict[str, Any] = {}


def _load_data(filename: str, map_location: Any = None,
               logger: Any = 'current') -> Any:
    """The checkpoint as data: safely unpickled, config texts removed."""
    from mmengine.logging import print_log

    from .checkpoint import load_checkpoint_file
    from .checkpoint.config_text import defuse_config_texts
    checkpoint = load_checkpoint_file(filename, map_location)
    note = defuse_config_texts(checkpoint, str(filename))
    if note:
        print_log(note[1], logger=logger, level=note[0])
    return checkpoint


def _safe_scheme_loader(prefix: str) -> Callable:

    def load_from_rexnet_det_safe(filename: str,
                                  map_location: Optional[Any] = None) -> Any:
        return _load_data(filename, map_location)

    load_from_rexnet_det_safe.rexnet_det_prefix = prefix
    return load_from_rexnet_det_safe


def _load_checkpoint(cls, filename: str, map_location: Any = None,
                     logger: str = 'current') -> Any:
    """Replaces ``CheckpointLoader.load_checkpoint``."""
    from mmengine.logging import print_log
    print_log(f'Loads checkpoint safely (weights_only, rexnet_det) from '
              f'path: {filename}', logger=logger)
    # mmengine passes logger=None (print); the note belongs in the run's log
    return _load_data(filename, map_location, logger or 'current')


def _resume(self, filename: str, resume_optimizer: bool = True,
            resume_param_scheduler: bool = True,
            map_location: Any = 'default') -> None:
    """Replaces ``Runner.resume``: mmengine's, with a
    :class:`~rexnet_det.engine.resume_check.ResumeCheckHook` first among
    the hooks while it runs."""
    from .engine.resume_check import ResumeCheckHook
    hook = ResumeCheckHook(filename, resume_optimizer,
                           resume_param_scheduler)
    self.hooks.insert(0, hook)  # the runner's own list
    try:
        _saved['resume'](self, filename, resume_optimizer,
                         resume_param_scheduler, map_location)
    finally:
        self.hooks.remove(hook)


def _installed_path(package: str) -> str:
    if package == CONFIG_SCOPE:
        return PACKAGE_DIR
    return _saved['get_installed_path'](package)


def is_installed() -> bool:
    return bool(_saved)


def install() -> bool:
    """Make the changes listed in the module docstring (idempotent).

    Returns:
        bool: Whether the integration is active (False when switched off
        with ``REXNET_DET_MMENGINE_INTEGRATION=0``).
    """
    if os.getenv(ENV_SWITCH, '1').lower() in ('0', 'false', 'no', 'off'):
        return False
    if _saved:
        return True
    import mmengine.config.config as mmengine_config
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import CheckpointLoader

    from .checkpoint.schemes import ORIGINAL_LOADERS

    _saved['schemes'] = dict(CheckpointLoader._schemes)
    _saved['resume'] = Runner.__dict__['resume']
    _saved['load_checkpoint'] = CheckpointLoader.__dict__['load_checkpoint']
    _saved['get_installed_path'] = mmengine_config.get_installed_path
    ORIGINAL_LOADERS.update(_saved['schemes'])
    for prefix in _saved['schemes']:
        CheckpointLoader.register_scheme(
            prefixes=prefix, loader=_safe_scheme_loader(prefix), force=True)
    CheckpointLoader.load_checkpoint = classmethod(_load_checkpoint)
    MODULE2PACKAGE.setdefault(CONFIG_SCOPE, CONFIG_SCOPE)
    mmengine_config.get_installed_path = _installed_path
    Runner.resume = _resume
    return True


def uninstall() -> None:
    """Restore mmengine's own loaders and config lookup."""
    if not _saved:
        return
    import mmengine.config.config as mmengine_config
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import CheckpointLoader

    from .checkpoint.schemes import ORIGINAL_LOADERS
    CheckpointLoader._schemes = _saved['schemes']
    Runner.resume = _saved['resume']
    CheckpointLoader.load_checkpoint = _saved['load_checkpoint']
    mmengine_config.get_installed_path = _saved['get_installed_path']
    ORIGINAL_LOADERS.clear()
    _saved.clear()
