"""COCO evaluation of a results file with pycocotools.

A results file is a JSON list in the COCO results format. ``tools/test.py
--out x.json`` writes one entry per detection holding ``bbox`` and ``score``
and, for instance segmentation models, ``segmentation`` (RLE) and
``mask_score`` too, so one file serves both ``bbox`` and ``segm``
evaluation. Plain COCO files (only ``bbox`` or only ``segmentation``) work
as well.

The 12 metrics are pycocotools' standard summary (``COCOeval.stats``, max 1,
10 and 100 detections per image). mmdet's ``CocoMetric`` evaluates with up to
1000 detections per image, so its numbers equal these when a model keeps at
most 100 detections per image (Mask R-CNN, Faster R-CNN, RetinaNet).
"""
import contextlib
import io
import json
import os.path as osp
from typing import Dict, List, Sequence, Union

import numpy as np

from ..utils.io import atomic_write

IOU_TYPES = ('bbox', 'segm')
# Order of COCOeval.stats.
METRIC_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10',
                'AR100', 'ARs', 'ARm', 'ARl')
_METRIC_TITLES = (
    'AP @[IoU=0.50:0.95 | area=   all | maxDets=100]',
    'AP @[IoU=0.50      | area=   all | maxDets=100]',
    'AP @[IoU=0.75      | area=   all | maxDets=100]',
    'AP @[IoU=0.50:0.95 | area= small | maxDets=100]',
    'AP @[IoU=0.50:0.95 | area=medium | maxDets=100]',
    'AP @[IoU=0.50:0.95 | area= large | maxDets=100]',
    'AR @[IoU=0.50:0.95 | area=   all | maxDets=  1]',
    'AR @[IoU=0.50:0.95 | area=   all | maxDets= 10]',
    'AR @[IoU=0.50:0.95 | area=   all | maxDets=100]',
    'AR @[IoU=0.50:0.95 | area= small | maxDets=100]',
    'AR @[IoU=0.50:0.95 | area=medium | maxDets=100]',
    'AR @[IoU=0.50:0.95 | area= large | maxDets=100]',
)


def _load_json(path: str, what: str):
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} file not found: {path}')
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{what} file {path} is not valid JSON: {e}') \
                from None


def merge_coco_results(bbox_results: List[dict],
                       segm_results: List[dict]) -> List[dict]:
    """Merge mmdet's ``*.bbox.json`` and ``*.segm.json`` entries.

    ``CocoMetric.results2json`` writes both lists in the same order, one
    entry per detection; the segm entry carries the mask and its score.
    """
    if len(bbox_results) != len(segm_results):
        raise ValueError(f'bbox and segm results differ in length '
                         f'({len(bbox_results)} vs {len(segm_results)})')
    merged = []
    for box, seg in zip(bbox_results, segm_results):
        if (box['image_id'], box['category_id']) != (seg['image_id'],
                                                     seg['category_id']):
            raise ValueError('bbox and segm results are not in the same '
                             f'order: {box} vs {seg}')
        merged.append(dict(box, segmentation=seg['segmentation'],
                           mask_score=seg['score']))
    return merged


def write_results_atomic(results: List[dict], path: str) -> None:
    """Write a results list as JSON, replacing ``path`` only when done."""
    atomic_write(json.dumps(results), path)


def _results_for(results: List[dict], iou_type: str) -> List[dict]:
    """The entries pycocotools should see for one IoU type."""
    if iou_type == 'bbox':
        if not all('bbox' in r for r in results):
            raise ValueError('bbox evaluation needs a "bbox" in every result')
        return [{k: v for k, v in r.items()
                 if k not in ('segmentation', 'mask_score')} for r in results]
    if not all('segmentation' in r for r in results):
        raise ValueError('segm evaluation needs a "segmentation" in every '
                         'result (the results hold boxes only)')
    # As mmdet: mask score, and the box of the same detection for the area.
    return [dict({k: v for k, v in r.items() if k != 'mask_score'},
                 score=r.get('mask_score', r['score'])) for r in results]


def evaluate_coco(results: Union[str, List[dict]],
                  ann_file: str,
                  iou_types: Sequence[str] = ('bbox', ),
                  verbose: bool = False) -> Dict[str, Dict[str, float]]:
    """Evaluate COCO results against a COCO annotation file.

    Args:
        results (str | list[dict]): Results JSON path or its entries.
        ann_file (str): COCO annotation JSON.
        iou_types (Sequence[str]): Any of ``'bbox'``, ``'segm'``.
        verbose (bool): Print pycocotools' own summary too.

    Returns:
        dict: ``{iou_type: {metric name: value}}`` with the 12
        :data:`METRIC_NAMES`. Empty results give 0 for every metric.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    bad = [t for t in iou_types if t not in IOU_TYPES]
    if bad or not iou_types:
        raise ValueError(f'iou_types must be a non-empty subset of '
                         f'{IOU_TYPES}, got {tuple(iou_types)!r}')
    if isinstance(results, str):
        results = _load_json(results, 'results')
    if not isinstance(results, list):
        raise ValueError('results must be a JSON list of detections, got '
                         f'{type(results).__name__}')
    _load_json(ann_file, 'annotation')  # clear error before pycocotools
    quiet = contextlib.nullcontext() if verbose else \
        contextlib.redirect_stdout(io.StringIO())
    with quiet:
        gt = COCO(ann_file)
    metrics = {}
    for iou_type in iou_types:
        if not results:
            metrics[iou_type] = {n: 0.0 for n in METRIC_NAMES}
            continue
        with quiet:
            dt = gt.loadRes(_results_for(results, iou_type))
            coco_eval = COCOeval(gt, dt, iou_type)
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        metrics[iou_type] = {
            n: float(v) for n, v in zip(METRIC_NAMES, np.asarray(
                coco_eval.stats))}
    return metrics


def format_metrics(metrics: Dict[str, Dict[str, float]]) -> str:
    """A table with one row per metric and one column per IoU type."""
    types = list(metrics)
    lines = [f'{"Average Precision / Recall":<48}' +
             ''.join(f'{t:>8}' for t in types)]
    for name, title in zip(METRIC_NAMES, _METRIC_TITLES):
        lines.append(f'{title:<48}' +
                     ''.join(f'{metrics[t][name]:>8.3f}' for t in types))
    return '\n'.join(lines)
