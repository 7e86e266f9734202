"""The built-in synthetic COCO shapes dataset."""
import hashlib
import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from tests.conftest import load_tool
from rexnet_det.datasets import (CLASSES, SyntheticCocoSpec, draw_image,
                                 make_synthetic_coco)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digest(root):
    files = sorted(os.path.relpath(os.path.join(d, f), root)
                   for d, _, fs in os.walk(root) for f in fs)
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode())
        with open(os.path.join(root, rel), 'rb') as f:
            h.update(f.read())
    return files, h.hexdigest()


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('shapes'))
    make_synthetic_coco(out, num_train=12, num_val=5, size=96, seed=3)
    return out


def test_layout_and_counts(shapes):
    files, _ = _digest(shapes)
    assert files == sorted(
        ['annotations/instances_train.json', 'annotations/instances_val.json']
        + [f'train/{i:06d}.png' for i in range(12)]
        + [f'val/{i:06d}.png' for i in range(5)])
    with open(os.path.join(shapes, 'annotations/instances_val.json')) as f:
        val = json.load(f)
    assert [c['name'] for c in val['categories']] == list(CLASSES)
    assert [c['id'] for c in val['categories']] == [1, 2, 3, 4]
    assert len(val['images']) == 5
    assert all(im['height'] == im['width'] == 96 for im in val['images'])


def test_deterministic_and_seed_dependent(shapes, tmp_path):
    again = str(tmp_path / 'again')
    make_synthetic_coco(again, num_train=12, num_val=5, size=96, seed=3)
    assert _digest(again) == _digest(shapes)
    other = str(tmp_path / 'other')
    make_synthetic_coco(other, num_train=12, num_val=5, size=96, seed=4)
    assert _digest(other)[1] != _digest(shapes)[1]


@pytest.mark.parametrize('split', ['train', 'val'])
def test_valid_coco_and_masks_inside_boxes(shapes, split):
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(
            os.path.join(shapes, f'annotations/instances_{split}.json'))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= len(coco.getImgIds())  # at least one object each
    assert {a['category_id'] for a in anns} <= {1, 2, 3, 4}
    for ann in anns:
        img = coco.loadImgs(ann['image_id'])[0]
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= img['width'] \
            and y + h <= img['height']
        assert w > 4 and h > 4 and ann['iscrowd'] == 0
        poly = np.array(ann['segmentation'][0]).reshape(-1, 2)
        assert poly[:, 0].min() == pytest.approx(x, abs=0.01)
        assert poly[:, 1].min() == pytest.approx(y, abs=0.01)
        assert poly[:, 0].max() == pytest.approx(x + w, abs=0.02)
        assert poly[:, 1].max() == pytest.approx(y + h, abs=0.02)
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)
        assert len(xs) > 0
        assert xs.min() >= np.floor(x) and xs.max() <= np.ceil(x + w)
        assert ys.min() >= np.floor(y) and ys.max() <= np.ceil(y + h)
        # the polygon area is the rasterised mask area, up to the border
        assert mask.sum() == pytest.approx(ann['area'], rel=0.25)
    # objects never overlap, so every mask is fully visible
    for img_id in coco.getImgIds():
        masks = [coco.annToMask(a) for a in coco.loadAnns(
            coco.getAnnIds(imgIds=img_id))]
        assert max(sum(masks).reshape(-1)) == 1


def test_every_class_is_drawn():
    spec = SyntheticCocoSpec(size=96)
    seen = set()
    for i in range(20):
        _, objects = draw_image(np.random.default_rng([0, i]), spec)
        seen |= {o['category'] for o in objects}
    assert seen == set(CLASSES)


def test_image_is_painted_where_the_mask_is():
    spec = SyntheticCocoSpec(size=96, noise_std=0.0, min_objects=1,
                             max_objects=1)
    img, objects = draw_image(np.random.default_rng(11), spec)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    (obj, ) = objects
    rle = mask_utils.frPyObjects([obj['polygon'].reshape(-1).tolist()], 96,
                                 96)
    mask = mask_utils.decode(mask_utils.merge(rle)).astype(bool)
    inside = img[mask].astype(float)
    # one flat colour inside (anti-aliased rim aside) ...
    assert np.median(np.abs(inside - np.median(inside, 0)).sum(1)) == 0
    # ... that differs from the background ring around the object
    assert np.abs(np.median(inside, 0) - np.median(
        img[~mask].astype(float), 0)).sum() > 0


def test_non_square_images(tmp_path):
    """min_aspect < 1: landscape and portrait images with the long side
    `size`; annotations give each image's own size and objects stay
    inside it."""
    spec = SyntheticCocoSpec(size=96, min_aspect=0.5, max_objects=3)
    shapes = []
    for i in range(12):
        img, objects = draw_image(np.random.default_rng([1, i]), spec)
        h, w = img.shape[:2]
        shapes.append((h, w))
        assert max(h, w) == 96 and 48 <= min(h, w) <= 96
        for obj in objects:
            x, y, bw, bh = obj['bbox']
            assert 0 <= x and x + bw <= w - 1 and 0 <= y and y + bh <= h - 1
    assert any(h > w for h, w in shapes) and any(h < w for h, w in shapes)
    make_synthetic_coco(str(tmp_path), num_train=1, num_val=3, seed=1,
                        spec=spec)
    with open(tmp_path / 'annotations/instances_val.json') as f:
        images = json.load(f)['images']
    import cv2
    assert [(i['height'], i['width']) for i in images] == [
        cv2.imread(str(tmp_path / 'val' / i['file_name'])).shape[:2]
        for i in images]


@pytest.mark.parametrize('kwargs, match', [
    (dict(size=16), 'size must be an int >= 32, got 16'),
    (dict(size=64, min_aspect=0.2), r'min_aspect must be in \(0, 1\] with a '
     r'short side min_aspect \* size >= 16 px, got 0.2 \(size 64\)'),
    (dict(min_objects=3, max_objects=2), 'min_objects <= max_objects'),
    (dict(min_scale=0.5, max_scale=0.2), 'min_scale <= max_scale'),
    (dict(hue_jitter=91), 'hue_jitter must be in'),
    (dict(noise_std=-1.0), 'noise_std must be >= 0'),
])
def test_bad_spec(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticCocoSpec(**kwargs)


def test_bad_counts(tmp_path):
    with pytest.raises(ValueError, match='num_images of val must be an int '
                       '>= 1, got 0'):
        make_synthetic_coco(str(tmp_path), num_train=2, num_val=0, size=64)


def test_cli(tmp_path, capsys):
    out = tmp_path / 'cli'
    tool = load_tool('make_synthetic_coco.py')
    tool.main(['--out', str(out), '--num-train', '3', '--num-val', '2',
               '--size', '64', '--seed', '1'])
    assert 'wrote 3 train / 2 val images of 64px' in capsys.readouterr().out
    with open(out / 'annotations/instances_train.json') as f:
        assert len(json.load(f)['images']) == 3
    with pytest.raises(SystemExit) as exc:
        tool.main(['--out', str(out), '--size', '8'])
    assert 'size must be an int >= 32, got 8' in str(exc.value.code)
