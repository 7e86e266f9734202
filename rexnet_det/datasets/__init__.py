from .checked_coco import (CheckedCocoDataset, CheckedLoadImageFromFile,
                           DatasetError, ImageLoadError)
from .synthetic import (CLASSES, SyntheticCocoSpec, dataset_metainfo,
                        draw_image, make_split, make_synthetic_coco)

__all__ = [
    'CheckedCocoDataset', 'CheckedLoadImageFromFile', 'DatasetError',
    'ImageLoadError',
    'CLASSES', 'SyntheticCocoSpec', 'dataset_metainfo', 'draw_image',
    'make_split', 'make_synthetic_coco'
]
