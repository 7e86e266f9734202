"""A built-in COCO-format instance segmentation dataset of painted shapes.

No download is needed: :func:`make_synthetic_coco` paints filled circles,
rectangles, triangles and ellipses (one class each, rotated, of varied size
and colour) on a textured, noisy background and writes a COCO dataset::

    OUT/
      train/000000.png ...
      val/000000.png ...
      annotations/instances_train.json
      annotations/instances_val.json

Each object has a polygon mask (circles and ellipses as 32-gons), the box of
that polygon and the polygon's area. Objects do not overlap, so every mask
is fully visible. The same seed gives byte-identical files; every image has
its own random stream, so train and val never share an image.
"""
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..utils.io import atomic_write

CLASSES: Tuple[str, ...] = ('circle', 'rectangle', 'triangle', 'ellipse')
# Base hue (OpenCV 0-180 scale) per class; each object jitters around it.
_CLASS_HUE = {'circle': 0, 'rectangle': 60, 'triangle': 105, 'ellipse': 150}
_POLY_VERTICES = 32  # vertices of circle / ellipse polygons
_SPLIT_IDS = {'train': 1, 'val': 2}


@dataclass(frozen=True)
class SyntheticCocoSpec:
    """How the images of one dataset are drawn.

    Args:
        size (int): Image height and width in pixels, >= 32 (with
            ``min_aspect < 1``: the long side).
        min_objects (int): Fewest objects per image, >= 1.
        max_objects (int): Most objects per image, >= min_objects.
        min_scale (float): Smallest object extent as a fraction of ``size``.
        max_scale (float): Largest object extent as a fraction of ``size``.
        hue_jitter (int): Max hue deviation from the class's base hue
            (0-90; 90 makes colour carry no class information).
        noise_std (float): Std of the per-pixel Gaussian noise (0-255 scale).
        min_aspect (float): Smallest short / long side ratio, in (0, 1].
            Below 1 every image gets a random short side in
            ``[min_aspect * size, size]`` and a random orientation
            (landscape or portrait), like COCO's photos; object extents
            are then fractions of the short side. Default: 1 (square; the
            same files as before this option existed).
    """
    size: int = 128
    min_objects: int = 1
    max_objects: int = 4
    min_scale: float = 0.15
    max_scale: float = 0.45
    hue_jitter: int = 12
    noise_std: float = 8.0
    min_aspect: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 32:
            raise ValueError(f'size must be an int >= 32, got {self.size!r}')
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError('need 1 <= min_objects <= max_objects, got '
                             f'{self.min_objects!r}, {self.max_objects!r}')
        if not 0 < self.min_scale <= self.max_scale <= 0.9:
            raise ValueError('need 0 < min_scale <= max_scale <= 0.9, got '
                             f'{self.min_scale!r}, {self.max_scale!r}')
        if not 0 <= self.hue_jitter <= 90:
            raise ValueError(
                f'hue_jitter must be in [0, 90], got {self.hue_jitter!r}')
        if self.noise_std < 0:
            raise ValueError(
                f'noise_std must be >= 0, got {self.noise_std!r}')
        if not 0 < self.min_aspect <= 1 or self.min_aspect * self.size < 16:
            raise ValueError(f'min_aspect must be in (0, 1] with a short '
                             f'side min_aspect * size >= 16 px, got '
                             f'{self.min_aspect!r} (size {self.size})')


def _shape_polygon(rng: np.random.Generator, cls: str, extent: float,
                   center: np.ndarray) -> np.ndarray:
    """Vertices (N, 2) of one shape with the given extent, rotated."""
    half = extent / 2
    if cls == 'circle':
        t = np.linspace(0, 2 * np.pi, _POLY_VERTICES, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * half
    elif cls == 'ellipse':
        t = np.linspace(0, 2 * np.pi, _POLY_VERTICES, endpoint=False)
        ratio = rng.uniform(0.35, 0.6)
        pts = np.stack([np.cos(t), ratio * np.sin(t)], 1) * half
    elif cls == 'rectangle':
        ratio = rng.uniform(0.45, 1.0)
        pts = np.array([[-1, -ratio], [1, -ratio], [1, ratio], [-1, ratio]],
                       dtype=np.float64) * half
    elif cls == 'triangle':
        t = np.pi / 2 + np.array([0, 2, 4]) * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1) * half
        pts[0] *= rng.uniform(0.8, 1.2)  # not always equilateral
    else:
        raise KeyError(f'unknown class {cls!r}, expected one of {CLASSES}')
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)],
                    [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T + center


def _points(rng: np.random.Generator, low: float, high: Sequence[float]
            ) -> np.ndarray:
    """``(x, y)`` uniform in ``[low, high)``; a square image draws as the
    generator always did (the same files for the same seed)."""
    if high[0] == high[1]:
        return rng.uniform(low, high[0], 2)
    return rng.uniform(low, np.asarray(high, float))


def _background(rng: np.random.Generator, height: int,
                width: int) -> np.ndarray:
    """Low-frequency colour texture plus a few thin random lines."""
    coarse = rng.uniform(60, 200, (4, 4, 3)).astype(np.float32)
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(2, 6))):
        p1, p2 = (tuple(int(v) for v in (
            rng.integers(0, width, 2) if width == height else
            rng.integers(0, [width, height]))) for _ in range(2))
        color = tuple(float(c) for c in rng.uniform(40, 220, 3))
        cv2.line(img, p1, p2, color, 1, lineType=cv2.LINE_AA)
    return img


