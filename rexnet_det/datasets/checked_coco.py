"""COCO data that fails loudly on bad input instead of training on it.

mmdet's ``CocoDataset`` silently drops annotations whose ``category_id`` is
not in the file's category list, silently shifts labels when a class of
``metainfo['classes']`` is missing from the file or listed in another order
(``get_cat_ids`` returns ids in file order), and loads an empty file into a
dataset that makes iteration-based training loop forever. A missing or
undecodable image surfaces as ``AssertionError: failed to load image`` or a
bare ``FileNotFoundError`` deep in a worker, possibly days into a run.

:class:`CheckedCocoDataset` checks the annotation file and the image files
when it loads and reads its images with :class:`CheckedLoadImageFromFile`
(a plain ``LoadImageFromFile`` in its pipeline is swapped for it), which
names the file and the problem when an image cannot be read, or skips it
with a warning. Files are looked up through the dataset's
``backend_args``, so S3/petrel data works as in mmdet.
Images without annotations are valid: they are negatives (or are dropped
by ``filter_cfg=dict(filter_empty_gt=True)`` as usual).

mmdet also silently drops boxes it cannot train on (outside the image,
under 1 px, ``area <= 0``) and keeps their images, so a file whose boxes
are all normalised to 0-1, or whose images' width/height are wrong, trains
on empty targets with ``loss: 0.0000`` and exits 0. The dataset counts
every dropped box by reason, warns about any, and stops when more than
``max_dropped_fraction`` of the boxes would be dropped.
"""
import copy
import json
import logging
import math
from collections import Counter
from typing import Dict, List, Optional

import cv2
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS, TRANSFORMS
from mmengine import fileio
from mmengine.logging import print_log


class DatasetError(ValueError):
    """Annotation or image files that cannot be trained on; the message
    names the file."""


class ImageLoadError(DatasetError, OSError):
    """An image file that is missing or cannot be decoded."""


_LISTED = 5  # how many offending items an error message lists

#: Why mmdet drops a box, in the order they are tested, with the text the
#: messages give.
DROP_REASONS = {
    'zero-size': 'zero or negative width or height',
    'normalised': 'coordinates normalised to 0-1 (COCO boxes are in pixels)',
    'outside': 'outside the image (check the width/height the file gives '
               'the image)',
    'tiny': 'under 1 px wide or high',
    'area': "'area' <= 0",
    'other': 'dropped by mmdet for another reason',
}


