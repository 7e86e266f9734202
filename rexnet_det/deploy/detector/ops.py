"""Post-processing ops that run the same in PyTorch and in an ONNX graph.

Every function here is written with ops the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``) maps onto standard ONNX ops, so
the exported graph needs no custom-op library. The one op with no PyTorch
counterpart, ONNX ``NonMaxSuppression``, is an autograd function whose
eager forward runs mmcv's compiled ``nms`` and whose ``symbolic`` emits the
ONNX node: calling the wrapper in PyTorch and running its export give the
same detections.

Nothing here knows about a particular head, so two-stage detectors can use
the same pieces for their RPN and their final boxes:

* :class:`InputNormalizer` - RGB 0-255 in, the network's normalised input
  out (mean/std and channel order of mmdet's ``DetDataPreprocessor``);
* :func:`select_candidates` - score threshold and ``nms_pre`` over the
  (prior, class) pairs of one level, as mmdet's
  ``filter_scores_and_topk``;
* :func:`batched_nms_fixed` - per-class NMS (mmcv's class-offset trick) and
  top-``max_per_img`` into a fixed number of slots;
* :func:`grid_anchors` - an anchor generator's priors of one level,
  computed from the feature map's shape, so that the exported graph takes
  any input size (``Shape`` / ``Range`` instead of baked constants).

Sizes read from ``tensor.shape`` are traced values during the export:
nothing here turns them into Python ints, so the graph follows the input.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

#: Label of an empty output slot (its box and score are 0).
EMPTY_LABEL = -1
#: An int, or during the export a traced size (``tensor.shape[i]``).
Size = Union[int, Tensor]
#: Where boxes are clamped: ``(H, W)`` of every image, or a ``[B, 2]``
#: tensor of each image's ``(h, w)`` (mmdet's ``img_shape``: the resized
#: image without its padding).
MaxShape = Union[Tuple[Size, Size], Tensor]


def clamp_limit(max_shape: MaxShape, boxes: Tensor) -> Tensor:
    """``(w, h, w, h)`` upper bounds that broadcast against ``[B, ..., 4]``
    `boxes` (see :data:`MaxShape`)."""
    if isinstance(max_shape, Tensor) and max_shape.dim() == 2:
        wh = max_shape.to(boxes).flip(-1)
        limit = torch.cat([wh, wh], -1)
        for _ in range(boxes.dim() - 2):
            limit = limit.unsqueeze(1)
        return limit
    height, width = (torch.as_tensor(s).to(boxes) for s in max_shape)
    return torch.stack([width, height, width, height])


def grid_anchors(base_anchors: Tensor, feat: Tensor,
                 stride: Tuple[float, float]) -> Tensor:
    """``[h * w * A, 4]`` anchors of a ``[B, C, h, w]`` feature map.

    The same ops in the same order as mmdet 3.3.0's
    ``AnchorGenerator.single_level_grid_priors`` (float ``arange`` times
    the stride, added to the level's base anchors, row-major), so the
    anchors are bit-identical; only the sizes come from ``feat.shape``,
    which the exporter turns into ``Shape`` / ``Range`` ops.

    Args:
        base_anchors (Tensor): ``[A, 4]`` anchors at the first cell (the
            generator's ``base_anchors[level]``).
        feat (Tensor): The level's feature map.
        stride (tuple[float, float]): ``(stride_w, stride_h)``.
    """
    base = base_anchors.to(device=feat.device, dtype=feat.dtype)
    shift_x = torch.arange(feat.shape[3], device=feat.device).to(
        feat.dtype) * stride[0]
    shift_y = torch.arange(feat.shape[2], device=feat.device).to(
        feat.dtype) * stride[1]
    rows, cols = shift_y.shape[0], shift_x.shape[0]
    xx = shift_x[None, :].expand(rows, cols).reshape(-1)
    yy = shift_y[:, None].expand(rows, cols).reshape(-1)
    shifts = torch.stack([xx, yy, xx, yy], dim=-1)
    return (base[None, :, :] + shifts[:, None, :]).reshape(-1, 4)


def level_anchors(generator: nn.Module, feats: Sequence[Tensor]
                  ) -> list:
    """:func:`grid_anchors` of every level of an mmdet ``AnchorGenerator``
    (``SSDAnchorGenerator`` too) for these feature maps."""
    return [grid_anchors(generator.base_anchors[i], feat,
                         generator.strides[i])
            for i, feat in enumerate(feats)]


class InputNormalizer(nn.Module):
    """``(x - mean) / std`` on an RGB 0-255 batch, in the model's channel
    order.

    Args:
        mean (Sequence[float]): Per-channel mean, in the order the network
            sees (as in the config's ``data_preprocessor``).
        std (Sequence[float]): Per-channel std, same order.
        network_bgr (bool): The network expects BGR (a config with neither
            ``bgr_to_rgb`` nor ``rgb_to_bgr``, as images load as BGR); the
            RGB input is flipped first. Default: False.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 network_bgr: bool = False) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f'mean and std need 3 values, got mean={mean}, '
                             f'std={std}')
        self.network_bgr = network_bgr
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1),
                             persistent=False)

    @classmethod
    def from_preprocessor(cls, pre: nn.Module) -> 'InputNormalizer':
        """The normalisation of an mmdet ``DetDataPreprocessor``. It flips
        loaded (BGR) images when bgr_to_rgb (or rgb_to_bgr) is set; without
        a flip the network sees BGR."""
        on = pre._enable_normalize
        return cls(pre.mean.flatten().tolist() if on else [0., 0., 0.],
                   pre.std.flatten().tolist() if on else [1., 1., 1.],
                   network_bgr=not pre._channel_conversion)

    def forward(self, x: Tensor) -> Tensor:
        if self.network_bgr:
            x = x.flip(1)
        # The same two ops, in the same order, as DetDataPreprocessor.
        return (x - self.mean) / self.std


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (opset >= 11) with a PyTorch forward."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: int,
                iou_threshold: float, score_threshold: float) -> Tensor:
        from mmcv.ops import nms
        selected = []
        for b in range(boxes.shape[0]):
            for c in range(scores.shape[1]):
                # mmcv's nms filters by score only for thresholds > 0
                candidates = (scores[b, c] > score_threshold).nonzero()[:, 0]
                _, keep = nms(boxes[b, candidates], scores[b, c, candidates],
                              iou_threshold, max_num=max_per_class)
                keep = candidates[keep]
                index = keep.new_tensor([b, c]).expand(len(keep), 2)
                selected.append(torch.cat([index, keep[:, None]], 1))
        return torch.cat(selected).long() if selected else \
            boxes.new_zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_threshold: float,
                 score_threshold: float):
        def const(value, dtype):
            return g.op('Constant', value_t=torch.tensor([value], dtype=dtype))

        return g.op('NonMaxSuppression', boxes, scores,
                    const(max_per_class, torch.long),
                    const(iou_threshold, torch.float),
                    const(score_threshold, torch.float),
                    center_point_box_i=0)


