"""Check an exported detector against mmdet's own inference.

:func:`verify_detector` runs mmdet's ``inference_detector`` (the config's
test pipeline, the model's ``predict``) and :class:`DeployedDetector` on
every image of a COCO-format set and reports how many detections pair up
(same label, IoU >= 0.98, score within 2e-3), the worst box difference in
pixels, the COCO bbox mAP of both and, for models with masks, the worst
mask IoU of the pairs and the segm mAP of both.

:class:`ParityThresholds` states when the file passes
(:meth:`VerifyReport.failures`): at least 99% of the *untied* detections
pair up (those whose score no other detection of the image shares to within
2e-3; among tied ones the order, and so what survives NMS and the
``max_per_img`` cut, is arbitrary and differs between CPUs), and the bbox
(and segm) mAP of the untied detections differ by at most 2% of PyTorch's,
a tolerance relative to the signal. The mAP of all detections is reported
next to it; on a model that scores many detections alike it moves with the
tie order (by 15% on a barely trained Mask R-CNN between an AVX2 and an
AVX-512 CPU), so it is not what the file is judged by.
"""
import copy
import json
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

from mmengine.config import Config

from ...evaluation import evaluate_coco
from ..compare import DetectionMatch, match_detections, untied_mask
from .export import build_detector, check_exportable_config, load_config
from .runtime import DeployedDetector, Detections

IOU_THR = 0.98
SCORE_TOL = 2e-3
#: Detections at or above this score are "confident" (``infer.py``'s
#: default display threshold); the report pairs them up separately.
CONFIDENT_SCORE = 0.3


@dataclass(frozen=True)
class ParityThresholds:
    """When a deployed file counts as reproducing PyTorch.

    Attributes:
        min_untied_matched (float): Least share of the untied detections
            (both sides) that must pair up. Default: 0.99.
        map_rel_tol (float): Largest ``|mAP deployed - mAP PyTorch|`` of
            the untied detections as a share of PyTorch's, for bbox and
            (with masks) segm. Default: 0.02.
    """
    min_untied_matched: float = 0.99
    map_rel_tol: float = 0.02

    def __post_init__(self) -> None:
        for name in ('min_untied_matched', 'map_rel_tol'):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f'{name} must be in [0, 1], got {value!r}')

    def describe(self) -> str:
        return (f'>= {self.min_untied_matched:.0%} of untied detections '
                f'matched (no other detection of the image scores within '
                f'{SCORE_TOL:g}), |mAP difference| of untied detections '
                f'<= {self.map_rel_tol:.0%} of PyTorch\'s')


@dataclass
class VerifyReport:
    """Deployed vs PyTorch on one image set.

    Attributes:
        images (int): Images compared.
        match (DetectionMatch): Detection pairing over all images.
        map_reference (float): COCO bbox mAP of mmdet's inference.
        map_deployed (float): COCO bbox mAP of the deployed model.
        metrics (dict): All 12 COCO bbox metrics of both (``reference``
            and ``deployed``).
        segm_metrics (dict): The same for masks (empty without masks).
        seconds (dict): Wall time of ``reference`` (mmdet's
            ``inference_detector``) and ``deployed`` (``predict``) over all
            images, reading the file included.
        confident (DetectionMatch): The pairing of the confident, untied
            detections only (:func:`untied_only` above
            :data:`CONFIDENT_SCORE`): low-scoring ones
            can hinge on exact score ties upstream (an under-trained RPN
            scoring padding anchors alike), whose order each runtime
            resolves its own way.
        untied_map (dict): ``{'bbox' (and 'segm'): {'reference': AP,
            'deployed': AP}}`` of the untied detections only (each side's
            own ties left out), what :meth:`failures` judges.
    """
    images: int
    match: DetectionMatch
    map_reference: float
    map_deployed: float
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)
    segm_metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)
    confident: DetectionMatch = field(default_factory=DetectionMatch)
    untied_map: Dict[str, Dict[str, float]] = field(default_factory=dict)

    def failures(self, thresholds: ParityThresholds = ParityThresholds()
                 ) -> List[str]:
        """What misses `thresholds` (empty: the file passes)."""
        m, out = self.match, []
        if not m.untied:
            out.append(f'no untied detections to compare ({m.reference} '
                       f'PyTorch, {m.candidate} deployed): parity cannot be '
                       f'judged on these images')
        elif m.untied_fraction < thresholds.min_untied_matched:
            out.append(f'{m.untied_fraction:.1%} of {m.untied} untied '
                       f'detections matched < '
                       f'{thresholds.min_untied_matched:.0%}')
        for kind, maps in self.untied_map.items():
            ref, dep = maps['reference'], maps['deployed']
            if abs(dep - ref) > thresholds.map_rel_tol * ref:
                out.append(f'{kind} mAP of untied detections {dep:.4f} vs '
                           f'PyTorch {ref:.4f}: differs by more than '
                           f'{thresholds.map_rel_tol:.0%} of PyTorch\'s')
        return out

    @property
    def segm_map_reference(self) -> Optional[float]:
        """Segm mAP of mmdet's inference (None without masks)."""
        return self.segm_metrics.get('reference', {}).get('AP')

    @property
    def segm_map_deployed(self) -> Optional[float]:
        """Segm mAP of the deployed model (None without masks)."""
        return self.segm_metrics.get('deployed', {}).get('AP')

    def ms_per_image(self, which: str) -> float:
        """Milliseconds per image of ``'reference'`` or ``'deployed'``."""
        return self.seconds.get(which, 0.0) * 1e3 / max(self.images, 1)

    def summary(self) -> str:
        m = self.match
        return (f'{self.images} images: {m.matched}/'
                f'{max(m.reference, m.candidate)} detections matched '
                f'({m.fraction:.2%}; PyTorch {m.reference}, deployed '
                f'{m.candidate}; same label, IoU >= {IOU_THR}, score within '
                f'{SCORE_TOL:g}); {m.untied_fraction:.2%} of {m.untied} '
                f'untied detections matched; worst box difference '
                f'{m.worst_box_diff:.2g} px, worst score difference '
                f'{m.worst_score_diff:.2g}; bbox mAP PyTorch '
                f'{self.map_reference:.4f} vs deployed '
                f'{self.map_deployed:.4f} (diff '
                f'{self.map_deployed - self.map_reference:+.4f}; untied '
                f'only {self._untied("bbox")}); confident '
                f'(score >= {CONFIDENT_SCORE:g}), untied detections '
                f'{self.confident.matched}/'
                f'{max(self.confident.reference, self.confident.candidate)}'
                ' matched' + (
                    f'; worst mask IoU {m.worst_mask_iou:.4f} over '
                    f'{m.mask_pairs} pairs; segm mAP PyTorch '
                    f'{self.segm_map_reference:.4f} vs deployed '
                    f'{self.segm_map_deployed:.4f} (diff '
                    f'{self.segm_map_deployed - self.segm_map_reference:+.4f}'
                    f'; untied only {self._untied("segm")})'
                    if self.segm_metrics else ''))

    def _untied(self, kind: str) -> str:
        maps = self.untied_map.get(kind)
        return 'n/a' if maps is None else (
            f'{maps["reference"]:.4f} vs {maps["deployed"]:.4f}')


