"""A single-stage detector as one traceable module: image in, boxes out.

:class:`SingleStageExport` wraps an mmdet ``SingleStageDetector`` whose head
predicts with mmdet's generic dense-head post-processing
(``BaseDenseHead._predict_by_feat_single``): SSD / SSDLite (softmax with the
background class last, mmdet's ``SSDHead`` and our ``SSDLiteHead``) and
RetinaNet (sigmoid). It computes from the head's raw outputs, so mmdet
3.3.0's broken ``SSDHead.predict`` never runs, and reproduces that
post-processing step by step:

1. per level, class scores (softmax without background, or sigmoid);
2. per level, the ``nms_pre`` best (prior, class) pairs above ``score_thr``;
3. decoding of their deltas against the head's own anchors (computed in
   the graph from the feature maps' shapes, so the input size may vary),
   clamped to the input;
4. boxes no wider / taller than ``min_bbox_size`` dropped;
5. per-class NMS (mmcv's class-offset ``batched_nms``) and the
   ``max_per_img`` best, in fixed output slots.

Called in PyTorch it gives what the exported graph gives.
"""
from typing import Dict, Optional, Tuple

import torch.nn as nn
from torch import Tensor

from .ops import (InputNormalizer, decode_levels_and_nms, gather_rows,
                  level_anchors, select_candidates)

#: Output names (as mmdeploy's, so existing clients fit).
OUTPUT_NAMES = ('dets', 'labels')


class UnsupportedDetectorError(NotImplementedError):
    """A detector, head, coder or setting the ONNX export cannot express."""


def nms_iou(cfg: Dict, where: str) -> float:
    """The IoU threshold of a test_cfg's plain, per-class ``nms``; raise
    :class:`UnsupportedDetectorError` naming `where` for any other kind."""
    nms = cfg.get('nms')
    if nms is None or nms.get('type', 'nms') != 'nms':
        raise UnsupportedDetectorError(
            f'{where}.nms must be dict(type=\'nms\', iou_threshold=...), got '
            f'{nms!r} (soft-NMS and NMS-free heads are not exportable)')
    if nms.get('class_agnostic', False):
        raise UnsupportedDetectorError(
            f'{where}.nms.class_agnostic=True is not supported')
    return float(nms['iou_threshold'])


def _test_cfg(head: nn.Module) -> Dict:
    cfg = head.test_cfg
    if cfg is None:
        raise UnsupportedDetectorError(
            f'{type(head).__name__} has no test_cfg; set model.test_cfg '
            '(score_thr, nms, nms_pre, max_per_img) in the config')
    iou_threshold = nms_iou(cfg, 'test_cfg')
    if cfg.get('min_bbox_size', -1) > 0:
        # mmdet applies it to boxes rescaled to the original image, whose
        # size the graph does not see.
        raise UnsupportedDetectorError(
            f'test_cfg.min_bbox_size={cfg.min_bbox_size} > 0 is not '
            'supported (0 or -1 are)')
    return dict(score_thr=float(cfg.get('score_thr', 0)),
                nms_pre=int(cfg.get('nms_pre', -1)),
                iou_threshold=iou_threshold,
                max_per_img=int(cfg.get('max_per_img', 100)),
                min_bbox_size=float(cfg.get('min_bbox_size', -1)))


