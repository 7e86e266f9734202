"""RoI ops of two-stage detectors that run the same in PyTorch and ONNX.

* :func:`roi_align` - an autograd function whose eager forward is mmcv's
  compiled ``roi_align`` and whose ``symbolic`` emits the standard ONNX
  ``RoiAlign`` (opset >= 16: ``coordinate_transformation_mode`` is
  ``half_pixel`` for mmcv's ``aligned=True``, ``output_half_pixel`` for
  ``aligned=False``). mmcv 2.1.0's own symbolic calls a helper torch 2.13
  no longer has, so it cannot be used.
* :func:`map_roi_levels` / :func:`multi_level_roi_align` - mmdet's
  ``SingleRoIExtractor``: each RoI is pooled from one FPN level chosen by
  its scale (``finest_scale``), exported with ``NonZero`` / ``Gather`` /
  ``ScatterND`` so that every RoI is pooled once, from its own level.
* :func:`paste_masks` - mmdet's ``_do_paste_mask``: ``grid_sample``
  (bilinear, zero padding, ``align_corners=False``) of each RoI mask into
  the whole image, computed as two separable interpolation ``MatMul``.
"""
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

#: ONNX opset that has RoiAlign's coordinate_transformation_mode.
MIN_OPSET_TWO_STAGE = 16


class _RoIAlign(torch.autograd.Function):
    """ONNX ``RoiAlign`` (avg mode) with mmcv's ``roi_align`` as forward."""

    @staticmethod
    def forward(ctx, feats: Tensor, boxes: Tensor, batch_index: Tensor,
                output_size: Tuple[int, int], spatial_scale: float,
                sampling_ratio: int, aligned: bool) -> Tensor:
        from mmcv.ops import roi_align as mmcv_roi_align
        rois = torch.cat([batch_index.to(boxes.dtype)[:, None], boxes], 1)
        return mmcv_roi_align(feats, rois, output_size, spatial_scale,
                              sampling_ratio, 'avg', aligned)

    @staticmethod
    def symbolic(g, feats, boxes, batch_index, output_size: Tuple[int, int],
                 spatial_scale: float, sampling_ratio: int, aligned: bool):
        mode = 'half_pixel' if aligned else 'output_half_pixel'
        return g.op('RoiAlign', feats, boxes, batch_index,
                    coordinate_transformation_mode_s=mode, mode_s='avg',
                    output_height_i=int(output_size[0]),
                    output_width_i=int(output_size[1]),
                    sampling_ratio_i=int(sampling_ratio),
                    spatial_scale_f=float(spatial_scale))


def roi_align(feats: Tensor, boxes: Tensor, batch_index: Tensor,
              output_size: Tuple[int, int], spatial_scale: float,
              sampling_ratio: int = 0, aligned: bool = True) -> Tensor:
    """mmcv's ``RoIAlign`` (``pool_mode='avg'``); ONNX ``RoiAlign``.

    Args:
        feats (Tensor): ``[B, C, h, w]`` feature map.
        boxes (Tensor): ``[R, 4]`` RoIs (x1, y1, x2, y2) in input pixels.
        batch_index (Tensor): ``[R]`` int64 image of each RoI.
        output_size (tuple[int, int]): ``(h, w)`` of the pooled features.
        spatial_scale (float): Feature pixels per input pixel
            (1 / stride).
        sampling_ratio (int): Samples per bin side (0: adaptive,
            ``ceil(roi size / output size)``). Default: 0.
        aligned (bool): Shift by half a pixel (mmcv ``aligned=True``,
            ONNX ``half_pixel``). Default: True.

    Returns:
        Tensor: ``[R, C, output_size[0], output_size[1]]``.
    """
    if len(output_size) != 2:
        raise ValueError(f'output_size must be (h, w), got {output_size}')
    return _RoIAlign.apply(feats, boxes, batch_index.long(),
                           (int(output_size[0]), int(output_size[1])),
                           float(spatial_scale), int(sampling_ratio),
                           bool(aligned))


