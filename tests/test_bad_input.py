"""Bad input gets a clear error, or is handled correctly."""
import contextlib
import copy
import json
import logging
import math
import os
import re

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

from rexnet_det import ReXNet, safe_torch_load
from rexnet_det.datasets import (CheckedCocoDataset, CheckedLoadImageFromFile,
                                 DatasetError, ImageLoadError,
                                 make_synthetic_coco)
from rexnet_det.engine import NonFiniteLossError
from rexnet_det.models import check_backbone_input, check_neck_channels
from tests.conftest import load_tool
from tests.fixtures.tiny_configs import CLASSES, ROOT, write_tiny_config
from tests.fixtures.toy_runner import make_runner

MASK_RCNN = os.path.join(
    ROOT, 'configs/mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_1x_coco.py')
DEMO = os.path.join(ROOT, 'configs/demo/mask-rcnn_rexnet-1.0x_fpn_shapes.py')
SSDLITE = os.path.join(
    ROOT, 'configs/ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py')


@pytest.fixture(autouse=True)
def mmdet_scope():
    """Build datasets and transforms from mmdet's registries (the toy
    runner used by other tests sets the scope to mmengine)."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


# ------------------------------------------------------------- backbone
@pytest.mark.parametrize('shape', [(1, 1, 64, 64), (2, 4, 64, 64),
                                   (3, 64, 64), (1, 3, 64)])
def test_wrong_channels_or_rank(shape):
    with pytest.raises(ValueError) as exc:
        ReXNet().eval()(torch.rand(*shape))
    assert str(exc.value) == (
        'ReXNet 1.0x expects a batch of 3-channel images of shape '
        f'(N, 3, H, W), got input of shape {shape}. Convert grayscale '
        '(1 channel) or RGBA (4 channel) images to 3 channels first, '
        "e.g. LoadImageFromFile(color_type='color') in the pipeline")


def test_integer_or_empty_input():
    with pytest.raises(ValueError, match=r'floating point input, got '
                       r'torch.uint8 of shape \(1, 3, 8, 8\)'):
        ReXNet().eval()(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r'empty input of shape '
                       r'\(1, 3, 0, 8\)'):
        ReXNet().eval()(torch.zeros(1, 3, 0, 8))


def test_training_minimum_messages():
    with pytest.raises(ValueError) as exc:
        ReXNet().train()(torch.rand(1, 3, 224, 224))
    assert str(exc.value).startswith(
        'ReXNet 1.0x in training mode needs a batch of >= 2 images, got '
        'input of shape (1, 3, 224, 224)')
    with pytest.raises(ValueError) as exc:
        ReXNet(arch='lite').train()(torch.rand(1, 3, 32, 20))
    assert str(exc.value) == (
        'ReXNet-lite 1.0x input of shape (1, 3, 32, 20) is too small to '
        'train: its stride-32 feature map is 1x1 and BatchNorm needs more '
        'than one value per channel. Minimum in training mode: '
        'N * ceil(H/32) * ceil(W/32) >= 2, i.e. with batch size 1 one side '
        'must be >= 33 px (any size >= 1 px in eval mode)')


def _runs(model, x):
    """Run the layers without the input check: does torch accept x?"""
    try:
        with torch.no_grad():
            y = model.stem(x)
            for block in model.blocks:
                y = block(y)
            if model.pen is not None:
                model.pen(y)
        return True
    except ValueError as exc:
        assert 'Expected more than 1 value per channel' in str(exc)
        return False


@pytest.mark.parametrize('kwargs', [
    dict(arch='v1'), dict(arch='lite', out_indices=(1, 2, 3, 4, 5)),
    dict(arch='lite', out_indices=(0, )), dict(arch='v1', norm_eval=True)
])
def test_minimum_matches_what_torch_accepts(kwargs):
    """The documented minimum is the true one (by experiment)."""
    model = ReXNet(**kwargs)
    checked = []
    for mode in ('train', 'eval'):
        model.train(mode == 'train')
        for n in (1, 2):
            for h, w in ((1, 1), (2, 3), (32, 32), (33, 1)):
                x = torch.rand(n, 3, h, w)
                try:
                    check_backbone_input(model, x)
                    accepted = True
                except ValueError:
                    accepted = False
                assert accepted == _runs(model, x), (mode, n, h, w)
                checked.append(accepted)
    assert True in checked
    assert (False in checked) == ('norm_eval' not in kwargs)


@pytest.mark.parametrize('shape', [(1, 3, 1, 1), (1, 3, 33, 47),
                                   (1, 3, 17, 700), (1, 3, 1000, 9)])
def test_any_size_in_eval_mode(shape):
    outs = ReXNet(out_indices=(0, 1, 2, 3, 4, 5)).eval()(torch.rand(*shape))
    h, w = shape[2:]
    expected = [(1, c, math.ceil(h / s), math.ceil(w / s)) for c, s in zip(
        (16, 38, 61, 128, 185, 1280), (2, 4, 8, 16, 32, 32))]
    assert [tuple(o.shape) for o in outs] == expected


def test_extreme_aspect_ratio_trains():
    model = ReXNet().train()
    outs = model(torch.rand(2, 3, 16, 1024))
    assert [tuple(o.shape) for o in outs] == [
        (2, 38, 4, 256), (2, 61, 2, 128), (2, 128, 1, 64), (2, 185, 1, 32)]
    outs[-1].mean().backward()
    assert model.stem.conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('kwargs,message', [
    (dict(width_mult=float('inf')),
     'width_mult must be a finite number > 0, got inf'),
    (dict(width_mult=True), 'width_mult must be a finite number > 0, got '
     'True'),
    (dict(depth_mult=float('nan')),
     'depth_mult must be a finite number > 0, got nan'),
    (dict(norm_cfg=dict(type='GN', num_groups=0)),
     'GN norm_cfg num_groups must be an int >= 1, got 0'),
    (dict(norm_cfg=None), 'norm_cfg must be a dict with a "type" (ReXNet '
     'needs a norm layer: BN, SyncBN or GN), got None'),
])
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError) as exc:
        ReXNet(**kwargs)
    assert str(exc.value) == message


@pytest.mark.parametrize('init_cfg', [
    dict(type='Pretrained'),
    [dict(type='Kaiming', layer='Conv2d'), dict(type='Pretrained')],
])
def test_pretrained_init_without_checkpoint(init_cfg):
    model = ReXNet(out_indices=(1, ), init_cfg=init_cfg)
    with pytest.raises(ValueError, match="init_cfg {'type': 'Pretrained'} "
                       "has no 'checkpoint'; set init_cfg="):
        model.init_weights()


# -------------------------------------------- image files in the pipeline
@pytest.fixture(scope='module')
def odd_images(tmp_path_factory):
    root = tmp_path_factory.mktemp('odd_images')
    rng = np.random.RandomState(0)
    gray = rng.randint(0, 255, (40, 56), np.uint8)
    files = dict(gray=gray, rgba=rng.randint(0, 255, (40, 56, 4), np.uint8),
                 gray16=(gray.astype(np.uint16) * 257),
                 tiny=rng.randint(0, 255, (7, 5, 3), np.uint8),
                 wide=rng.randint(0, 255, (16, 600, 3), np.uint8))
    paths = {}
    for name, img in files.items():
        paths[name] = str(root / f'{name}.png')
        assert cv2.imwrite(paths[name], img)
    paths['corrupt'] = str(root / 'corrupt.jpg')
    with open(paths['corrupt'], 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0 not really a jpeg')
    paths['missing'] = str(root / 'missing.png')
    return paths


@pytest.mark.parametrize('name,shape', [('gray', (40, 56, 3)),
                                        ('rgba', (40, 56, 3)),
                                        ('gray16', (40, 56, 3)),
                                        ('tiny', (7, 5, 3)),
                                        ('wide', (16, 600, 3))])
def test_odd_image_files_load_as_3_channel_bgr(name, shape, odd_images):
    out = CheckedLoadImageFromFile()(dict(img_path=odd_images[name]))
    assert out['img'].shape == shape and out['img'].dtype == np.uint8
    if name == 'gray':  # replicated, not garbled
        src = cv2.imread(odd_images[name], cv2.IMREAD_GRAYSCALE)
        assert all((out['img'][..., c] == src).all() for c in range(3))


@pytest.mark.parametrize('name,problem', [
    ('missing', 'file not found'),
    ('corrupt', 'cannot be decoded (AssertionError: failed to load image'),
])
def test_bad_image_files_are_named(name, problem, odd_images):
    with pytest.raises(ImageLoadError) as exc:
        CheckedLoadImageFromFile()(dict(img_path=odd_images[name]))
    assert str(exc.value).startswith(f'image {odd_images[name]}: {problem}')
    assert CheckedLoadImageFromFile(on_error='skip')(
        dict(img_path=odd_images[name])) is None
    with pytest.raises(ValueError, match="on_error='skip' instead"):
        CheckedLoadImageFromFile(ignore_empty=True)


@pytest.fixture(scope='module')
def mask_rcnn():
    import rexnet_det  # noqa: F401
    cfg = Config.fromfile(DEMO)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval(), cfg


@pytest.mark.parametrize('name', ['gray', 'rgba', 'gray16', 'tiny', 'wide'])
def test_detector_pipeline_accepts_odd_images(name, odd_images, mask_rcnn):
    model, cfg = mask_rcnn
    pipeline = Compose([p for p in copy.deepcopy(cfg.test_pipeline)
                        if p['type'] != 'LoadAnnotations'])
    data = pipeline(dict(img_path=odd_images[name], img_id=0))
    assert data['inputs'].shape[0] == 3
    with torch.no_grad():
        result = model.test_step(dict(inputs=[data['inputs']],
                                      data_samples=[data['data_samples']]))
    assert len(result) == 1
    pred = result[0].pred_instances
    assert pred.bboxes.shape[1] == 4 and pred.bboxes.shape[0] <= 20
    h, w = result[0].ori_shape
    assert (h, w) == cv2.imread(odd_images[name], cv2.IMREAD_UNCHANGED
                                ).shape[:2]


# ---------------------------------------------------------------- datasets
@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco'))
    make_synthetic_coco(root, num_train=4, num_val=1, size=64, seed=1)
    with open(os.path.join(root, 'annotations', 'instances_train.json')) as f:
        return root, json.load(f)


def _dataset(coco, tmp_path, edit=None, **kwargs):
    root, ann = coco
    ann = copy.deepcopy(ann)
    if edit:
        edit(ann)
    path = str(tmp_path / 'ann.json')
    with open(path, 'w') as f:
        json.dump(ann, f)
    kwargs.setdefault('pipeline', [dict(type='CheckedLoadImageFromFile'),
                                   dict(type='LoadAnnotations',
                                        with_bbox=True)])
    return CheckedCocoDataset(ann_file=path, metainfo=dict(classes=CLASSES),
                              data_prefix=dict(img=os.path.join(root,
                                                                'train/')),
                              **kwargs)


def test_valid_file_loads_like_coco_dataset(coco, tmp_path):
    ds = _dataset(coco, tmp_path)
    assert len(ds) == 4
    assert ds[0]['gt_bboxes'].shape[1] == 4 and len(ds[0]['gt_bboxes'])


def test_unknown_category_id(coco, tmp_path):
    def edit(ann):
        ann['annotations'][1]['category_id'] = 99
    with pytest.raises(DatasetError) as exc:
        _dataset(coco, tmp_path, edit)
    _, ann = coco
    a = ann['annotations'][1]
    name = next(i['file_name'] for i in ann['images']
                if i['id'] == a['image_id'])
    ids = sorted(c['id'] for c in ann['categories'])
    assert str(exc.value) == (
        f'{tmp_path / "ann.json"}: 1 invalid annotations: annotation id '
        f"{a['id']} of image {name!r}: category_id 99 is not in the "
        f'category list (ids {ids})')


def test_class_missing_or_reordered(coco, tmp_path):
    def drop(ann):
        ann['categories'] = [c for c in ann['categories']
                             if c['name'] != 'triangle']
        ann['annotations'] = [a for a in ann['annotations']
                              if a['category_id'] in
                              {c['id'] for c in ann['categories']}]
    with pytest.raises(DatasetError, match=r"classes \['triangle'\] of "
                       'metainfo are not categories of this file'):
        _dataset(coco, tmp_path, drop)

    def reorder(ann):
        ann['categories'] = ann['categories'][::-1]
    with pytest.raises(DatasetError, match='its categories list the classes '
                       r"as \['ellipse', 'triangle', 'rectangle', 'circle'\]"
                       ', but metainfo.classes is'):
        _dataset(coco, tmp_path, reorder)


def test_bad_bbox_and_empty_file(coco, tmp_path):
    def bad_box(ann):
        ann['annotations'][0]['bbox'] = [1, 2, float('nan'), 4]
    with pytest.raises(DatasetError, match=r'bbox \[1, 2, nan, 4\] is not 4 '
                       r'finite numbers'):
        _dataset(coco, tmp_path, bad_box)

    def empty(ann):
        ann['images'], ann['annotations'] = [], []
    with pytest.raises(DatasetError, match='contains no images'):
        _dataset(coco, tmp_path, empty)


def test_invalid_json_names_the_file(coco, tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"images": [')
    with pytest.raises(DatasetError) as exc:
        CheckedCocoDataset(ann_file=str(path), metainfo=dict(classes=CLASSES))
    assert str(exc.value).startswith(f'annotation file {path} is not valid '
                                     'JSON: ')


def test_elongated_image_is_named_not_an_opencv_crash(coco, tmp_path):
    """A 4x4000 image that a keep-ratio resize shrinks to 0 px."""
    root, _ = coco
    cv2.imwrite(os.path.join(root, 'train', 'strip.png'),
                np.full((4, 4000, 3), 127, np.uint8))

    def add_strip(ann):
        ann['images'].append(dict(id=999, file_name='strip.png', width=4000,
                                  height=4))
        ann['annotations'].append(dict(id=999, image_id=999, category_id=1,
                                       bbox=[0, 0, 100, 3], area=300,
                                       iscrowd=0))
    ds = _dataset(coco, tmp_path, add_strip, pipeline=[
        dict(type='LoadImageFromFile'),  # swapped for the checked loader
        dict(type='Resize', scale=(128, 128), keep_ratio=True)])
    assert type(ds.pipeline.transforms[0]) is CheckedLoadImageFromFile
    index = [i for i in range(len(ds))
             if ds.get_data_info(i)['img_id'] == 999]
    assert index
    with pytest.raises(ImageLoadError) as exc:
        ds[index[0]]
    message = str(exc.value)
    assert message.startswith(
        f'image {os.path.join(root, "train", "strip.png")} (4000x4 px in ')
    assert 'the pipeline failed in OpenCV' in message


def test_missing_and_corrupt_image_files(coco, tmp_path):
    def missing(ann):
        ann['images'][2]['file_name'] = 'gone.png'
    with pytest.raises(DatasetError) as exc:
        _dataset(coco, tmp_path, missing)
    assert '1 of 4 image files not found' in str(exc.value)
    assert str(exc.value).endswith(os.path.join(coco[0], 'train', 'gone.png'))

    corrupt = tmp_path / 'corrupt.png'
    corrupt.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 64)

    def bad_file(ann):
        ann['images'][2]['file_name'] = str(corrupt)
    ds = _dataset(coco, tmp_path, bad_file)
    with pytest.raises(ImageLoadError, match=f'image {corrupt}: cannot be '
                       'decoded'):
        ds[2]
    ds = _dataset(coco, tmp_path, bad_file, pipeline=[
        dict(type='CheckedLoadImageFromFile', on_error='skip')])
    assert ds[2]['img_path'] != str(corrupt)  # another sample instead


def test_images_without_annotations(coco, tmp_path):
    def no_anns(ann):
        first = ann['images'][0]['id']
        ann['annotations'] = [a for a in ann['annotations']
                              if a['image_id'] != first]
    ds = _dataset(coco, tmp_path, no_anns)
    assert len(ds) == 4
    assert ds[0]['gt_bboxes'].shape == (0, 4)  # a negative image
    assert len(_dataset(coco, tmp_path, no_anns,
                        filter_cfg=dict(filter_empty_gt=True))) == 3


# Boxes that mmdet drops silently (issue #19, finding 6): each edit makes
# every box of the file one that mmdet would drop, for one reason.
def _normalise(ann):
    size = {i['id']: (i['width'], i['height']) for i in ann['images']}
    for a in ann['annotations']:
        w, h = size[a['image_id']]
        x, y, bw, bh = a['bbox']
        a['bbox'] = [x / w, y / h, bw / w, bh / h]


def _zero_width(ann):
    for a in ann['annotations']:
        a['bbox'][2] = 0


def _outside(ann):
    for a in ann['annotations']:
        a['bbox'][0] += 1000


def _wrong_image_size(ann):  # the size of a 4x4 thumbnail, not the image
    for i in ann['images']:
        i['width'] = i['height'] = 4


_OUTSIDE = 'outside the image (check the width/height the file gives the ' \
    'image)'
BAD_BOXES = {
    'normalised': (_normalise, 'coordinates normalised to 0-1 (COCO boxes '
                   'are in pixels)'),
    'zero-width': (_zero_width, 'zero or negative width or height'),
    'outside': (_outside, _OUTSIDE),
    'wrong-image-size': (_wrong_image_size, _OUTSIDE),
}


@contextlib.contextmanager
def _warnings():
    """The messages logged at WARNING through mmengine's current logger."""
    seen = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize('kind', sorted(BAD_BOXES))
