"""Let configs elsewhere inherit ours as ``rexnet_det::<dir>/<file>.py``.

mmengine resolves ``pkg::path`` bases through
``mmengine.config.utils.MODULE2PACKAGE`` (it asserts that ``pkg`` is a key),
finds the package with ``get_installed_path(pkg)``, reads
``.mim/model-index.yml`` and falls back to ``.mim/configs/<path>``
(``rexnet_det/.mim/configs`` links to the repository's ``configs/``).

``get_installed_path`` joins the distribution's location with the package
name. For a PEP 660 editable install (``pip install -e .``, what
``make setup`` does) that location is site-packages, where no
``rexnet_det`` directory exists, so for this one package the path is taken
from the imported module instead.

Bases are resolved while a config file is parsed, before its
``custom_imports`` run, so a tool must ``import rexnet_det`` before
``Config.fromfile`` (``tools/train.py`` and ``tools/test.py`` do).
"""
import os.path as osp
from typing import Callable

import mmengine.config.config as mmengine_config
from mmengine.config.utils import MODULE2PACKAGE

SCOPE = 'rexnet_det'
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _with_own_path(get_installed_path: Callable[[str], str]
                   ) -> Callable[[str], str]:

    def installed_path(package: str) -> str:
        if package == SCOPE:
            return PACKAGE_DIR
        return get_installed_path(package)

    installed_path.rexnet_det_wrapped = True
    return installed_path


def register_config_scope() -> None:
    """Make ``rexnet_det::`` bases resolvable (idempotent)."""
    MODULE2PACKAGE.setdefault(SCOPE, SCOPE)
    current = mmengine_config.get_installed_path
    if not getattr(current, 'rexnet_det_wrapped', False):
        mmengine_config.get_installed_path = _with_own_path(current)