def non_max_suppression(boxes: Tensor, scores: Tensor, max_per_class: int,
                        iou_threshold: float,
                        score_threshold: float) -> Tensor:
    """ONNX ``NonMaxSuppression``; in eager mode mmcv's ``nms``.

    Args:
        boxes (Tensor): ``[B, N, 4]`` corners (x1, y1, x2, y2).
        scores (Tensor): ``[B, C, N]``.
        max_per_class (int): Most boxes kept per image and class.
        iou_threshold (float): A box is dropped when its IoU with a kept,
            higher-scoring box exceeds this.
        score_threshold (float): Boxes scoring at or below this are ignored.

    Returns:
        Tensor: ``[S, 3]`` int64 rows ``(batch, class, box)``, per batch and
        class in descending score order.
    """
    return _NonMaxSuppression.apply(boxes, scores, int(max_per_class),
                                    float(iou_threshold),
                                    float(score_threshold))


def select_candidates(scores: Tensor, score_thr: float, nms_pre: int,
                      stable: bool = False
                      ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``nms_pre`` best (prior, class) pairs above ``score_thr``.

    mmdet's ``filter_scores_and_topk`` per image: keep pairs scoring above
    ``score_thr``, then the ``nms_pre`` best of those. Here the ``nms_pre``
    best pairs are taken first (a fixed-size ``TopK``) and the ones at or
    below the threshold are marked invalid, which selects the same pairs.

    Args:
        scores (Tensor): ``[B, P, C]`` class scores of P priors.
        score_thr (float): Pairs must score above this.
        nms_pre (int): Pairs kept per image (<= 0: all).
        stable (bool): In PyTorch, order equal scores as mmdet's RPN
            does (a full ``scores.sort(descending=True)``, whose order of
            ties is the sort's own) instead of ``topk``; NMS resolves
            exact ties in this order. The exported graph uses ``TopK``
            either way (onnxruntime resolves ties its own way). Default:
            False.

    Returns:
        tuple: ``scores [B, K]`` (descending), ``prior_index [B, K]``,
        ``labels [B, K]`` (int64) and ``valid [B, K]`` (bool), with
        ``K = min(nms_pre, P * C)``.
    """
    num_classes = scores.shape[2]
    flat = scores.flatten(1)
    total = flat.shape[1]  # traced in the export: depends on the input
    if nms_pre <= 0:
        k = total
    elif isinstance(total, Tensor):
        k = total.clamp(max=int(nms_pre))
    else:
        k = min(int(nms_pre), total)
    if stable and not torch.onnx.is_in_onnx_export():
        top_scores, index = flat.sort(dim=1, descending=True)
        top_scores, index = top_scores[:, :k], index[:, :k]
    else:
        top_scores, index = flat.topk(k, dim=1)
    return (top_scores, torch.div(index, num_classes, rounding_mode='floor'),
            index % num_classes, top_scores > score_thr)


def batched_nms_fixed(boxes: Tensor, scores: Tensor, labels: Tensor,
                      valid: Tensor, iou_threshold: float, max_per_img: int
                      ) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-class NMS, then the ``max_per_img`` best, in fixed slots.

    As mmcv's ``batched_nms``: boxes of different classes are moved apart by
    ``label * (max coordinate + 1)`` (the maximum over the image's valid
    boxes, as mmdet computes it per image), so one NMS over all of them
    never lets classes suppress each other, and an image's result does not
    depend on the other images of its batch.

    Args:
        boxes (Tensor): ``[B, M, 4]`` candidate boxes.
        scores (Tensor): ``[B, M]`` their scores (> 0 where valid).
        labels (Tensor): ``[B, M]`` int64 class indices.
        valid (Tensor): ``[B, M]`` bool, candidates that take part.
        iou_threshold (float): NMS IoU threshold.
        max_per_img (int): Output slots K per image.

    Returns:
        tuple: ``dets [B, K, 5]`` (x1, y1, x2, y2, score), ``labels [B, K]``
        int64 and ``index [B, K]`` (the candidate in each slot, for heads
        that carry more per candidate; may point past M in empty slots).
        Slots are in descending score order; empty slots have box and
        score 0 and label :data:`EMPTY_LABEL`.
    """
    if max_per_img < 1:
        raise ValueError(f'max_per_img must be >= 1, got {max_per_img}')
    zero = torch.zeros_like(scores)
    max_coordinate = torch.where(valid[..., None], boxes,
                                 torch.zeros_like(boxes)).flatten(1).amax(1)
    offsets = labels.to(boxes.dtype) * (max_coordinate[:, None] + 1)
    boxes_for_nms = boxes + offsets[..., None]
    nms_scores = torch.where(valid, scores, zero - 1)
    selected = non_max_suppression(boxes_for_nms, nms_scores[:, None],
                                   max_per_img, iou_threshold, 0.0)
    batch_index, box_index = selected[:, 0], selected[:, 2]
    kept = zero.index_put((batch_index, box_index),
                          scores[batch_index, box_index])
    # M may be below max_per_img (it follows the input size in a dynamic
    # graph): K empty candidates make the TopK below always valid
    pad = max_per_img
    kept = torch.cat([kept, kept[:, :1].expand(-1, pad) * 0], 1)
    boxes = torch.cat([boxes, boxes[:, :1].expand(-1, pad, -1) * 0], 1)
    labels = torch.cat([labels, labels[:, :1].expand(-1, pad)], 1)
    top_scores, index = kept.topk(max_per_img, dim=1)
    filled = top_scores > 0
    top_boxes = boxes.gather(1, index[..., None].expand(-1, -1, 4))
    top_boxes = torch.where(filled[..., None], top_boxes,
                            torch.zeros_like(top_boxes))
    top_labels = torch.where(filled, labels.gather(1, index),
                             torch.full_like(index, EMPTY_LABEL))
    return torch.cat([top_boxes, top_scores[..., None]], 2), top_labels, index


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, k]]`` for ``x [B, N, D]`` and ``index [B, K]``."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def delta_xywh_decode(priors: Tensor, deltas: Tensor,
                      max_shape: Optional[MaxShape],
                      means: Sequence[float] = (0., 0., 0., 0.),
                      stds: Sequence[float] = (1., 1., 1., 1.),
                      wh_ratio_clip: float = 16 / 1000,
                      clip_border: bool = True, add_ctr_clamp: bool = False,
                      ctr_clamp: float = 32) -> Tensor:
    """mmdet's ``delta2bbox`` for ``[..., 4]`` tensors, without in-place ops.

    The same element-wise ops in the same order as mmdet 3.3.0's
    ``DeltaXYWHBBoxCoder.decode`` for one image, so the boxes agree bit for
    bit in PyTorch. (mmdet's own export branch imports the removed
    ``mmdet.core`` and cannot be traced.)

    Args:
        priors (Tensor): ``[..., 4]`` anchors (x1, y1, x2, y2).
        deltas (Tensor): ``[..., 4]`` regression outputs.
        max_shape (tuple | Tensor, optional): Where to clamp (see
            :data:`MaxShape`; with a tensor, `priors` and `deltas` are
            ``[B, ..., 4]``).
        means, stds, wh_ratio_clip, clip_border, add_ctr_clamp, ctr_clamp:
            As the coder's attributes.

    Returns:
        Tensor: ``[..., 4]`` boxes.
    """
    denorm = deltas * deltas.new_tensor(stds) + deltas.new_tensor(means)
    dxy, dwh = denorm[..., :2], denorm[..., 2:]
    pxy = (priors[..., :2] + priors[..., 2:]) * 0.5
    pwh = priors[..., 2:] - priors[..., :2]
    dxy_wh = pwh * dxy
    max_ratio = abs(math.log(wh_ratio_clip))
    if add_ctr_clamp:
        dxy_wh = dxy_wh.clamp(min=-ctr_clamp, max=ctr_clamp)
        dwh = dwh.clamp(max=max_ratio)
    else:
        dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], -1)
    if clip_border and max_shape is not None:
        limit = clamp_limit(max_shape, boxes)
        boxes = torch.minimum(boxes.clamp(min=0), limit)
    return boxes


