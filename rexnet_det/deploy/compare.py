"""Comparing a deployed form of a model with the original: tensors
(:func:`max_relative_error`) and detections (:func:`match_detections`,
:func:`same_score_multiset`)."""
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

    Detections whose score another detection of the same image (same side)
    shares to within the tie tolerance are *tied*: among them, the order
    (and so what survives NMS and the ``max_per_img`` cut) is arbitrary and
    differs between CPUs and runtimes. ``untied_fraction`` measures parity
    on the others only; ``fraction`` counts everything.

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
        untied (int): Untied detections, both sides together.
        untied_missed (int): Untied detections (either side) left without
            a partner.
    """
    matched: int = 0
    reference: int = 0
    candidate: int = 0
    worst_box_diff: float = 0.0
    worst_score_diff: float = 0.0
    mask_pairs: int = 0
    worst_mask_iou: float = 1.0
    untied: int = 0
    untied_missed: int = 0

    @property
    def fraction(self) -> float:
        """matched / max(reference, candidate): 1 only if both sets pair
        up completely (1 for two empty sets)."""
        total = max(self.reference, self.candidate)
        return self.matched / total if total else 1.0

    @property
    def untied_fraction(self) -> float:
        """Share of the untied detections (both sides) that found a
        partner: the parity figure that does not depend on tie order
        (1 if there are none; check ``untied`` as well)."""
        return 1 - self.untied_missed / self.untied if self.untied else 1.0

    def __add__(self, other: 'DetectionMatch') -> 'DetectionMatch':
        return DetectionMatch(
            self.matched + other.matched, self.reference + other.reference,
            self.candidate + other.candidate,
            max(self.worst_box_diff, other.worst_box_diff),
            max(self.worst_score_diff, other.worst_score_diff),
            self.mask_pairs + other.mask_pairs,
            min(self.worst_mask_iou, other.worst_mask_iou),
            self.untied + other.untied,
            self.untied_missed + other.untied_missed)


def untied_mask(scores: np.ndarray, tol: float) -> np.ndarray:
    """Boolean mask of the scores that no other score comes within `tol`
    of (``|a - b| <= tol`` is a tie)."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    order = np.argsort(scores, kind='stable')
    close = np.diff(scores[order]) <= tol
    tied = np.zeros(len(scores), bool)
    tied[:-1] |= close
    tied[1:] |= close
    out = np.empty(len(scores), bool)
    out[order] = ~tied
    return out


def same_score_multiset(reference: np.ndarray, candidate: np.ndarray,
                        tol: float) -> bool:
    """Whether two score sets are equal as multisets, each value to within
    `tol` (the same number of detections at every score, whichever boxes
    carry them)."""
    reference = np.sort(np.asarray(reference, np.float64).reshape(-1))
    candidate = np.sort(np.asarray(candidate, np.float64).reshape(-1))
    return len(reference) == len(candidate) and bool(
        np.all(np.abs(reference - candidate) <= tol))


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
                     masks: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                     tie_tol: Optional[float] = None) -> DetectionMatch:
    """Pair up two detection sets of one image.

    Reference detections are taken in descending score order; each pairs
    with the unused candidate of the same label whose score is within
    `score_tol` and whose IoU is highest, if that IoU >= `iou_thr`. No
    position is compared, so detections of equal score pair up whatever
    their order.

    Args:
        reference, candidate (tuple): ``(bboxes [n, 4], scores [n],
            labels [n])`` arrays (numpy or torch).
        iou_thr (float): Minimum IoU of a pair. Default: 0.98.
        score_tol (float): Largest score difference of a pair.
            Default: 2e-3.
        masks (tuple, optional): ``(reference [n, h, w], candidate
            [m, h, w])`` boolean masks, one per detection; the mask IoU of
            every matched pair is then measured (``mask_pairs``,
            ``worst_mask_iou``).
        tie_tol (float, optional): Scores this close count as tied
            (``untied``). Default: `score_tol`, the precision the scores
            are claimed to agree to.

    Returns:
        DetectionMatch: Counts and worst differences.

    Raises:
        ValueError: Boxes, scores, labels or masks of one side differ in
            number.
    """
    from mmdet.structures.bbox import bbox_overlaps
    ref_boxes, ref_scores, ref_labels = (np.asarray(x) for x in reference)
    cand_boxes, cand_scores, cand_labels = (np.asarray(x) for x in candidate)
    sides = [('reference', ref_boxes, ref_scores, ref_labels),
             ('candidate', cand_boxes, cand_scores, cand_labels)]
    for k, (side, *arrays) in enumerate(sides):
        counts = [len(a) for a in arrays]
        if masks is not None:
            counts.append(len(masks[k]))
        if len(set(counts)) != 1:
            raise ValueError(f'{side}: boxes, scores, labels'
                             f'{", masks" if masks is not None else ""} '
                             f'differ in number: {counts}')
    tie_tol = score_tol if tie_tol is None else tie_tol
    ref_untied = untied_mask(ref_scores, tie_tol)
    cand_untied = untied_mask(cand_scores, tie_tol)
    result = DetectionMatch(reference=len(ref_scores),
                            candidate=len(cand_scores),
                            untied=int(ref_untied.sum() + cand_untied.sum()))
    result.untied_missed = result.untied
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
        result.untied_missed -= int(ref_untied[i]) + int(cand_untied[j])
        result.worst_box_diff = max(result.worst_box_diff, float(
            np.abs(ref_boxes[i] - cand_boxes[j]).max()))
        result.worst_score_diff = max(result.worst_score_diff,
                                      float(score_diff[i, j]))
        if masks is not None:
            result.mask_pairs += 1
            result.worst_mask_iou = min(result.worst_mask_iou, mask_iou(
                np.asarray(masks[0][i]), np.asarray(masks[1][j])))
    return result