def drop_reason(bbox: List[float], area: float, width: float,
                height: float) -> Optional[str]:
    """Why mmdet's ``CocoDataset.parse_data_info`` drops a box, or None.

    Mirrors mmdet 3.x: a box is dropped when it does not overlap the image
    (as wide and high as the file says), when it is under 1 px wide or
    high, or when its ``area`` is not positive; the reason names the likely
    cause.

    Args:
        bbox (list[float]): COCO ``[x, y, w, h]``, 4 finite numbers.
        area (float): The annotation's ``area``.
        width (float): The image width the file gives.
        height (float): The image height the file gives.

    Returns:
        str | None: A key of :data:`DROP_REASONS`, or None if kept.
    """
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return 'zero-size'
    if (w < 1 or h < 1) and all(0 <= v <= 1 for v in bbox) \
            and max(width, height) > 1:
        return 'normalised'
    overlap_w = min(x + w, width) - max(x, 0)
    overlap_h = min(y + h, height) - max(y, 0)
    if overlap_w <= 0 or overlap_h <= 0:
        return 'outside'
    if w < 1 or h < 1:
        return 'tiny'
    if area <= 0:
        return 'area'
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """``CocoDataset`` that validates its annotation file and images.

    Checks, all raising :class:`DatasetError` with the file named:

    * the file holds at least one image;
    * every class of ``metainfo['classes']`` is a category of the file, in
      the same order (mmdet maps labels in file order);
    * every annotation's ``category_id`` is in the file's category list
      (annotations of listed categories outside ``classes`` are still
      skipped, as in mmdet);
    * every ``bbox`` is 4 finite numbers, every ``area`` a finite number,
      every image's ``width`` and ``height`` positive numbers;
    * at most ``max_dropped_fraction`` of the boxes (of ``classes``, not
      ``ignore``) are boxes mmdet drops: outside the image, normalised to
      0-1, zero or under 1 px in size, ``area <= 0``. The error counts them
      per reason with an example of each; fewer are dropped with a warning
      that says the same;
    * with ``check_files``, every image file exists (through
      ``backend_args``);
    * the annotation file is valid JSON.

    Args:
        check_files (bool): Check that every image file exists (one
            ``exists`` call per image). Default: True.
        max_dropped_fraction (float): The largest share of boxes, in
            [0, 1], that mmdet may drop before loading stops with a
            :class:`DatasetError`; 1.0 only warns. Default: 0.05.
        pipeline (list): As for ``CocoDataset``; ``LoadImageFromFile``
            steps become :class:`CheckedLoadImageFromFile` with the same
            arguments.
        *args, **kwargs: As for ``CocoDataset``.
    """

    def __init__(self, *args, check_files: bool = True,
                 max_dropped_fraction: float = 0.05, pipeline=(),
                 **kwargs) -> None:
        if not (_is_number(max_dropped_fraction)
                and 0 <= max_dropped_fraction <= 1):
            raise ValueError('max_dropped_fraction must be a number in '
                             f'[0, 1], got {max_dropped_fraction!r}')
        self.check_files = check_files
        self.max_dropped_fraction = max_dropped_fraction
        self._checked_categories = False
        pipeline = [_checked_step(step) for step in pipeline]
        super().__init__(*args, pipeline=pipeline, **kwargs)

    def _check_categories(self) -> None:
        cats = self.coco.cats
        names = [cats[i]['name'] for i in self.cat_ids]
        classes = list(self.metainfo['classes'])
        if names == classes:
            return
        missing = [c for c in classes if c not in names]
        available = [c['name'] for c in cats.values()]
        if missing:
            raise DatasetError(
                f'{self.ann_file}: classes {missing} of metainfo are not '
                f'categories of this file (it has {available[:20]}'
                f'{" ..." if len(available) > 20 else ""}); labels would '
                'be shifted. Fix metainfo.classes or the file')
        raise DatasetError(
            f'{self.ann_file}: its categories list the classes as {names}, '
            f'but metainfo.classes is {classes}; mmdet assigns labels in '
            'file order, so every label would name the wrong class. Use the '
            "file's order in metainfo.classes")

    def parse_data_info(self, raw_data_info: dict):
        """Check one image's annotations, then parse them as mmdet does."""
        if not self._checked_categories:
            self._check_categories()
            self._checked_categories = True
        img = raw_data_info['raw_img_info']
        size = (img.get('width'), img.get('height'))
        if not all(_is_number(v) and v > 0 for v in size):
            self._bad_anns.append(
                f'image id {img.get("id")} ({img.get("file_name")!r}): width '
                f'{size[0]!r} and height {size[1]!r} are not positive '
                'numbers')
        for ann in raw_data_info['raw_ann_info']:
            where = (f'annotation id {ann.get("id")} of image '
                     f'{img.get("file_name")!r}')
            if ann.get('category_id') not in self.coco.cats:
                self._bad_anns.append(
                    f'{where}: category_id {ann.get("category_id")!r} is not '
                    f'in the category list (ids {sorted(self.coco.cats)})')
            bbox = ann.get('bbox')
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                    and all(isinstance(v, (int, float)) and math.isfinite(v)
                            for v in bbox)):
                self._bad_anns.append(f'{where}: bbox {bbox!r} is not 4 '
                                      'finite numbers [x, y, w, h]')
            if not ann.get('ignore', False) and not _is_number(
                    ann.get('area')):
                self._bad_anns.append(f'{where}: area {ann.get("area")!r} '
                                      'is not a finite number')
        if self._bad_anns:
            return {}  # reported together in load_data_list
        data_info = super().parse_data_info(raw_data_info)
        self._count_drops(raw_data_info, len(data_info['instances']))
        return data_info

    def _count_drops(self, raw_data_info: dict, kept: int) -> None:
        """Tally the image's boxes that mmdet dropped, by reason."""
        img = raw_data_info['raw_img_info']
        boxes = [ann for ann in raw_data_info['raw_ann_info']
                 if not ann.get('ignore', False)
                 and ann['category_id'] in self.cat_ids]
        reasons = Counter()
        for ann in boxes:
            reason = drop_reason(ann['bbox'], ann['area'], img['width'],
                                 img['height'])
            if reason is None:
                continue
            reasons[reason] += 1
            self._drop_examples.setdefault(
                reason, f'annotation id {ann.get("id")} of image '
                f'{img.get("file_name")!r} ({img["width"]}x{img["height"]} '
                f'px in the file): bbox {ann["bbox"]}')
        # whatever a newer mmdet drops that the mirror does not know
        reasons['other'] += max(0, len(boxes) - kept - sum(reasons.values()))
        self._boxes += len(boxes)
        self._dropped.update(+reasons)

    def _check_drops(self) -> None:
        """Warn about dropped boxes; stop above ``max_dropped_fraction``."""
        dropped = sum(self._dropped.values())
        if not dropped:
            return
        share = dropped / self._boxes
        reasons = '; '.join(
            f'{DROP_REASONS[r]}: {n}' + (
                f' (e.g. {self._drop_examples[r]})'
                if r in self._drop_examples else '')
            for r, n in sorted(self._dropped.items(),
                               key=lambda item: list(DROP_REASONS).index(
                                   item[0])))
        summary = (f'{self.ann_file}: {dropped} of {self._boxes} boxes '
                   f'({share:.1%}) are dropped by mmdet: {reasons}')
        if share > self.max_dropped_fraction:
            raise DatasetError(
                f'{summary}. That is more than max_dropped_fraction='
                f'{self.max_dropped_fraction:g}: the model would train on '
                '(next to) no objects. COCO boxes are [x, y, width, height] '
                'in pixels of an image as wide and high as the file says. '
                'Fix the file, or raise max_dropped_fraction.')
        print_log(f'{summary} (max_dropped_fraction='
                  f'{self.max_dropped_fraction:g})', logger='current',
                  level=logging.WARNING)

    def load_data_list(self) -> List[dict]:
        """Load and check the annotation file."""
        self._bad_anns: List[str] = []
        self._boxes = 0  # boxes of `classes` that are not `ignore`
        self._dropped: Counter = Counter()  # reason -> boxes
        self._drop_examples: Dict[str, str] = {}
        try:
            data_list = super().load_data_list()
        except json.JSONDecodeError as exc:
            raise DatasetError(f'annotation file {self.ann_file} is not '
                               f'valid JSON: {exc}') from None
        if self._bad_anns:
            raise DatasetError(
                f'{self.ann_file}: {len(self._bad_anns)} invalid '
                f'annotations: ' + '; '.join(self._bad_anns[:_LISTED]) +
                (' ...' if len(self._bad_anns) > _LISTED else ''))
        if not data_list:
            raise DatasetError(f'{self.ann_file} contains no images')
        self._check_drops()
        if self.check_files:
            missing = [d['img_path'] for d in data_list
                       if not fileio.exists(d['img_path'],
                                            backend_args=self.backend_args)]
            if missing:
                raise DatasetError(
                    f'{self.ann_file}: {len(missing)} of {len(data_list)} '
                    f'image files not found (data_prefix {self.data_prefix}'
                    '): ' + ', '.join(missing[:_LISTED]) +
                    (' ...' if len(missing) > _LISTED else ''))
        return data_list

    def prepare_data(self, idx: int):
        """Run the pipeline; an OpenCV failure (e.g. a 4x4000 image that a
        keep-ratio Resize shrinks to 0 px) names the image."""
        try:
            return super().prepare_data(idx)
        except cv2.error as exc:
            info = self.get_data_info(idx)
            detail = str(exc).strip().splitlines()[-1][:160]
            raise ImageLoadError(
                f'image {info.get("img_path")} ({info.get("width")}x'
                f'{info.get("height")} px in {self.ann_file}): the pipeline '
                f'failed in OpenCV ({detail}). An image this small or this '
                'elongated cannot go through the configured resize; remove '
                'it from the annotation file or pad it.') from None


