"""Comparing a deployed form of a model with the original: tensors
(:func:`max_relative_error`) and detections (:func:`match_detections`)."""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

Outputs = Union[torch.Tensor, Sequence[torch.Tensor]]


def _as_tuple(outputs: Outputs) -> Tuple[torch.Tensor, ...]:
    return (outputs, ) if isinstance(outputs, torch.Tensor) else \
        tuple(outputs)


def max_relative_error(actual: Outputs, expected: Outputs) -> float:
    """max |a - e| / max |e| per output, then the worst over all outputs.

    A tensor-level relative error: it stays meaningful where single values
    cross zero. Raises ValueError if the numbers of outputs differ.
    """
    actual, expected = _as_tuple(actual), _as_tuple(expected)
    if len(actual) != len(expected) or not expected:
        raise ValueError(f'got {len(actual)} outputs, expected '
                         f'{len(expected)}')
    return max(float((a - e).abs().max() / e.abs().max().clamp_min(1e-12))
               for a, e in zip(actual, expected))


@dataclass
class DetectionMatch:
    """How well one set of detections reproduces a reference set.

    Attributes:
        matched (int): Pairs with the same label, IoU >= the threshold and
            scores within the tolerance (each detection used once).
        reference (int): Detections in the reference.
        candidate (int): Detections in the set under test.
        worst_box_diff (float): Largest coordinate difference (pixels) over
            matched pairs; 0 if none.
        worst_score_diff (float): Largest score difference over matched
            pairs; 0 if none.
        mask_pairs (int): Matched pairs whose masks were compared.
        worst_mask_iou (float): Smallest mask IoU over those pairs; 1 if
            none.
    """
    matched: int = 0
    reference: int = 0
    candidate: int = 0
    worst_box_diff: float = 0.0
    worst_score_diff: float = 0.0
    mask_pairs: int = 0
    worst_mask_iou: float = 1.0

    @property
    def fraction(self) -> float:
        """matched / max(reference, candidate): 1 only if both sets pair
        up completely (1 for two empty sets)."""
        total = max(self.reference, self.candidate)
        return self.matched / total if total else 1.0

    def __add__(self, other: 'DetectionMatch') -> 'DetectionMatch':
        return DetectionMatch(
            self.matched + other.matched, self.reference + other.reference,
            self.candidate + other.candidate,
            max(self.worst_box_diff, other.worst_box_diff),
            max(self.worst_score_diff, other.worst_score_diff),
            self.mask_pairs + other.mask_pairs,
            min(self.worst_mask_iou, other.worst_mask_iou))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of one shape (1 for two empty masks)."""
    if a.shape != b.shape:
        raise ValueError(f'masks differ in shape: {a.shape} vs {b.shape}')
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def match_detections(reference: Tuple[np.ndarray, np.ndarray, np.ndarray],
                     candidate: Tuple[np.ndarray, np.ndarray, np.ndarray],
                     iou_thr: float = 0.98,
                     score_tol: float = 2e-3,
                     masks: Optional[Tuple[np.ndarray, np.ndarray]] = None
                     ) -> DetectionMatch:
    """Pair up two detection sets of one image.

    Reference detections are taken in descending score order; each pairs
    with the unused candidate of the same label whose score is within
    `score_tol` and whose IoU is highest, if that IoU >= `iou_thr`.

    Args:
        reference, candidate (tuple): ``(bboxes [n, 4], scores [n],
            labels [n])`` arrays (numpy or torch).
        iou_thr (float): Minimum IoU of a pair. Default: 0.98.
        score_tol (float): Largest score difference of a pair.
            Default: 2e-3.
        masks (tuple, optional): ``(reference [n, h, w], candidate
            [m, h, w])`` boolean masks; the mask IoU of every matched pair
            is then measured (``mask_pairs``, ``worst_mask_iou``).

    Returns:
        DetectionMatch: Counts and worst differences.
    """
    from mmdet.structures.bbox import bbox_overlaps
    ref_boxes, ref_scores, ref_labels = (np.asarray(x) for x in reference)
    cand_boxes, cand_scores, cand_labels = (np.asarray(x) for x in candidate)
    result = DetectionMatch(reference=len(ref_scores),
                            candidate=len(cand_scores))
    if not len(ref_scores) or not len(cand_scores):
        return result
    ious = bbox_overlaps(torch.from_numpy(ref_boxes.astype(np.float64)),
                         torch.from_numpy(cand_boxes.astype(np.float64))
                         ).numpy()
    score_diff = np.abs(ref_scores[:, None].astype(np.float64) -
                        cand_scores[None].astype(np.float64))
    ok = ((ref_labels[:, None] == cand_labels[None]) & (ious >= iou_thr)
          & (score_diff <= score_tol))
    used = np.zeros(len(cand_scores), bool)
    for i in np.argsort(-ref_scores, kind='stable'):
        options = np.flatnonzero(ok[i] & ~used)
        if not len(options):
            continue
        j = options[np.argmax(ious[i, options])]
        used[j] = True
        result.matched += 1
        result.worst_box_diff = max(result.worst_box_diff, float(
            np.abs(ref_boxes[i] - cand_boxes[j]).max()))
        result.worst_score_diff = max(result.worst_score_diff,
                                      float(score_diff[i, j]))
        if masks is not None:
            result.mask_pairs += 1
            result.worst_mask_iou = min(result.worst_mask_iou, mask_iou(
                np.asarray(masks[0][i]), np.asarray(masks[1][j])))
    return result
