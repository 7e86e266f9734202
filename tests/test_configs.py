"""Every shipped config builds, trains a step, predicts and traces; its neck
matches the backbone; ImageNet init through the config is exact."""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmengine.config import Config

from rexnet_det import ReXNet, convert_state_dict

from .test_checkpoint import assert_backbone_equals, official_like

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(ROOT, 'configs')

EXPECTED = {
    'ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py',
    'ssdlite/ssdlite_rexnet-1.0x-in1k-pre_8xb24-600e_coco.py',
    'ssdlite/ssdlite_rexnet-1.3x_8xb24-600e_coco.py',
    'ssdlite/ssdlite_rexnet-1.5x_8xb24-600e_coco.py',
    'ssdlite/ssdlite_rexnet-2.0x_8xb24-600e_coco.py',
    'mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_1x_coco.py',
    'mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_ms-3x_coco.py',
    'faster_rcnn/faster-rcnn_rexnet-1.0x_fpn_1x_coco.py',
    'retinanet/retinanet_rexnet-1.0x_fpn_1x_coco.py',
    'demo/mask-rcnn_rexnet-1.0x_fpn_shapes.py',
    'demo/ssdlite_rexnet-1.0x_shapes.py',
}
# bases (configs/_base_/) are not configs of a model
CONFIGS = sorted(
    osp.relpath(p, CONFIG_DIR)
    for p in glob.glob(osp.join(CONFIG_DIR, '*', '*.py'))
    if not p.startswith(osp.join(CONFIG_DIR, '_base_')))

register_all_modules()


def test_config_list_is_complete():
    assert CONFIGS and set(CONFIGS) == EXPECTED


def load(name):
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    cfg.model.backbone.init_cfg = None
    return cfg


def neck_in_channels(model_cfg):
    neck = model_cfg.neck
    return tuple(neck.in_channels)


@pytest.mark.parametrize('name', CONFIGS)
def test_neck_matches_backbone(name):
    cfg = load(name)
    assert cfg.custom_imports == dict(imports=['rexnet_det'],
                                      allow_failed_imports=False)
    backbone = MODELS.build(cfg.model.backbone)
    assert isinstance(backbone, ReXNet)
    assert neck_in_channels(cfg.model) == backbone.out_channels
    assert backbone.out_channels == tuple(
        backbone.feature_info[i]['num_chs'] for i in backbone.out_indices)
    # and the real feature maps have those channels
    with torch.no_grad():
        feats = backbone.eval()(torch.rand(1, 3, 64, 64))
    assert tuple(f.shape[1] for f in feats) == backbone.out_channels
    if cfg.model.type == 'SingleStageDetector':  # SSDLite
        assert cfg.model.backbone.out_indices == (3, 5)
        assert cfg.model.bbox_head.type == 'SSDLiteHead'
        assert tuple(cfg.model.bbox_head.in_channels) == tuple(
            cfg.model.neck.out_channels)
        assert tuple(cfg.model.neck.out_channels[:2]) == \
            backbone.out_channels


def _batch(cfg, model, num_classes, with_mask, batch_size=2, size=96):
    packed = demo_mm_inputs(batch_size, image_shapes=(3, size, size),
                            num_items=[2] * batch_size,
                            num_classes=num_classes, with_mask=with_mask)
    return model.data_preprocessor(packed, True)


def _num_classes(cfg):
    head = cfg.model.get('roi_head', {}).get('bbox_head') or \
        cfg.model.bbox_head
    return head.num_classes


@pytest.mark.parametrize('name', CONFIGS)
def test_loss_predict_tensor(name):
    cfg = load(name)
    # Fewer proposals / RoIs than on COCO keep the test fast; the layers
    # built are the config's own.
    if 'rpn_head' in cfg.model:
        cfg.model.train_cfg.rpn_proposal.max_per_img = 64
        cfg.model.train_cfg.rcnn.sampler.num = 64
        cfg.model.test_cfg.rpn.max_per_img = 32
        cfg.model.test_cfg.rcnn.max_per_img = 10
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    num_classes = _num_classes(cfg)
    with_mask = 'roi_head' in cfg.model and 'mask_head' in cfg.model.roi_head
    model.train()
    data = _batch(cfg, model, num_classes, with_mask)
    losses = model.forward(**data, mode='loss')
    total, log_vars = model.parse_losses(losses)
    assert torch.isfinite(total) and total > 0
    expected = {'SingleStageDetector': {'loss_cls', 'loss_bbox'},
                'RetinaNet': {'loss_cls', 'loss_bbox'},
                'FasterRCNN': {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls',
                               'loss_bbox'},
                'MaskRCNN': {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls',
                             'loss_bbox', 'loss_mask'}}[cfg.model.type]
    assert expected <= set(log_vars)
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)

    model.eval()
    data = _batch(cfg, model, num_classes, with_mask)
    with torch.no_grad():
        results = model.forward(**data, mode='predict')
        feats = model.forward(**data, mode='tensor')
    assert len(results) == 2
    for res in results:
        assert isinstance(res, DetDataSample)
        pred = res.pred_instances
        assert pred.bboxes.shape[1] == 4
        assert len(pred.scores) == len(pred.labels) == len(pred.bboxes)
        if with_mask:
            assert pred.masks.shape[0] == len(pred.bboxes)
    assert isinstance(feats, tuple) and len(feats) > 0