def _checked_step(step):
    if isinstance(step, dict) and step.get('type') in (
            'LoadImageFromFile', 'mmcv.LoadImageFromFile', LoadImageFromFile):
        step = dict(copy.deepcopy(step), type='CheckedLoadImageFromFile')
    return step


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` with a clear error for bad image files.

    Grayscale, RGBA and 16-bit files are converted to 8-bit 3-channel BGR
    with the default ``color_type='color'``, as in mmcv.

    Args:
        on_error (str): ``'raise'`` an :class:`ImageLoadError` naming the
            file, or ``'skip'`` it with a warning (the dataset then picks
            another sample, up to its ``max_refetch``). Default: ``'raise'``.
        **kwargs: As for ``LoadImageFromFile`` (except ``ignore_empty``,
            which would skip silently).
    """

    def __init__(self, on_error: str = 'raise', **kwargs) -> None:
        if on_error not in ('raise', 'skip'):
            raise ValueError(f"on_error must be 'raise' or 'skip', got "
                             f'{on_error!r}')
        if kwargs.pop('ignore_empty', False):
            raise ValueError("ignore_empty skips bad images silently; use "
                             "on_error='skip' instead")
        super().__init__(**kwargs)
        self.on_error = on_error

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            out = super().transform(results)
        except FileNotFoundError:
            problem = 'file not found'
        except Exception as exc:  # decoders raise many types
            problem = (f'cannot be decoded ({type(exc).__name__}: '
                       f'{str(exc).splitlines()[0] if str(exc) else ""})')
        else:
            img = out['img']
            if self.color_type != 'color' or (img.ndim == 3
                                              and img.shape[2] == 3):
                return out
            problem = f'decoded to shape {img.shape}, not 3 channels'
        message = f'image {filename}: {problem}'
        if self.on_error == 'skip':
            print_log(f'skipping {message}', logger='current',
                      level=logging.WARNING)
            return None
        raise ImageLoadError(message)
