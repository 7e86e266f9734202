"""Random detector weights under which post-processing does real work.

A freshly initialised SSD head scores every class ~1/81 (below
``score_thr``): NMS then sees no candidate, which makes post-processing
look free and leaves detection parity untested. :func:`busy_weights`
gives BatchNorm the statistics of random images (so features neither vanish
nor explode) and rescales the head's final convs so that class logits and
box deltas have a chosen spread: every level then fills ``nms_pre`` and
every image ``max_per_img``, as a trained detector at a low ``score_thr``
does. Scores are spread out, so ties (which make NMS order arbitrary) are
rare.
"""
from typing import Dict, List

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def _head_outputs(head: nn.Module, feats) -> List[Dict[nn.Conv2d,
                                                    List[torch.Tensor]]]:
    """Per output kind (class logits, box deltas): the convs that produce
    the head's outputs and what each produced (RetinaNet shares one conv
    over all levels)."""
    produced = {}
    hooks = [m.register_forward_hook(
        lambda mod, _, out: produced.__setitem__(id(out), mod))
        for m in head.modules() if isinstance(m, nn.Conv2d)]
    try:
        outputs = head(feats)
    finally:
        for hook in hooks:
            hook.remove()
    kinds = []
    for level_outputs in outputs:
        by_conv: Dict[nn.Conv2d, List[torch.Tensor]] = {}
        for out in level_outputs:
            by_conv.setdefault(produced[id(out)], []).append(out.flatten())
        kinds.append(by_conv)
    return kinds


@torch.no_grad()
def busy_weights(detector: nn.Module, height: int, width: int,
                 seed: int = 0, logit_std: float = 1.0,
                 logit_mean: float = -3.0, delta_std: float = 0.5
                 ) -> nn.Module:
    """Make `detector`'s random weights produce many spread-out detections.

    Args:
        detector (nn.Module): An mmdet single-stage detector (changed in
            place and returned in eval mode).
        height, width (int): Input size of the calibration images.
        seed (int): Seed of the random images. Default: 0.
        logit_std, logit_mean (float): Spread and centre of the class
            logits. Default: 1, -3.
        delta_std (float): Spread of the box deltas. Default: 0.5.

    Returns:
        nn.Module: `detector`.
    """
    gen = torch.Generator().manual_seed(seed)
    pre = detector.data_preprocessor
    # uniform-noise pixels, normalised as the detector's preprocessor does
    images = (torch.rand(2, 3, height, width, generator=gen) * 255 -
              pre.mean.view(1, 3, 1, 1)) / pre.std.view(1, 3, 1, 1)
    detector.eval()
    norms = [m for m in detector.modules() if isinstance(m, _BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:  # cumulative statistics of the random batch
        bn.reset_running_stats()
        bn.momentum, bn.training = None, True
    detector.bbox_head(detector.extract_feat(images))
    for bn, momentum in zip(norms, momenta):
        bn.momentum, bn.training = momentum, False
    targets = ((logit_std, logit_mean), (delta_std, 0.0))
    for by_conv, (std, mean) in zip(
            _head_outputs(detector.bbox_head, detector.extract_feat(images)),
            targets):
        for conv, outs in by_conv.items():
            values = torch.cat(outs)
            scale = std / float(values.std().clamp_min(1e-12))
            conv.weight.mul_(scale)
            if conv.bias is not None:
                conv.bias.mul_(scale).add_(mean -
                                           float(values.mean()) * scale)
    return detector.eval()


def _rescale(layer: nn.Module, outputs: torch.Tensor, std: float,
             mean: float) -> None:
    """Scale `layer` (conv / linear) so that `outputs` get `std` and
    `mean`."""
    scale = std / float(outputs.std().clamp_min(1e-12))
    layer.weight.mul_(scale)
    if layer.bias is not None:
        layer.bias.mul_(scale).add_(mean - float(outputs.mean()) * scale)


@torch.no_grad()
def busy_two_stage_weights(detector: nn.Module, height: int, width: int,
                           seed: int = 0) -> nn.Module:
    """:func:`busy_weights` for Faster / Mask R-CNN: BatchNorm statistics
    of random images, RPN objectness logits spread (std 1, mean -1) so
    proposals fill ``max_per_img``, box-head class logits spread (std 2)
    so that many (RoI, class) pairs pass ``score_thr``, and mask logits
    spread (std 3) so few mask pixels sit at the 0.5 threshold.

    Args:
        detector (nn.Module): An mmdet ``TwoStageDetector`` (changed in
            place and returned in eval mode).
        height, width (int): Input size of the calibration images.
        seed (int): Seed of the random images. Default: 0.

    Returns:
        nn.Module: `detector`.
    """
    from rexnet_det.deploy.detector.two_stage import TwoStageExport
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, height, width, generator=gen) * 255
    wrapper = TwoStageExport(detector.eval(), with_masks=False)
    inputs = wrapper.normalizer(images)
    norms = [m for m in detector.modules() if isinstance(m, _BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:  # cumulative statistics of the random batch
        bn.reset_running_stats()
        bn.momentum, bn.training = None, True
    detector.extract_feat(inputs)
    inputs = inputs[:1]
    for bn, momentum in zip(norms, momenta):
        bn.momentum, bn.training = momentum, False
    feats = detector.extract_feat(inputs)
    rpn = detector.rpn_head
    cls_scores, bbox_preds = rpn(feats)
    _rescale(rpn.rpn_cls, torch.cat([c.flatten() for c in cls_scores]), 1.0,
             -1.0)
    _rescale(rpn.rpn_reg, torch.cat([b.flatten() for b in bbox_preds]), 0.2,
             0.0)
    proposals, _ = wrapper.proposals(feats, (height, width))
    roi = detector.roi_head
    head = roi.bbox_head
    cls_score, bbox_pred = head(wrapper.roi_features(
        roi.bbox_roi_extractor, feats, proposals))
    _rescale(head.fc_cls, cls_score, 2.0, 0.0)
    _rescale(head.fc_reg, bbox_pred, 0.5, 0.0)
    if roi.with_mask:
        preds = roi.mask_head(wrapper.roi_features(roi.mask_roi_extractor,
                                                   feats, proposals))
        _rescale(roi.mask_head.conv_logits, preds, 3.0, 0.0)
    return detector.eval()