def _dataset_paths(cfg: Config) -> Tuple[str, str]:
    """(annotation file, image folder) of the config's test set."""
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    root = dataset.get('data_root', '') or ''
    prefix = (dataset.get('data_prefix') or {}).get('img', '')
    return osp.join(root, dataset.ann_file), osp.join(root, prefix)


def with_test_size(cfg: Config, size: Optional[List[int]]) -> Config:
    """A copy of `cfg` whose stretching test ``Resize`` goes to ``size``
    (H, W), for a stretch export at another size than the config's.
    Keep-ratio resizes are left alone."""
    from mmdet.utils import get_test_pipeline_cfg
    cfg = copy.deepcopy(cfg)
    if size is not None:
        for step in get_test_pipeline_cfg(cfg):
            if str(step.get('type', '')).endswith('Resize') and \
                    not step.get('keep_ratio', False):
                step['scale'] = (size[1], size[0])
    return cfg


def ready_for_inference(model, cfg: Config):
    """`model` (eval) ready for mmdet's ``inference_detector`` with `cfg`.

    mmdet 3.3.0's ``SSDHead`` has no ``loss_cls`` and crashes in
    ``predict``; it gets ``loss_cls = None`` (our ``SSDLiteHead``'s fix).
    """
    head = getattr(model, 'bbox_head', None)  # two-stage: roi_head
    if head is not None and not hasattr(head, 'loss_cls'):
        model.bbox_head.loss_cls = None
    model.cfg = cfg
    return model.eval()


def reference_model(cfg: Config, checkpoint: Optional[str],
                    size: Optional[List[int]] = None):
    """The PyTorch detector for ``inference_detector``, its test resize
    stretched to `size` if given (see :func:`with_test_size`)."""
    cfg = with_test_size(cfg, size)
    model, _ = build_detector(cfg, checkpoint)
    return ready_for_inference(model, cfg)


def coco_results(detections: List[Detections], image_ids: List[int],
                 cat_ids: List[int]) -> List[dict]:
    """COCO results entries (xywh boxes; RLE ``segmentation`` where the
    detections have masks) for evaluation."""
    import numpy as np
    from pycocotools import mask as mask_utils
    out = []
    for det, image_id in zip(detections, image_ids):
        for i, (box, score, label) in enumerate(zip(det.bboxes, det.scores,
                                                    det.labels)):
            x1, y1, x2, y2 = (float(v) for v in box)
            entry = dict(image_id=int(image_id),
                         category_id=int(cat_ids[int(label)]),
                         bbox=[x1, y1, x2 - x1, y2 - y1],
                         score=float(score))
            if det.masks is not None:
                rle = mask_utils.encode(np.asfortranarray(
                    det.masks[i].astype(np.uint8)))
                rle['counts'] = rle['counts'].decode()
                entry['segmentation'] = rle
            out.append(entry)
    return out