def _class_color(rng: np.random.Generator, cls: str,
                 hue_jitter: int) -> Tuple[float, float, float]:
    hue = (_CLASS_HUE[cls] + rng.integers(-hue_jitter, hue_jitter + 1)) % 180
    hsv = np.array([[[hue, rng.integers(140, 256), rng.integers(120, 256)]]],
                   dtype=np.uint8)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(float(c) for c in bgr)


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) -
                           np.dot(y, np.roll(x, 1))))


def draw_image(rng: np.random.Generator,
               spec: SyntheticCocoSpec) -> Tuple[np.ndarray, List[dict]]:
    """Paint one image.

    Returns:
        tuple: The BGR uint8 image (h, w, 3) (``size`` x ``size`` unless
        ``spec.min_aspect < 1``) and its objects, each ``dict(category,
        polygon (N, 2) float array, bbox [x, y, w, h], area)``.
    """
    height = width = size = spec.size
    if spec.min_aspect < 1:
        short = int(round(size * rng.uniform(spec.min_aspect, 1.0)))
        height, width = (size, short) if rng.integers(2) else (short, size)
        size = short  # object extents are fractions of the short side
    img = _background(rng, height, width)
    objects: List[dict] = []
    boxes: List[np.ndarray] = []
    wanted = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _ in range(wanted * 30):  # rejection sampling of free places
        if len(objects) == wanted:
            break
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
        extent = rng.uniform(spec.min_scale, spec.max_scale) * size
        center = _points(rng, extent / 2 + 1, [width - extent / 2 - 1,
                                               height - extent / 2 - 1])
        poly = _shape_polygon(rng, cls, extent, center)
        x0, y0 = poly.min(0)
        x1, y1 = poly.max(0)
        box = np.array([x0, y0, x1, y1])
        if x0 < 0 or y0 < 0 or x1 > width - 1 or y1 > height - 1:
            continue
        # 2 px gap: no two objects touch, so each mask is fully visible.
        if any(box[0] < b[2] + 2 and b[0] < box[2] + 2 and box[1] < b[3] + 2
               and b[1] < box[3] + 2 for b in boxes):
            continue
        color = _class_color(rng, cls, spec.hue_jitter)
        cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], color,
                     lineType=cv2.LINE_AA, shift=4)
        boxes.append(box)
        objects.append(dict(category=cls, polygon=poly,
                            bbox=[float(x0), float(y0), float(x1 - x0),
                                  float(y1 - y0)],
                            area=_polygon_area(poly)))
    if spec.noise_std > 0:
        img = img + rng.normal(0, spec.noise_std, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects


def make_split(out_dir: str, split: str, num_images: int,
               spec: SyntheticCocoSpec, seed: int) -> str:
    """Write the images and the COCO annotation file of one split.

    Returns:
        str: Path of ``annotations/instances_<split>.json``.
    """
    if split not in _SPLIT_IDS:
        raise ValueError(f'split must be one of {tuple(_SPLIT_IDS)}, '
                         f'got {split!r}')
    if not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f'num_images of {split} must be an int >= 1, '
                         f'got {num_images!r}')
    img_dir = osp.join(out_dir, split)
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    images, annotations = [], []
    for idx in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], idx])
        img, objects = draw_image(rng, spec)
        file_name = f'{idx:06d}.png'
        if not cv2.imwrite(osp.join(img_dir, file_name), img):
            raise OSError(f'could not write {osp.join(img_dir, file_name)}')
        image_id = idx + 1
        images.append(dict(id=image_id, file_name=file_name,
                           height=img.shape[0], width=img.shape[1]))
        for obj in objects:
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id,
                category_id=CLASSES.index(obj['category']) + 1,
                bbox=[round(v, 2) for v in obj['bbox']],
                area=round(obj['area'], 2),
                segmentation=[[round(float(v), 2)
                               for v in obj['polygon'].reshape(-1)]],
                iscrowd=0))
    coco = dict(
        info=dict(description='rexnet_det synthetic shapes', split=split,
                  seed=seed, spec=asdict(spec)),
        images=images, annotations=annotations,
        categories=[dict(id=i + 1, name=n, supercategory='shape')
                    for i, n in enumerate(CLASSES)])
    ann_file = osp.join(ann_dir, f'instances_{split}.json')
    atomic_write(json.dumps(coco), ann_file)
    return ann_file


def make_synthetic_coco(out_dir: str,
                        num_train: int = 200,
                        num_val: int = 50,
                        size: int = 128,
                        seed: int = 0,
                        spec: Optional[SyntheticCocoSpec] = None
                        ) -> Dict[str, str]:
    """Generate the train and val splits under ``out_dir``.

    Args:
        out_dir (str): Output directory (created if needed).
        num_train (int): Number of training images, >= 1.
        num_val (int): Number of validation images, >= 1.
        size (int): Image size; ignored when ``spec`` is given.
        seed (int): Random seed; the same seed gives identical files.
        spec (SyntheticCocoSpec, optional): Drawing settings.

    Returns:
        dict: ``data_root``, ``train_ann``, ``val_ann`` paths.
    """
    spec = spec if spec is not None else SyntheticCocoSpec(size=size)
    os.makedirs(out_dir, exist_ok=True)
    return dict(
        data_root=out_dir,
        train_ann=make_split(out_dir, 'train', num_train, spec, seed),
        val_ann=make_split(out_dir, 'val', num_val, spec, seed))


def dataset_metainfo() -> dict:
    """``metainfo`` for mmdet's ``CocoDataset`` on this data."""
    palette: Sequence[Tuple[int, int, int]] = [
        (220, 20, 60), (119, 172, 48), (0, 114, 189), (237, 177, 32)]
    return dict(classes=CLASSES, palette=list(palette))
