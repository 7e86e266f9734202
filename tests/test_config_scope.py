"""`rexnet_det::` config bases resolve from any directory."""
import subprocess
import sys

from mmengine.config.utils import MODULE2PACKAGE

import rexnet_det  # noqa: F401


def test_import_registers_scope():
    assert MODULE2PACKAGE['rexnet_det'] == 'rexnet_det'


def test_without_import_mmengine_refuses(tmp_path):
    """Bases resolve before custom_imports; without `import rexnet_det`
    mmengine does not know the scope (this is why tools import it first)."""
    (tmp_path / 'cfg.py').write_text(
        "_base_ = ['rexnet_det::mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_1x_"
        "coco.py']\n")
    script = ('from mmengine.config import Config\n'
              "Config.fromfile('cfg.py')\n")
    proc = subprocess.run([sys.executable, '-c', script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'mmengine does not support to load rexnet_det config' in \
        proc.stderr


def test_downstream_config_builds_in_the_rexnet_det_scope(tmp_path):
    """Dicts from `rexnet_det::` bases carry _scope_='rexnet_det'; that scope
    resolves to mmdet's registries (ours included)."""
    from mmengine.config import Config
    from mmengine.registry import DATASETS, HOOKS, MODELS
    (tmp_path / 'mine.py').write_text(
        "_base_ = ['rexnet_det::demo/ssdlite_rexnet-1.0x_shapes.py']\n")
    cfg = Config.fromfile(str(tmp_path / 'mine.py'))
    scoped = [h for h in cfg.custom_hooks if h.get('_scope_') == 'rexnet_det']
    assert len(scoped) == 3
    assert [type(HOOKS.build(h)).__name__ for h in cfg.custom_hooks] == [
        'NumClassCheckHook', 'NonFiniteLossHook', 'StrictLoadHook']
    backbone = MODELS.build(dict(cfg.model.backbone, _scope_='rexnet_det'))
    assert type(backbone).__name__ == 'ReXNet'
    with DATASETS.switch_scope_and_registry('rexnet_det') as registry:
        assert registry.scope == 'rexnet_det'
        assert registry.get('CheckedCocoDataset').__name__ == \
            'CheckedCocoDataset'