def test_dropped_boxes_stop_loading(kind, coco, tmp_path):
    edit, reason = BAD_BOXES[kind]
    _, ann = coco
    total = len(ann['annotations'])
    # all of them, except (4x4 image) those that still overlap the corner
    dropped = total if kind != 'wrong-image-size' else sum(
        a['bbox'][0] >= 4 or a['bbox'][1] >= 4 for a in ann['annotations'])
    assert total >= 4 and dropped / total > 0.5
    with pytest.raises(DatasetError) as exc:
        _dataset(coco, tmp_path, edit)
    message = str(exc.value)
    assert message.startswith(
        f'{tmp_path / "ann.json"}: {dropped} of {total} boxes '
        f'({dropped / total:.1%}) are dropped by mmdet: {reason}: '
        f'{dropped} (e.g. annotation id ')
    assert 'another reason' not in message
    assert message.endswith(
        'That is more than max_dropped_fraction=0.05: the model would train '
        'on (next to) no objects. COCO boxes are [x, y, width, height] in '
        'pixels of an image as wide and high as the file says. Fix the '
        'file, or raise max_dropped_fraction.')


def test_dropped_boxes_are_counted_per_reason(coco, tmp_path):
    """One box of each kind among good ones: an error over the share, a
    warning with the same counts under it, and mmdet keeps exactly the
    boxes the count calls good."""
    def one_of_each(ann):
        first = ann['annotations']
        first[0]['bbox'] = [0.1, 0.2, 0.3, 0.4]
        first[1]['bbox'][3] = 0
        first[2]['bbox'][1] = -500
        first[3]['bbox'][2] = 0.5
        first[4]['area'] = 0
    _, ann = coco
    total = len(ann['annotations'])
    assert total >= 7
    counts = ('zero or negative width or height: 1 (e.g. annotation id '
              f'{ann["annotations"][1]["id"]} of image ')
    with pytest.raises(DatasetError) as exc:
        _dataset(coco, tmp_path, one_of_each, max_dropped_fraction=0.2)
    message = str(exc.value)
    assert f': 5 of {total} boxes ({5 / total:.1%}) are dropped' in message
    assert counts in message
    for text in ('normalised to 0-1 (COCO boxes are in pixels): 1 (e.g. '
                 'annotation id', 'outside the image (check the width/height'
                 ' the file gives the image): 1 (e.g.', 'under 1 px wide or '
                 "high: 1 (e.g.", "'area' <= 0: 1 (e.g.", '(64x64 px in the '
                 'file): bbox [0.1, 0.2, 0.3, 0.4]'):
        assert text in message
    assert 'more than max_dropped_fraction=0.2' in message
    with _warnings() as seen:
        ds = _dataset(coco, tmp_path, one_of_each, max_dropped_fraction=0.6)
    (warning, ) = [w for w in seen if 'dropped by mmdet' in w]
    assert counts in warning
    assert warning.endswith('(max_dropped_fraction=0.6)')
    assert sum(len(d['instances']) for d in ds) == total - 5
    with _warnings() as seen:  # a clean file: no warning at all
        _dataset(coco, tmp_path)
    assert not [w for w in seen if 'dropped by mmdet' in w]


