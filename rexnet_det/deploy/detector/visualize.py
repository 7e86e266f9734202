"""Draw a deployed detector's results as ``tools/test.py --show-dir`` does
(mmdet's ``DetLocalVisualizer``)."""
from typing import List, Optional

import numpy as np

from .runtime import Detections


def draw_detections(image: np.ndarray, detections: Detections,
                    classes: List[str], out_file: str,
                    palette: Optional[list] = None,
                    score_thr: float = 0.3) -> None:
    """Draw boxes, masks (where `detections` has them), class names and
    scores above `score_thr` on a BGR image and write it to `out_file`."""
    import mmcv
    import torch
    from mmdet.structures import DetDataSample
    from mmdet.visualization import DetLocalVisualizer
    from mmengine.structures import InstanceData
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
