"""Calibration inputs for INT8 quantization, prepared exactly as deployed.

A detector file takes images resized by its own
:class:`~rexnet_det.deploy.detector.resize.ResizeRule` (stored in the
file), RGB 0-255: :func:`detector_calibration` reads images of the
config's data set and applies that rule, the same code the runtime runs.
A backbone or classifier file takes ImageNet-normalised crops:
:func:`folder_calibration` reads an image folder and applies the
variants' evaluation preprocessing
(:class:`~rexnet_det.models.variants.Preprocess`: shorter side to 256,
centre crop 224, RGB [0, 1], mean/std).

Images are picked evenly spread over the set (not the first N), so a set
sorted by scene or size still calibrates on all of it.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config

from ...models.variants import Preprocess
from ..detector.resize import ResizeRule
from ..detector.runtime import read_image

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif',
                    '.tiff')
SPLITS = ('train', 'val', 'test')


class CalibrationError(ValueError):
    """Calibration images that cannot be had; the message names the
    file, folder or value."""


def spread(total: int, count: int) -> List[int]:
    """`count` indices evenly spread over ``range(total)``."""
    return np.linspace(0, total, count, endpoint=False).astype(int).tolist()


def check_count(count: int, available: int, where: str) -> None:
    """Refuse zero images or more than `where` holds."""
    if count < 1:
        raise CalibrationError(f'the number of calibration images must be '
                               f'>= 1, got {count}')
    if count > available:
        raise CalibrationError(f'{count} calibration images requested but '
                               f'{where} has only {available}')


def dataset_paths(cfg: Config, split: str = 'train',
                  name: str = 'the config') -> Tuple[str, str]:
    """(annotation file, image folder) of the config's `split` set.

    Raises:
        CalibrationError: Unknown `split`, a config without that
            dataloader, or a missing annotation file or image folder (the
            message names the config key and the path).
    """
    if split not in SPLITS:
        raise CalibrationError(f'split must be one of {SPLITS}, got '
                               f'{split!r}')
    key = f'{split}_dataloader'
    loader = cfg.get(key)
    if not loader or 'dataset' not in loader:
        raise CalibrationError(f'{name} has no {key}.dataset to calibrate '
                               f'on; pick another split')
    dataset = loader.dataset
    while 'dataset' in dataset or 'datasets' in dataset:  # wrappers
        dataset = dataset.get('dataset') or dataset['datasets'][0]
    root = dataset.get('data_root', '') or ''
    prefix = (dataset.get('data_prefix') or {}).get('img', '')
    ann_file = osp.join(root, dataset.get('ann_file', ''))
    img_dir = osp.join(root, prefix)
    if not osp.isfile(ann_file):
        raise CalibrationError(
            f'{name}: {key}.dataset annotation file {ann_file!r} not found '
            f'(data_root {root!r}); generate or point the config at the '
            f'data set')
    if not osp.isdir(img_dir):
        raise CalibrationError(f'{name}: {key}.dataset image folder '
                               f'{img_dir!r} not found')
    return ann_file, img_dir


def detector_calibration(cfg: Config, rule: ResizeRule, count: int,
                         split: str = 'train', name: str = 'the config',
                         img_shape_input: bool = False
                         ) -> List[Dict[str, np.ndarray]]:
    """`count` graph feeds from the config's `split` set, resized by the
    deployed file's `rule`: ``input`` ``[1, 3, H, W]`` and, for files with
    that second input, ``img_shape`` ``[1, 2]`` (the resized size before
    padding, as the runtime feeds it).

    Raises:
        CalibrationError: See :func:`dataset_paths` and
            :func:`check_count`.
    """
    ann_file, img_dir = dataset_paths(cfg, split, name)
    with open(ann_file) as f:
        images = json.load(f).get('images', [])
    check_count(count, len(images), ann_file)
    feeds = []
    for i in spread(len(images), count):
        prepared = rule.apply(read_image(osp.join(img_dir,
                                                  images[i]['file_name'])))
        feed = {'input': prepared.input[None]}
        if img_shape_input:
            feed['img_shape'] = np.asarray([prepared.img_shape],
                                           np.float32)
        feeds.append(feed)
    return feeds


def list_images(folder: str) -> List[str]:
    """Image files directly in `folder`, sorted.

    Raises:
        CalibrationError: `folder` is not a folder.
    """
    if not osp.isdir(folder):
        raise CalibrationError(f'image folder {folder!r} not found')
    return sorted(osp.join(folder, n) for n in os.listdir(folder)
                  if n.lower().endswith(IMAGE_EXTENSIONS))


def classifier_input(image: np.ndarray, preprocess: Preprocess,
                     size: Optional[Sequence[int]] = None) -> np.ndarray:
    """A BGR uint8 image as the classifier's ``[3, H, W]`` input: shorter
    side scaled to ``resize`` (in proportion for other crop sizes), centre
    crop, RGB in [0, 1], normalised."""
    import mmcv
    h_out, w_out = size or (preprocess.crop, preprocess.crop)
    short = round(max(h_out, w_out) * preprocess.resize / preprocess.crop)
    h, w = image.shape[:2]
    scale = short / min(h, w)
    resized = mmcv.imresize(image, (max(w_out, round(w * scale)),
                                    max(h_out, round(h * scale))),
                            interpolation=preprocess.interpolation)
    top = (resized.shape[0] - h_out) // 2
    left = (resized.shape[1] - w_out) // 2
    crop = resized[top:top + h_out, left:left + w_out, ::-1]  # -> RGB
    mean = np.asarray(preprocess.mean, np.float32)
    std = np.asarray(preprocess.std, np.float32)
    x = (crop.astype(np.float32) / 255 - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def folder_calibration(folder: str, count: int,
                       size: Optional[Sequence[int]] = None,
                       preprocess: Optional[Preprocess] = None
                       ) -> List[np.ndarray]:
    """`count` classifier inputs ``[1, 3, H, W]`` from the images in
    `folder` (:func:`classifier_input`; ``H, W`` = `size`, default the
    crop).

    Raises:
        CalibrationError: A missing folder, or a count it cannot give.
    """
    paths = list_images(folder)
    check_count(count, len(paths), f'image folder {folder!r}')
    preprocess = preprocess or Preprocess()
    return [classifier_input(read_image(paths[i]), preprocess, size)[None]
            for i in spread(len(paths), count)]