@pytest.mark.parametrize('value', [-0.1, 1.5, float('nan'), '0.1', None])
def test_max_dropped_fraction_is_checked(value, coco, tmp_path):
    with pytest.raises(ValueError, match=r'max_dropped_fraction must be a '
                       rf'number in \[0, 1\], got {value!r}'):
        _dataset(coco, tmp_path, max_dropped_fraction=value)


@pytest.mark.parametrize('field, value', [('width', 0), ('height', None),
                                          ('width', 'wide')])
def test_image_size_and_area_must_be_numbers(field, value, coco, tmp_path):
    def edit(ann):
        ann['images'][1][field] = value
    _, ann = coco
    img = ann['images'][1]
    size = {**dict(width=img['width'], height=img['height']), field: value}
    with pytest.raises(DatasetError, match=re.escape(
            f"image id {img['id']} ({img['file_name']!r}): width "
            f"{size['width']!r} and height {size['height']!r} are not "
            'positive numbers')):
        _dataset(coco, tmp_path, edit)

    def no_area(ann):
        del ann['annotations'][0]['area']
    with pytest.raises(DatasetError, match='area None is not a finite '
                       'number'):
        _dataset(coco, tmp_path, no_area)


def test_training_on_dropped_boxes_stops_before_any_iteration(coco,
                                                              tmp_path):
    """tools/train.py on a file with normalised boxes: an error naming the
    file, no checkpoint (it used to train on `loss: 0.0000`, exit 0)."""
    root, ann = coco
    data = tmp_path / 'data'
    os.makedirs(data / 'annotations')
    os.symlink(os.path.join(root, 'train'), data / 'train')
    ann = copy.deepcopy(ann)
    _normalise(ann)
    path = data / 'annotations' / 'instances_train.json'
    path.write_text(json.dumps(ann))
    cfg = write_tiny_config(str(tmp_path / 'tiny.py'), 'ssdlite', str(data),
                            max_iters=2, ckpt_interval=1)
    work = tmp_path / 'work'
    try:
        with pytest.raises(DatasetError) as exc:
            load_tool('train.py').main([cfg, '--work-dir', str(work)])
    finally:
        MMLogger.get_current_instance().handlers.clear()
    total = len(ann['annotations'])
    assert str(exc.value).startswith(
        f'{path}: {total} of {total} boxes (100.0%) are dropped by mmdet: '
        'coordinates normalised to 0-1')
    assert not [n for _, _, names in os.walk(work) for n in names
                if n.endswith('.pth')]


