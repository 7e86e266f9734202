"""COCO data that fails loudly on bad input instead of training on it.

mmdet's ``CocoDataset`` silently drops annotations whose ``category_id`` is
not in the file's category list, silently shifts labels when a class of
``metainfo['classes']`` is missing from the file or listed in another order
(``get_cat_ids`` returns ids in file order), and loads an empty file into a
dataset that makes iteration-based training loop forever. A missing or
undecodable image surfaces as ``AssertionError: failed to load image`` or a
bare ``FileNotFoundError`` deep in a worker, possibly days into a run.

:class:`CheckedCocoDataset` checks the annotation file and the image files
when it loads; :class:`CheckedLoadImageFromFile` names the file and the
problem when an image cannot be read, or skips it with a warning.
Images without annotations are valid: they are negatives (or are dropped
by ``filter_cfg=dict(filter_empty_gt=True)`` as usual).
"""
import logging
import math
import os.path as osp
from typing import List, Optional

from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS, TRANSFORMS
from mmengine.logging import print_log


class DatasetError(ValueError):
    """Annotation or image files that cannot be trained on; the message
    names the file."""


class ImageLoadError(DatasetError, OSError):
    """An image file that is missing or cannot be decoded."""


_LISTED = 5  # how many offending items an error message lists


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
    * every ``bbox`` is 4 finite numbers;
    * with ``check_files``, every image file exists.

    Args:
        check_files (bool): Check that every image file exists (one
            ``stat`` per image). Default: True.
        *args, **kwargs: As for ``CocoDataset``.
    """

    def __init__(self, *args, check_files: bool = True, **kwargs) -> None:
        self.check_files = check_files
        self._checked_categories = False
        self._bad_anns: List[str] = []
        super().__init__(*args, **kwargs)

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
        if self._bad_anns:
            return {}  # reported together in load_data_list
        return super().parse_data_info(raw_data_info)

    def load_data_list(self) -> List[dict]:
        """Load and check the annotation file."""
        data_list = super().load_data_list()
        if self._bad_anns:
            raise DatasetError(
                f'{self.ann_file}: {len(self._bad_anns)} invalid '
                f'annotations: ' + '; '.join(self._bad_anns[:_LISTED]) +
                (' ...' if len(self._bad_anns) > _LISTED else ''))
        if not data_list:
            raise DatasetError(f'{self.ann_file} contains no images')
        if self.check_files:
            missing = [d['img_path'] for d in data_list
                       if not osp.isfile(d['img_path'])]
            if missing:
                raise DatasetError(
                    f'{self.ann_file}: {len(missing)} of {len(data_list)} '
                    f'image files not found (data_prefix {self.data_prefix}'
                    '): ' + ', '.join(missing[:_LISTED]) +
                    (' ...' if len(missing) > _LISTED else ''))
        return data_list


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
