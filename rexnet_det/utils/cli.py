"""What tools/train.py and tools/test.py do alike with a config."""
import os.path as osp
from typing import Optional

from mmengine.config import Config

from .configs import load_config


def load_tool_config(config: str, launcher: str = 'none',
                     cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None) -> Config:
    """Read `config` (a path, ``rexnet_det::...`` or ``mmdet::...``) and
    apply mmdet's usual command-line settings.

    work_dir priority: `work_dir` > the config's > ``./work_dirs/<name>``.

    Raises:
        FileNotFoundError: `config` does not exist (named in the message).
    """
    cfg = load_config(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    ensure_strict_load(cfg)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg


def ensure_strict_load(cfg: Config) -> None:
    """Add ``StrictLoadHook`` to ``cfg.custom_hooks`` unless it is there
    (our configs have it) or the config opts out with
    ``allow_partial_load=True``, so our tools never half-load a model."""
    if cfg.get('allow_partial_load', False):
        return
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(h.get('type') in ('StrictLoadHook', 'mmdet.StrictLoadHook')
               for h in hooks):
        hooks.append(dict(type='mmdet.StrictLoadHook'))
        cfg.custom_hooks = hooks