@pytest.mark.parametrize('config', [DEMO, SSDLITE])
def test_detectors_train_on_images_without_annotations(config):
    import rexnet_det  # noqa: F401
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.manual_seed(0)
    samples = []
    for boxes in ([[4., 6., 40., 50.]], []):
        sample = DetDataSample(metainfo=dict(img_shape=(64, 64),
                                             ori_shape=(64, 64),
                                             pad_shape=(64, 64),
                                             scale_factor=(1., 1.)))
        from mmengine.structures import InstanceData
        inst = InstanceData()
        inst.bboxes = torch.tensor(boxes).reshape(-1, 4)
        inst.labels = torch.zeros(len(boxes), dtype=torch.long)
        if 'mask' in config:
            from mmdet.structures.mask import BitmapMasks
            inst.masks = BitmapMasks(np.zeros((len(boxes), 64, 64),
                                              np.uint8), 64, 64)
        sample.gt_instances = inst
        samples.append(sample)
    inputs = torch.rand(2, 3, 64, 64) * 255
    data = model.data_preprocessor(dict(inputs=list(inputs),
                                        data_samples=samples), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()


# ---------------------------------------------------------- NaN in training
@pytest.mark.parametrize('guarded', [True, False])
def test_nan_loss_stops_before_checkpoint(guarded, tmp_path):
    runner = make_runner(str(tmp_path), max_iters=5, interval=1, nan_at=3,
                         custom_hooks=[dict(type='NonFiniteLossHook')]
                         if guarded else [])
    saved = lambda: sorted(n for n in os.listdir(tmp_path)  # noqa: E731
                           if n.endswith('.pth'))
    if not guarded:  # what happens without the hook: NaN weights on disk
        runner.train()
        nan = safe_torch_load(str(tmp_path / 'iter_3.pth'))['state_dict']
        assert not torch.isfinite(nan['head.weight']).all()
        return
    with pytest.raises(NonFiniteLossError) as exc:
        runner.train()
    assert str(exc.value).startswith(
        'non-finite loss at iteration 3 (epoch 1): loss (loss=nan). Training '
        "stopped before this iteration's weights were saved; the last "
        f'checkpoint is {tmp_path / "iter_2.pth"}.')
    assert saved() == ['iter_1.pth', 'iter_2.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(
        tmp_path / 'iter_2.pth')
    for name in saved():
        state = safe_torch_load(str(tmp_path / name))['state_dict']
        assert all(torch.isfinite(v).all() for v in state.values()
                   if v.is_floating_point())


def test_nan_weights_are_never_saved(tmp_path):
    runner = make_runner(str(tmp_path), max_iters=1, interval=1)
    runner.train()
    with torch.no_grad():
        runner.model.head.weight[0, 0] = float('inf')
    with pytest.raises(NonFiniteLossError, match=r'refusing to save a '
                       r'checkpoint at iteration 1 \(epoch 0\): 1 tensors '
                       r'hold NaN/inf, e.g. head.weight'):
        runner.save_checkpoint(str(tmp_path), 'nan.pth', by_epoch=False)
    assert not (tmp_path / 'nan.pth').exists()
    MMLogger.get_current_instance().handlers.clear()


# ------------------------------------------------------- neck channels
@pytest.mark.parametrize('config,channels', [(MASK_RCNN, (38, 61, 128, 185)),
                                             (SSDLITE, (128, 1280))])
def test_shipped_configs_match(config, channels):
    import rexnet_det  # noqa: F401
    cfg = Config.fromfile(config)
    assert check_neck_channels(cfg) == channels


def test_wrong_neck_channels_name_the_taps():
    import rexnet_det  # noqa: F401
    cfg = Config.fromfile(MASK_RCNN)
    cfg.model.backbone.width_mult = 1.5
    with pytest.raises(ValueError) as exc:
        check_neck_channels(cfg)
    assert str(exc.value) == (
        'neck FPN in_channels [38, 61, 128, 185] do not match the backbone '
        'ReXNet 1.5x with out_indices (1, 2, 3, 4): tap 1: 58 ch (stride 4), '
        'tap 2: 92 ch (stride 8), tap 3: 193 ch (stride 16), tap 4: 277 ch '
        '(stride 32). Set neck.in_channels=[58, 92, 193, 277]')


def test_neck_check_on_built_models(mask_rcnn):
    model, _ = mask_rcnn
    assert check_neck_channels(model) == (38, 61, 128, 185)
    model = copy.deepcopy(model)
    model.neck.in_channels = [38, 61, 128, 190]
    with pytest.raises(ValueError, match=r'tap 4: 185 ch \(stride 32\)'):
        check_neck_channels(model)
    import rexnet_det  # noqa: F401
    cfg = Config.fromfile(SSDLITE)
    cfg.model.backbone.init_cfg = None
    ssd = MODELS.build(cfg.model)
    assert check_neck_channels(ssd) == (128, 1280)
    ssd.backbone = ReXNet(width_mult=1.3, out_indices=(3, 5))
    with pytest.raises(ValueError, match=r'neck SSDNeck in_channels \[1280\] '
                       r'\(last map\) do not match'):
        check_neck_channels(ssd)