def check_single_stage(detector: nn.Module) -> None:
    """Raise :class:`UnsupportedDetectorError` unless
    :class:`SingleStageExport` reproduces `detector`'s predict."""
    from mmdet.models.dense_heads import AnchorHead
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    from mmdet.models.detectors import SingleStageDetector
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    name = type(detector).__name__
    if not isinstance(detector, SingleStageDetector):
        kind = 'two-stage' if hasattr(detector, 'roi_head') else 'this kind'
        raise UnsupportedDetectorError(
            f'{kind} export not supported yet: {name} is not a '
            'SingleStageDetector')
    head = detector.bbox_head
    generic = all(getattr(type(head), f) is getattr(BaseDenseHead, f)
                  for f in ('predict_by_feat', '_predict_by_feat_single',
                            '_bbox_post_process'))
    if not isinstance(head, AnchorHead) or not generic:
        raise UnsupportedDetectorError(
            f'{name}.bbox_head is {type(head).__name__}; export supports '
            'anchor heads with mmdet\'s generic dense-head predict (SSDHead, '
            'SSDLiteHead, RetinaHead, AnchorHead)')
    if getattr(getattr(head, 'loss_cls', None), 'custom_cls_channels',
               False):
        raise UnsupportedDetectorError(
            f'{type(head).__name__} uses a loss with custom class channels')
    if type(head.bbox_coder) is not DeltaXYWHBBoxCoder:
        raise UnsupportedDetectorError(
            f'{type(head).__name__}.bbox_coder is '
            f'{type(head.bbox_coder).__name__}; only DeltaXYWHBBoxCoder is '
            'supported')
    _test_cfg(head)


class SingleStageExport(nn.Module):
    """RGB 0-255 ``[N, 3, H, W]`` in, ``dets [N, K, 5]``, ``labels [N, K]``
    out, with ``K = test_cfg.max_per_img``.

    ``dets`` rows are (x1, y1, x2, y2, score) in input pixels, in descending
    score order; empty slots have box and score 0 and label -1.

    Args:
        detector (nn.Module): An eval-mode mmdet ``SingleStageDetector``
            (see :func:`check_single_stage`). Shared, not copied.

    Raises:
        UnsupportedDetectorError: The detector cannot be expressed.

    Example:
        >>> wrapper = SingleStageExport(detector.eval())
        >>> dets, labels = wrapper(torch.rand(1, 3, 320, 320) * 255)
        >>> dets.shape, labels.shape
        (torch.Size([1, 200, 5]), torch.Size([1, 200]))
    """

    output_names = OUTPUT_NAMES
    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        check_single_stage(detector)
        self.detector = detector
        self.cfg = _test_cfg(detector.bbox_head)
        self.normalizer = InputNormalizer.from_preprocessor(
            detector.data_preprocessor)

    @property
    def head(self) -> nn.Module:
        return self.detector.bbox_head

    def class_scores(self, logits: Tensor) -> Tensor:
        """``[B, P, C]`` scores from ``[B, P, cls_out_channels]`` logits."""
        if self.head.use_sigmoid_cls:
            return logits.sigmoid()
        return logits.softmax(-1)[..., :-1]  # background is the last class

    def forward(self, images: Tensor, img_shape: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor]:
        """`img_shape`: ``[N, 2]`` ``(h, w)`` of each resized image before
        padding, where mmdet clamps boxes; None: the whole input."""
        # traced sizes in the export: the graph follows the input's shape
        max_shape = (images.shape[2], images.shape[3]) if img_shape is None \
            else img_shape
        feats = self.detector.extract_feat(self.normalizer(images))
        cls_scores, bbox_preds = self.head(feats)
        batch = images.shape[0]
        cfg = self.cfg
        mlvl = []
        priors_per_level = level_anchors(self.head.prior_generator,
                                         cls_scores)
        for logits, deltas, priors in zip(cls_scores, bbox_preds,
                                          priors_per_level):
            logits = logits.permute(0, 2, 3, 1).reshape(
                batch, -1, self.head.cls_out_channels)
            deltas = deltas.permute(0, 2, 3, 1).reshape(batch, -1, 4)
            scores, prior_index, labels, valid = select_candidates(
                self.class_scores(logits), cfg['score_thr'], cfg['nms_pre'])
            mlvl.append((scores, labels, valid,
                         gather_rows(deltas, prior_index),
                         priors[prior_index]))
        return decode_levels_and_nms(mlvl, self.head.bbox_coder, max_shape,
                                     cfg)
