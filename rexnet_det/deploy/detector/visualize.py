"""Draw a deployed detector's results as ``tools/test.py --show-dir`` does
(mmdet's ``DetLocalVisualizer``).

Drawing costs time and memory in proportion to the image (matplotlib
renders the full canvas, every mask is blended at full size): images
larger than ``max_side`` are drawn downscaled to it, boxes and masks
scaled with them.
"""
from typing import List, Optional

import numpy as np

from .runtime import Detections

#: Longest side an image is drawn at (larger ones are downscaled; 1333 is
#: the long side of the COCO configs' test scale).
MAX_DRAW_SIDE = 1333


def downscale_for_drawing(image: np.ndarray, detections: Detections,
                          max_side: int = MAX_DRAW_SIDE,
                          keep: Optional[np.ndarray] = None):
    """`image` and the detections `keep` (default: all) scaled so that the
    longer side is at most `max_side` (not scaled if it already is).

    Returns:
        tuple: ``(image, detections)``.
    """
    import cv2
    keep = np.arange(len(detections)) if keep is None else keep
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale < 1:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    masks = None
    if detections.masks is not None:
        # one mask at a time: never a copy of all full-size masks
        masks = np.zeros((len(keep), size[1], size[0]), bool)
        for i, j in enumerate(keep):
            masks[i] = detections.masks[j] if scale == 1 else cv2.resize(
                detections.masks[j].view(np.uint8), size,
                interpolation=cv2.INTER_NEAREST) > 0
    return image, Detections(detections.bboxes[keep] * np.float32(scale),
                             detections.scores[keep],
                             detections.labels[keep], masks)


def draw_detections(image: np.ndarray, detections: Detections,
                    classes: List[str], out_file: str,
                    palette: Optional[list] = None,
                    score_thr: float = 0.3,
                    max_side: int = MAX_DRAW_SIDE) -> None:
    """Draw boxes, masks (where `detections` has them), class names and
    scores above `score_thr` on a BGR image and write it to `out_file`
    (downscaled to `max_side` if larger, see the module doc)."""
    import mmcv
    import torch
    from mmdet.structures import DetDataSample
    from mmdet.visualization import DetLocalVisualizer
    from mmengine.structures import InstanceData
    # only what is drawn is scaled (masks of low scores would cost for
    # nothing)
    image, detections = downscale_for_drawing(
        image, detections, max_side,
        np.flatnonzero(detections.scores > score_thr))
    sample = DetDataSample()
    sample.pred_instances = InstanceData(
        bboxes=torch.from_numpy(detections.bboxes),
        scores=torch.from_numpy(detections.scores),
        labels=torch.from_numpy(detections.labels))
    if detections.masks is not None:
        sample.pred_instances.masks = torch.from_numpy(detections.masks)
    name = 'rexnet_det_deploy'
    visualizer = DetLocalVisualizer.get_instance(name)  # created once
    # colours must be tuples (a list is read as a list of colours)
    visualizer.dataset_meta = dict(
        classes=tuple(classes),
        palette=[tuple(c) for c in palette] if palette else 'random')
    visualizer.add_datasample(name, mmcv.imconvert(image, 'bgr', 'rgb'),
                              sample, draw_gt=False, show=False,
                              pred_score_thr=score_thr, out_file=out_file)
