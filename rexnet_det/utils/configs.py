"""Configs: where they are (``mmdet::``, ``rexnet_det::``, plain paths),
reading them and building their model - written once for the tools, the
export and the benchmarks."""
import copy
import os.path as osp
from typing import Optional, Union

import torch.nn as nn
from mmengine.config import Config
from mmengine.utils import get_installed_path

#: The ``pkg::`` scope of our configs (shipped in ``rexnet_det/.mim``).
CONFIG_SCOPE = 'rexnet_det'
#: This package's folder, also for an editable install.
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def resolve_config(path: str) -> str:
    """Turn ``mmdet::dir/file.py``, ``rexnet_det::dir/file.py`` (the
    configs shipped inside the package, editable or not) or a path into a
    file path.

    Raises:
        FileNotFoundError: No such config (the message names the path).
    """
    if '::' in path:
        package, rel = path.split('::', 1)
        try:
            root = PACKAGE_DIR if package == CONFIG_SCOPE else \
                get_installed_path(package)
        except Exception:  # the package is not installed
            raise FileNotFoundError(f'config {path!r}: package {package!r} '
                                    'is not installed') from None
        candidate = osp.join(root, '.mim', 'configs', rel)
    else:
        candidate = path
    if not osp.isfile(candidate):
        raise FileNotFoundError(f'config file not found: {path}')
    return candidate


def load_config(config: Union[str, Config]) -> Config:
    """A config from a path, ``rexnet_det::...`` or ``mmdet::...`` (a
    :class:`Config` is returned as it is).

    Raises:
        FileNotFoundError: No such config (the message names the path).
    """
    if isinstance(config, Config):
        return config
    return Config.fromfile(resolve_config(config))


def build_model(cfg: Config, model: Optional[dict] = None) -> nn.Module:
    """Build ``cfg.model`` (or `model`, e.g. a changed copy of it) in the
    config's default scope, with the constructor's random weights
    (``init_weights`` is not called).

    Args:
        cfg (Config): The config (its ``default_scope``, default mmdet).
        model (dict, optional): The model config to build instead of
            ``cfg.model``. Default: None.
    """
    import mmdet.models  # noqa: F401  registers mmdet's modules
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return MODELS.build(copy.deepcopy(cfg.model if model is None else model))
