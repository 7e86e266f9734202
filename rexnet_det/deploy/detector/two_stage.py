"""A two-stage detector as one traceable module: image in, boxes (and
masks) out.

:class:`TwoStageExport` wraps an mmdet ``TwoStageDetector`` with an
``RPNHead`` and a ``StandardRoIHead`` (Faster R-CNN, Mask R-CNN) and
reproduces its predict step by step, from the raw outputs of its layers:

1. RPN, per level: objectness scores, the ``nms_pre`` best anchors,
   decoding against the head's anchors (computed from the feature maps'
   shapes, so the input size and batch may vary; clamped to the input);
2. RPN, all levels: proposals no wider / taller than ``min_bbox_size``
   dropped, NMS with the levels as classes (mmdet's
   ``RPNHead._bbox_post_process`` runs ``batched_nms`` over level ids) and
   the ``max_per_img`` best proposals, in fixed slots;
3. RoI features: each proposal pooled (``RoIAlign``) from the FPN level
   mmdet's ``SingleRoIExtractor.map_roi_levels`` picks for it;
4. bbox head: softmax, class-specific (or agnostic) delta decoding,
   ``score_thr``, per-class NMS and the ``max_per_img`` best detections;
5. Mask R-CNN: the mask head on the final boxes, the probability map of
   each box's class pasted into the input image (mmdet's
   ``_do_paste_mask``, as separable bilinear interpolation).

Called in PyTorch it gives what the exported graph gives. Proposal and
detection slots are fixed; empty ones are masked out (box and score 0,
label -1, mask 0). Every image of a batch is processed as if alone (NMS,
top-k and class offsets are per image).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .ops import (InputNormalizer, MaxShape, Size, batched_nms_fixed,
                  decode_levels_and_nms, decode_with, gather_rows,
                  level_anchors, select_candidates)
from .roi_ops import multi_level_roi_align, paste_masks
from .single_stage import UnsupportedDetectorError, nms_iou

#: Output names with masks (without: the first two).
MASK_OUTPUT_NAMES = ('dets', 'labels', 'masks')


def _predicts_as(head: nn.Module, base: type) -> bool:
    """`head` is a `base` whose prediction the export reproduces: neither
    ``predict_by_feat`` nor ``_predict_by_feat_single`` is overridden."""
    return isinstance(head, base) and all(
        getattr(type(head), f) is getattr(base, f)
        for f in ('predict_by_feat', '_predict_by_feat_single'))


def _check_extractor(extractor: nn.Module, where: str) -> None:
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    if type(extractor) is not SingleRoIExtractor:
        raise UnsupportedDetectorError(
            f'{where} is {type(extractor).__name__}; only '
            'SingleRoIExtractor is supported')
    layer = extractor.roi_layers[0]
    if type(layer).__name__ != 'RoIAlign' or getattr(
            layer, 'pool_mode', 'avg') != 'avg':
        raise UnsupportedDetectorError(
            f'{where}.roi_layer is {type(layer).__name__} (pool_mode '
            f'{getattr(layer, "pool_mode", None)!r}); only mmcv RoIAlign '
            'with pool_mode=\'avg\' is supported')


def check_two_stage(detector: nn.Module) -> None:
    """Raise :class:`UnsupportedDetectorError` unless
    :class:`TwoStageExport` reproduces `detector`'s predict; the message
    names the detector or part it cannot express."""
    from mmdet.models.dense_heads import RPNHead
    from mmdet.models.detectors import TwoStageDetector
    from mmdet.models.roi_heads import StandardRoIHead
    from mmdet.models.roi_heads.bbox_heads import BBoxHead
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    name = type(detector).__name__
    if not isinstance(detector, TwoStageDetector):
        raise UnsupportedDetectorError(
            f'{name} is not a TwoStageDetector')
    rpn, roi = detector.rpn_head, detector.roi_head
    if rpn is None or type(rpn) is not RPNHead:
        raise UnsupportedDetectorError(
            f'{name}.rpn_head is {type(rpn).__name__}; only RPNHead is '
            'supported')
    if type(roi) is not StandardRoIHead:
        raise UnsupportedDetectorError(
            f'{name}.roi_head is {type(roi).__name__}; only '
            'StandardRoIHead (Faster / Mask R-CNN) is supported, not '
            'cascade or other multi-stage RoI heads')
    if roi.with_shared_head:
        raise UnsupportedDetectorError(
            f'{name}.roi_head has a shared head (C4 models); not supported')
    for part, coder in (('rpn_head', rpn.bbox_coder),
                        ('roi_head.bbox_head', roi.bbox_head.bbox_coder)):
        if type(coder) is not DeltaXYWHBBoxCoder:
            raise UnsupportedDetectorError(
                f'{name}.{part}.bbox_coder is {type(coder).__name__}; only '
                'DeltaXYWHBBoxCoder is supported')
    head = roi.bbox_head
    if not _predicts_as(head, BBoxHead):
        raise UnsupportedDetectorError(
            f'{name}.roi_head.bbox_head is {type(head).__name__}; only '
            'BBoxHead / ConvFCBBoxHead (e.g. Shared2FCBBoxHead) are '
            'supported')
    if head.custom_cls_channels or not (head.with_cls and head.with_reg):
        raise UnsupportedDetectorError(
            f'{type(head).__name__} needs a plain softmax classifier and '
            'box regression')
    _check_extractor(roi.bbox_roi_extractor,
                     f'{name}.roi_head.bbox_roi_extractor')
    if roi.with_mask:
        mask = roi.mask_head
        if not _predicts_as(mask, FCNMaskHead):
            raise UnsupportedDetectorError(
                f'{name}.roi_head.mask_head is {type(mask).__name__}; only '
                'FCNMaskHead is supported')
        _check_extractor(roi.mask_roi_extractor,
                         f'{name}.roi_head.mask_roi_extractor')
    for part, cfg in (('test_cfg.rpn', rpn.test_cfg),
                      ('test_cfg.rcnn', roi.test_cfg)):
        if cfg is None:
            raise UnsupportedDetectorError(f'{name} has no {part}')
        nms_iou(cfg, part)


def has_mask_head(detector: nn.Module) -> bool:
    """Whether `detector` predicts instance masks (a Mask R-CNN)."""
    roi = getattr(detector, 'roi_head', None)
    return bool(roi is not None and getattr(roi, 'with_mask', False))


class TwoStageExport(nn.Module):
    """RGB 0-255 ``[N, 3, H, W]`` in; ``dets [N, K, 5]``, ``labels
    [N, K]`` and, for Mask R-CNN, ``masks [N, K, H, W]`` out, with
    ``K = test_cfg.rcnn.max_per_img``.

    ``dets`` rows are (x1, y1, x2, y2, score) in input pixels, in
    descending score order; ``masks`` are float32 probabilities pasted into
    the input image (mmdet binarises them with ``>= mask_thr_binary``,
    0.5). Empty slots have box, score and mask 0 and label -1.

    Args:
        detector (nn.Module): An eval-mode mmdet ``TwoStageDetector``
            (see :func:`check_two_stage`). Shared, not copied.
        with_masks (bool, optional): Output masks. None: if the detector
            has a mask head. Default: None.

    Raises:
        UnsupportedDetectorError: The detector cannot be expressed, or
            masks are requested from a detector without a mask head.

    Example:
        >>> wrapper = TwoStageExport(mask_rcnn.eval())
        >>> dets, labels, masks = wrapper(torch.rand(1, 3, 128, 128) * 255)
        >>> dets.shape, masks.shape
        (torch.Size([1, 20, 5]), torch.Size([1, 20, 128, 128]))
    """

    def __init__(self, detector: nn.Module,
                 with_masks: Optional[bool] = None) -> None:
        super().__init__()
        check_two_stage(detector)
        has_masks = has_mask_head(detector)
        if with_masks and not has_masks:
            raise UnsupportedDetectorError(
                f'masks requested, but {type(detector).__name__} has no '
                'mask head (only Mask R-CNN-style detectors predict masks)')
        self.detector = detector
        self.with_masks = has_masks if with_masks is None else with_masks
        self.output_names = MASK_OUTPUT_NAMES if self.with_masks else \
            MASK_OUTPUT_NAMES[:2]
        rpn_cfg = detector.rpn_head.test_cfg
        rcnn_cfg = detector.roi_head.test_cfg
        self.rpn_cfg = dict(
            nms_pre=int(rpn_cfg.get('nms_pre', -1)),
            iou_threshold=nms_iou(rpn_cfg, 'test_cfg.rpn'),
            max_per_img=int(rpn_cfg.get('max_per_img', 1000)),
            min_bbox_size=float(rpn_cfg.get('min_bbox_size', -1)))
        #: What the final stage applies (the keys DeployMeta records).
        self.cfg = dict(
            score_thr=float(rcnn_cfg.get('score_thr', 0)),
            nms_pre=self.rpn_cfg['nms_pre'],
            iou_threshold=nms_iou(rcnn_cfg, 'test_cfg.rcnn'),
            max_per_img=int(rcnn_cfg.get('max_per_img', 100)),
            mask_thr=float(rcnn_cfg.get('mask_thr_binary', 0.5)))
        self.normalizer = InputNormalizer.from_preprocessor(
            detector.data_preprocessor)

    @property
    def head(self) -> nn.Module:
        """The final box head (its ``num_classes`` are the classes)."""
        return self.detector.roi_head.bbox_head

    def proposals(self, feats: Sequence[Tensor], max_shape: MaxShape
                  ) -> Tuple[Tensor, Tensor]:
        """``[B, P, 4]`` proposals and ``[B, P]`` validity, P = the RPN's
        ``max_per_img``, as ``RPNHead.predict(rescale=False)``."""
        head, cfg = self.detector.rpn_head, self.rpn_cfg
        cls_scores, bbox_preds = head(feats)
        batch = feats[0].shape[0]
        mlvl = []
        for level, (logits, deltas, priors) in enumerate(zip(
                cls_scores, bbox_preds,
                level_anchors(head.prior_generator, cls_scores))):
            logits = logits.permute(0, 2, 3, 1).reshape(
                batch, -1, head.cls_out_channels)
            scores = logits.sigmoid() if head.use_sigmoid_cls else \
                logits.softmax(-1)[..., :-1]
            deltas = deltas.permute(0, 2, 3, 1).reshape(batch, -1, 4)
            # no score threshold in the RPN: every top-k anchor is valid
            scores, index, _, valid = select_candidates(
                scores, -1.0, cfg['nms_pre'], stable=True)
            mlvl.append((scores, torch.full_like(index, level), valid,
                         gather_rows(deltas, index), priors[index]))
        # the FPN level is the NMS group, as in mmdet's batched_nms
        dets, levels = decode_levels_and_nms(mlvl, head.bbox_coder,
                                             max_shape, cfg)
        return dets[..., :4], levels >= 0

    def roi_features(self, extractor: nn.Module, feats: Sequence[Tensor],
                     boxes: Tensor) -> Tensor:
        """``[B * R, C, h, w]`` RoI features of ``[B, R, 4]`` boxes."""
        batch = boxes.shape[0]
        # [B, R] image index of every box (traced: follows the batch)
        batch_index = torch.zeros_like(boxes[..., 0], dtype=torch.long) + \
            torch.arange(batch, device=boxes.device)[:, None]
        layer = extractor.roi_layers[0]
        return multi_level_roi_align(
            feats[:extractor.num_inputs], boxes.reshape(-1, 4),
            batch_index.reshape(-1),
            tuple(layer.output_size), extractor.featmap_strides,
            int(layer.sampling_ratio), bool(layer.aligned),
            float(extractor.finest_scale))

    def detections(self, feats: Sequence[Tensor], proposals: Tensor,
                   valid: Tensor, max_shape: MaxShape
                   ) -> Tuple[Tensor, Tensor]:
        """``StandardRoIHead.predict_bbox(rescale=False)`` in fixed slots."""
        roi, head, cfg = self.detector.roi_head, self.head, self.cfg
        batch, count = proposals.shape[0], proposals.shape[1]
        cls_score, bbox_pred = head(self.roi_features(
            roi.bbox_roi_extractor, feats, proposals))
        num_classes = head.num_classes
        scores = cls_score.softmax(-1)[:, :-1].reshape(batch, count,
                                                       num_classes)
        deltas = bbox_pred.reshape(batch, count, -1, 4)
        priors = proposals[:, :, None, :].expand_as(deltas)
        boxes = decode_with(head.bbox_coder, priors, deltas, max_shape)
        boxes = boxes.expand(batch, count, num_classes, 4)  # agnostic: 1
        labels = torch.arange(num_classes, device=scores.device).expand(
            batch, count, num_classes)
        candidates = (scores > cfg['score_thr']) & valid[..., None]
        dets, labels, _ = batched_nms_fixed(
            boxes.reshape(batch, -1, 4), scores.reshape(batch, -1),
            labels.reshape(batch, -1), candidates.reshape(batch, -1),
            cfg['iou_threshold'], cfg['max_per_img'])
        return dets, labels

    def masks(self, feats: Sequence[Tensor], dets: Tensor, labels: Tensor,
              height: Size, width: Size) -> Tensor:
        """``[B, K, H, W]`` mask probabilities of the detections' classes
        pasted into the input (0 in empty slots)."""
        roi = self.detector.roi_head
        batch, count = labels.shape
        boxes = dets[..., :4]
        preds = roi.mask_head(self.roi_features(roi.mask_roi_extractor,
                                                feats, boxes))
        if preds.shape[1] > 1:  # class-specific masks: the box's class
            index = labels.reshape(-1).clamp(min=0)
            preds = preds.gather(1, index[:, None, None, None].expand(
                -1, 1, preds.shape[2], preds.shape[3]))
        # empty slots: zero maps paste to zero (pasting is linear), which
        # is cheaper than zeroing the [K, H, W] result
        filled = (labels >= 0).reshape(-1, 1, 1).to(preds.dtype)
        probs = preds[:, 0].sigmoid() * filled
        pasted = paste_masks(probs, boxes.reshape(-1, 4), height, width)
        return pasted.reshape(batch, count, height, width)

    def forward(self, images: Tensor, img_shape: Optional[Tensor] = None
                ) -> Tuple[Tensor, ...]:
        """`img_shape`: ``[N, 2]`` ``(h, w)`` of each resized image before
        padding, where mmdet clamps proposals and boxes; None: the whole
        input."""
        # traced sizes in the export: the graph follows the input's shape
        height, width = images.shape[2], images.shape[3]
        max_shape = (height, width) if img_shape is None else img_shape
        feats = self.detector.extract_feat(self.normalizer(images))
        proposals, valid = self.proposals(feats, max_shape)
        dets, labels = self.detections(feats, proposals, valid, max_shape)
        if not self.with_masks:
            return dets, labels
        return dets, labels, self.masks(feats, dets, labels, height, width)
