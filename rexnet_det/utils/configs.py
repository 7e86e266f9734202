"""Where configs are: ``mmdet::``, ``rexnet_det::`` and plain paths."""
import os.path as osp

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