def _category_ids(ann: dict, classes: List[str], ann_file: str) -> List[int]:
    by_name = {c['name']: c['id'] for c in ann.get('categories', [])}
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise ValueError(f'{ann_file} has no categories named {missing} '
                         f'(the model\'s classes: {classes})')
    return [by_name[c] for c in classes]


def verify_detector(config: Union[str, Config], checkpoint: Optional[str],
                    model_path: str, ann_file: Optional[str] = None,
                    img_dir: Optional[str] = None, runtime: str = 'ort',
                    threads: int = 0, max_images: Optional[int] = None,
                    progress: Optional[Callable[[int, int], None]] = None
                    ) -> VerifyReport:
    """Compare `model_path` with mmdet's inference of `config` +
    `checkpoint` on a COCO-format image set.

    Args:
        config (str | Config): The config the file was exported from.
        checkpoint (str, optional): Its checkpoint (None: random weights,
            which will not match the file unless it was exported so too).
        model_path (str): The exported ``.onnx`` file.
        ann_file (str, optional): COCO annotations. Default: the config's
            test set.
        img_dir (str, optional): Folder of the images. Default: the
            config's test set.
        runtime (str): ``'ort'`` or ``'openvino'``. Default: ``'ort'``.
        threads (int): Runtime and torch threads (0: defaults).
        max_images (int, optional): Only the first images.
        progress (callable, optional): Called with ``(done, total)``.

    Returns:
        VerifyReport: Matching and mAP of both (boxes, and masks where the
        file outputs them).
    """
    import torch
    from mmdet.apis import inference_detector
    name = config if isinstance(config, str) else 'the config'
    cfg = load_config(config)
    check_exportable_config(cfg, name)
    default_ann, default_dir = _dataset_paths(cfg)
    ann_file, img_dir = ann_file or default_ann, img_dir or default_dir
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'annotation file not found: {ann_file}')
    with open(ann_file) as f:
        ann = json.load(f)
    deployed = DeployedDetector(model_path, runtime, threads)
    rule = deployed.meta.resize
    model = reference_model(cfg, checkpoint, rule.size)
    if threads:
        torch.set_num_threads(threads)
    images = ann['images'][:max_images] if max_images else ann['images']
    cat_ids = _category_ids(ann, deployed.classes, ann_file)
    with_masks = deployed.meta.masks
    match, reference, candidate = DetectionMatch(), [], []
    confident = DetectionMatch()
    seconds = dict(reference=0.0, deployed=0.0)
    for i, info in enumerate(images):
        path = osp.join(img_dir, info['file_name'])
        start = time.perf_counter()
        with torch.no_grad():
            pred = inference_detector(model, path).pred_instances
        seconds['reference'] += time.perf_counter() - start
        ref = Detections(pred.bboxes.numpy(), pred.scores.numpy(),
                         pred.labels.numpy(),
                         pred.masks.numpy().astype(bool) if with_masks
                         else None)
        start = time.perf_counter()
        dep = deployed.predict(path)
        seconds['deployed'] += time.perf_counter() - start
        match = match + match_detections(
            (ref.bboxes, ref.scores, ref.labels),
            (dep.bboxes, dep.scores, dep.labels), IOU_THR, SCORE_TOL,
            (ref.masks, dep.masks) if with_masks else None)
        ref_sure, dep_sure = (untied_only(d, CONFIDENT_SCORE)
                              for d in (ref, dep))
        confident = confident + match_detections(
            (ref_sure.bboxes, ref_sure.scores, ref_sure.labels),
            (dep_sure.bboxes, dep_sure.scores, dep_sure.labels), IOU_THR,
            SCORE_TOL, (ref_sure.masks, dep_sure.masks) if with_masks
            else None)
        reference.append(ref)
        candidate.append(dep)
        if progress:
            progress(i + 1, len(images))
    ids = [info['id'] for info in images]
    types = ('bbox', 'segm') if with_masks else ('bbox', )
    evaluated, untied = {}, {}
    for name, dets in (('reference', reference), ('deployed', candidate)):
        evaluated[name] = evaluate_coco(coco_results(dets, ids, cat_ids),
                                        ann_file, types)
        untied[name] = evaluate_coco(coco_results(
            [untied_only(d) for d in dets], ids, cat_ids), ann_file, types)
    metrics = {name: e['bbox'] for name, e in evaluated.items()}
    segm = {name: e['segm'] for name, e in evaluated.items()} \
        if with_masks else {}
    untied_map = {kind: {name: e[kind]['AP'] for name, e in untied.items()}
                  for kind in types}
    return VerifyReport(len(images), match, metrics['reference']['AP'],
                        metrics['deployed']['AP'], metrics, segm, seconds,
                        confident, untied_map)


def untied_only(detections: Detections,
                min_score: float = 0.0) -> Detections:
    """The detections scoring >= `min_score` whose score no other
    detection of the image comes within :data:`SCORE_TOL` of."""
    keep = untied_mask(detections.scores, SCORE_TOL) & (
        detections.scores >= min_score)
    return Detections(detections.bboxes[keep], detections.scores[keep],
                      detections.labels[keep],
                      None if detections.masks is None
                      else detections.masks[keep])