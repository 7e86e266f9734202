from .coco import (IOU_TYPES, METRIC_NAMES, evaluate_coco, format_metrics,
                   merge_coco_results, write_results_atomic)

__all__ = [
    'IOU_TYPES', 'METRIC_NAMES', 'evaluate_coco', 'format_metrics',
    'merge_coco_results', 'write_results_atomic'
]