def decode_with(coder: nn.Module, priors: Tensor, deltas: Tensor,
                max_shape: MaxShape) -> Tensor:
    """:func:`delta_xywh_decode` with a ``DeltaXYWHBBoxCoder``'s settings."""
    return delta_xywh_decode(
        priors, deltas, max_shape, coder.means, coder.stds,
        clip_border=coder.clip_border, add_ctr_clamp=coder.add_ctr_clamp,
        ctr_clamp=coder.ctr_clamp)


def decode_levels_and_nms(mlvl: Sequence[Tuple[Tensor, ...]],
                          coder: nn.Module, max_shape: MaxShape,
                          cfg: dict) -> Tuple[Tensor, Tensor]:
    """Concatenate per-level ``(scores, classes, valid, deltas, priors)``,
    decode, drop boxes not larger than ``cfg['min_bbox_size']`` (when
    >= 0) and run :func:`batched_nms_fixed` with ``classes`` as the NMS
    groups: mmdet's ``_bbox_post_process`` in fixed slots.

    Returns:
        tuple[Tensor, Tensor]: ``dets [B, K, 5]`` and the group of each
        slot ``[B, K]`` (-1 in empty slots).
    """
    scores, classes, valid, deltas, priors = (torch.cat(x, 1)
                                              for x in zip(*mlvl))
    boxes = decode_with(coder, priors, deltas, max_shape)
    if cfg['min_bbox_size'] >= 0:
        size = cfg['min_bbox_size']
        wh = boxes[..., 2:] - boxes[..., :2]
        valid = valid & (wh[..., 0] > size) & (wh[..., 1] > size)
    dets, groups, _ = batched_nms_fixed(boxes, scores, classes, valid,
                                        cfg['iou_threshold'],
                                        cfg['max_per_img'])
    return dets, groups