def map_roi_levels(boxes: Tensor, num_levels: int,
                   finest_scale: float = 56) -> Tensor:
    """mmdet's ``SingleRoIExtractor.map_roi_levels``: the FPN level of each
    RoI, ``floor(log2(sqrt(w * h) / finest_scale + 1e-6))`` clamped to
    ``[0, num_levels - 1]`` (int64)."""
    scale = torch.sqrt((boxes[:, 3] - boxes[:, 1]) *
                       (boxes[:, 2] - boxes[:, 0]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def multi_level_roi_align(feats: Sequence[Tensor], boxes: Tensor,
                          batch_index: Tensor, output_size: Tuple[int, int],
                          strides: Sequence[float], sampling_ratio: int,
                          aligned: bool, finest_scale: float) -> Tensor:
    """mmdet's ``SingleRoIExtractor.forward`` (no ``roi_scale_factor``, no
    ``gc_context``): every RoI pooled from the level
    :func:`map_roi_levels` picks for it.

    Args:
        feats (Sequence[Tensor]): Feature maps, finest first (as many as
            `strides`).
        boxes (Tensor): ``[R, 4]`` RoIs in input pixels.
        batch_index (Tensor): ``[R]`` int64 image of each RoI.
        output_size, sampling_ratio, aligned: Of the RoIAlign layers.
        strides (Sequence[float]): Stride of each level.
        finest_scale (float): Scale of level 0.

    Returns:
        Tensor: ``[R, C, *output_size]``.
    """
    if len(feats) != len(strides):
        raise ValueError(f'got {len(feats)} feature maps for {len(strides)} '
                         f'strides {list(strides)}')
    levels = map_roi_levels(boxes, len(feats), finest_scale)
    out = feats[0].new_zeros((boxes.shape[0], feats[0].shape[1]) +
                             tuple(output_size))
    for level, (feat, stride) in enumerate(zip(feats, strides)):
        index = (levels == level).nonzero()[:, 0]
        pooled = roi_align(feat, boxes[index], batch_index[index],
                           output_size, 1.0 / stride, sampling_ratio,
                           aligned)
        out = out.index_put((index, ), pooled)
    return out


def paste_masks(masks: Tensor, boxes: Tensor, height: Union[int, Tensor],
                width: Union[int, Tensor]) -> Tensor:
    """Paste RoI mask probabilities into ``height x width`` images.

    mmdet 3.3.0's ``_do_paste_mask``: pixel centre ``p + 0.5`` maps to
    ``g = (p + 0.5 - x1) / (x2 - x1) * 2 - 1`` in the mask, which
    ``grid_sample`` (bilinear, zero padding, ``align_corners=False``)
    samples at mask coordinate ``u = ((g + 1) * w - 1) / 2``. The grid is
    separable (x depends only on the column, y only on the row), so the
    same bilinear interpolation is ``Wy @ mask @ Wx^T`` with tent weights
    ``max(0, 1 - |u - j|)`` (zero outside the mask: zero padding): two
    ``MatMul`` per image instead of a ``[R, H, W, 2]`` sampling grid,
    which at 800 x 1344 with 100 boxes would be 860 MB. Values agree with
    ``grid_sample`` to float rounding.

    mmdet pastes on the CPU only into the box grown by one pixel
    (``skip_empty``); outside the box every pasted value is below half
    the mask's border value, so thresholds >= 0.5 give the same binary
    masks. A zero-width or -height box maps to coordinate 0, as mmdet's
    ``inf`` replacement does.

    Args:
        masks (Tensor): ``[R, h, w]`` probabilities.
        boxes (Tensor): ``[R, 4]`` boxes in image pixels.
        height (int | Tensor): Image height (a traced size in the export:
            the graph then pastes into inputs of any size).
        width (int | Tensor): Image width.

    Returns:
        Tensor: ``[R, height, width]`` float32 probabilities.
    """
    masks = masks.float()
    x1, y1, x2, y2 = boxes.float().unbind(1)

    def weights(size, low: Tensor, high: Tensor, cells: int) -> Tensor:
        """``[R, size, cells]`` interpolation weights along one axis."""
        centres = torch.arange(size, dtype=torch.float32,
                               device=masks.device) + 0.5
        span = (high - low)[:, None]
        grid = (centres[None] - low[:, None]) / span * 2 - 1
        grid = torch.where(span == 0, torch.zeros_like(grid), grid)
        coord = ((grid + 1) * cells - 1) / 2  # grid_sample's unnormalise
        index = torch.arange(cells, dtype=torch.float32,
                             device=masks.device)
        return (1 - (coord[..., None] - index).abs()).clamp(min=0)

    rows = weights(height, y1, y2, masks.shape[1])  # [R, H, h]
    cols = weights(width, x1, x2, masks.shape[2])  # [R, W, w]
    return torch.matmul(torch.matmul(rows, masks), cols.transpose(1, 2))