def test_stock_ssd_head_cannot_predict_but_ours_can():
    """mmdet 3.3.0's SSDHead raises in predict (tests/test_upstream.py pins
    the version); SSDLiteHead fixes it."""
    cfg = load('ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py')
    broken = copy.deepcopy(cfg.model)
    broken.bbox_head.type = 'SSDHead'
    for model_cfg, ok in ((broken, False), (cfg.model, True)):
        model = MODELS.build(model_cfg).eval()
        data = _batch(cfg, model, 80, False, size=64)
        with torch.no_grad():
            if ok:
                assert len(model.forward(**data, mode='predict')) == 2
            else:
                with pytest.raises(AttributeError, match='loss_cls'):
                    model.forward(**data, mode='predict')


@pytest.mark.parametrize('name', [
    'mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_1x_coco.py',
    'ssdlite/ssdlite_rexnet-1.0x-in1k-pre_8xb24-600e_coco.py'
])
def test_imagenet_init_through_config_is_exact(name, tmp_path):
    """An official (clovaai-layout) checkpoint named in the config's
    init_cfg leaves the backbone exactly equal to it."""
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint='checkpoints/rexnetv1_1.0.pth')
    clovaai = official_like()
    path = tmp_path / 'rexnetv1_1.0.pth'
    torch.save(clovaai, path)
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': str(path)})
    model = MODELS.build(cfg.model)
    model.init_weights()
    canonical = convert_state_dict(clovaai, 'rexnet_det')
    backbone = model.backbone
    if backbone.pen is not None:  # SSDLite uses the 1280-channel conv too
        assert_backbone_equals(backbone, canonical)
    else:
        state = backbone.state_dict()
        assert len(state) > 300
        for key, value in state.items():
            assert torch.equal(value, canonical[f'backbone.{key}']), key


@pytest.mark.parametrize('name,eps', [
    ('ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py', 1e-3),
    ('ssdlite/ssdlite_rexnet-1.0x-in1k-pre_8xb24-600e_coco.py', 1e-5),
    ('mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_1x_coco.py', 1e-5),
])
def test_backbone_bn_eps(name, eps):
    """The ImageNet-initialised SSDLite uses the checkpoint's BN eps
    (PyTorch's 1e-5), the scratch one mmdet's SSDLite eps (1e-3)."""
    backbone = MODELS.build(load(name).model.backbone)
    norms = [m for m in backbone.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) > 40 and {m.eps for m in norms} == {eps}


@pytest.mark.parametrize('name', CONFIGS)
def test_reliability_settings_everywhere(name):
    """Every config gets the settings of configs/_base_/reliability.py."""
    cfg = load(name)
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    hooks = [h.type for h in cfg.custom_hooks]
    assert {'NonFiniteLossHook', 'StrictLoadHook'} <= set(hooks)
    assert cfg.allow_partial_load is False
    assert cfg.allow_nonfinite_weights is False
    for split in ('train', 'val', 'test'):
        dataset = cfg[f'{split}_dataloader'].dataset
        if dataset.type in ('RepeatDataset', 'ClassBalancedDataset'):
            dataset = dataset.dataset
        assert dataset.type == 'CheckedCocoDataset', (split, dataset.type)


def test_metafile_lists_every_coco_config():
    """configs/metafile.yml (OpenMMLab model-index format): one entry per
    COCO config, parameter counts as built, paper figures kept apart."""
    from mmengine.fileio import load as load_file
    meta = load_file(osp.join(CONFIG_DIR, 'metafile.yml'))
    models = {m['Config']: m for m in meta['Models']}
    coco = {f'configs/{c}' for c in CONFIGS if not c.startswith('demo/')}
    assert coco and set(models) == coco
    for path, model in models.items():
        assert model['Name'] == osp.splitext(osp.basename(path))[0]
        assert model['Results'] == [] and model['Weights'] is None
        cfg = load(path[len('configs/'):])
        built = MODELS.build(cfg.model)
        params = sum(p.numel() for p in built.parameters()) / 1e6
        assert model['Metadata']['Parameters'] == f'{params:.2f}M', path
    paper = {m['Name']: m['Paper Results'] for m in meta['Models']
             if 'Paper Results' in m}
    assert paper['mask-rcnn_rexnet-1.0x_fpn_1x_coco'][1]['Metrics'][
        'mask AP'] == 35.4
    assert paper['faster-rcnn_rexnet-1.0x_fpn_1x_coco'][0]['Metrics'][
        'box AP'] == 38.5


def test_scope_configs_resolve_through_the_metafile(tmp_path):
    """mmengine finds `rexnet_det::` configs through .mim/model-index.yml."""
    from mmengine.config.utils import _get_cfg_metainfo

    from rexnet_det.utils.configs import PACKAGE_DIR
    name = 'mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_1x_coco.py'
    entry = _get_cfg_metainfo(PACKAGE_DIR, name)
    assert entry['Config'] == f'configs/{name}'
    (tmp_path / 'mine.py').write_text(f"_base_ = ['rexnet_det::{name}']\n")
    assert Config.fromfile(str(tmp_path / 'mine.py')).model.neck \
        .in_channels == [38, 61, 128, 185]
