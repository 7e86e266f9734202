"""What tools/train.py and tools/test.py do alike with a config."""
import os.path as osp
from typing import Optional

from mmengine.config import Config


def load_tool_config(config: str, launcher: str = 'none',
                     cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None) -> Config:
    """Read `config` and apply mmdet's usual command-line settings.

    work_dir priority: `work_dir` > the config's > ``./work_dirs/<name>``.

    Raises:
        FileNotFoundError: `config` does not exist (named in the message).
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg
