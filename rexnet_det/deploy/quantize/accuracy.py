"""COCO mAP of a deployed file alone, for the FP32 / INT8 side by side.

:func:`verify_detector` compares one file with PyTorch; for an INT8 file
the FP32 file it came from is the other reference. :func:`deployed_metrics`
evaluates any deployed file on the same image set without running
PyTorch again.
"""
import json
import os.path as osp
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ...evaluation import evaluate_coco
from ..detector.runtime import DeployedDetector
from ..detector.verify import (VerifyReport, _category_ids, _dataset_paths,
                               coco_results, verify_detector)

#: Largest INT8 mAP drop (absolute, bbox and segm) against PyTorch that
#: ``verify.py --fp32`` passes (issue #21's accuracy goal).
MAX_MAP_DROP = 0.01


def deployed_metrics(model_path: str, ann_file: str, img_dir: str,
                     runtime: str = 'ort', threads: int = 0,
                     max_images: Optional[int] = None) -> Dict[str, Any]:
    """COCO metrics of `model_path` on a COCO-format image set.

    Returns:
        dict: ``bbox`` (the 12 COCO metrics), ``segm`` (the same, files
        with masks only), ``ms_per_image`` (reading and resizing
        included) and ``images``.
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'annotation file not found: {ann_file}')
    with open(ann_file) as f:
        ann = json.load(f)
    deployed = DeployedDetector(model_path, runtime, threads)
    images = ann['images'][:max_images] if max_images else ann['images']
    cat_ids = _category_ids(ann, deployed.classes, ann_file)
    start = time.perf_counter()
    detections = [deployed.predict(osp.join(img_dir, info['file_name']))
                  for info in images]
    seconds = time.perf_counter() - start
    types = ('bbox', 'segm') if deployed.meta.masks else ('bbox', )
    metrics = evaluate_coco(coco_results(
        detections, [info['id'] for info in images], cat_ids), ann_file,
        types)
    return dict(metrics, images=len(images),
                ms_per_image=seconds * 1e3 / max(len(images), 1))


@dataclass
class Int8Report:
    """PyTorch, the FP32 file and the INT8 file on one image set.

    Attributes:
        verify (VerifyReport): INT8 file against PyTorch
            (:func:`verify_detector`).
        fp32 (dict): :func:`deployed_metrics` of the FP32 file.
    """
    verify: VerifyReport
    fp32: Dict[str, Any]

    def tables(self) -> Dict[str, Dict[str, float]]:
        """Metric columns for ``format_metrics`` (8 characters wide):
        ``box PT`` (PyTorch), ``box F32`` (the FP32 file), ``box I8`` (the
        INT8 file), and the same with ``seg`` for files with masks."""
        r = self.verify
        out = {'box PT': r.metrics['reference'], 'box F32': self.fp32['bbox'],
               'box I8': r.metrics['deployed']}
        if r.segm_metrics:
            out.update({'seg PT': r.segm_metrics['reference'],
                        'seg F32': self.fp32['segm'],
                        'seg I8': r.segm_metrics['deployed']})
        return out

    def drops(self) -> Dict[str, float]:
        """PyTorch mAP minus INT8 mAP (``bbox``, and ``segm``)."""
        r = self.verify
        out = dict(bbox=r.map_reference - r.map_deployed)
        if r.segm_metrics:
            out['segm'] = r.segm_map_reference - r.segm_map_deployed
        return out

    def failures(self, max_drop: float = MAX_MAP_DROP) -> List[str]:
        """The mAP drops larger than `max_drop` (empty: the file passes).
        An INT8 file is judged on accuracy, not on detection parity: its
        boxes and scores move by design."""
        return [f'INT8 {kind} mAP drop vs PyTorch {drop:+.4f} > {max_drop:g}'
                for kind, drop in self.drops().items() if drop > max_drop]

    def summary(self) -> str:
        r = self.verify
        line = (f'bbox mAP PyTorch {r.map_reference:.4f}, FP32 '
                f'{self.fp32["bbox"]["AP"]:.4f}, INT8 {r.map_deployed:.4f}'
                f' (drop vs PyTorch {self.drops()["bbox"]:+.4f})')
        if r.segm_metrics:
            line += (f'; segm mAP PyTorch {r.segm_map_reference:.4f}, FP32 '
                     f'{self.fp32["segm"]["AP"]:.4f}, INT8 '
                     f'{r.segm_map_deployed:.4f} (drop '
                     f'{self.drops()["segm"]:+.4f})')
        return line + (f'; ms/image FP32 {self.fp32["ms_per_image"]:.1f}, '
                       f'INT8 {r.ms_per_image("deployed"):.1f}')


def compare_int8(config, checkpoint: Optional[str], int8_path: str,
                 fp32_path: str, ann_file: Optional[str] = None,
                 img_dir: Optional[str] = None, runtime: str = 'ort',
                 threads: int = 0, max_images: Optional[int] = None,
                 progress=None) -> Int8Report:
    """:func:`verify_detector` on the INT8 file plus the FP32 file's mAP on
    the same images (arguments as :func:`verify_detector`)."""
    from ..detector.export import load_config
    report = verify_detector(config, checkpoint, int8_path, ann_file,
                             img_dir, runtime, threads, max_images, progress)
    default_ann, default_dir = _dataset_paths(load_config(config))
    fp32 = deployed_metrics(fp32_path, ann_file or default_ann,
                            img_dir or default_dir, runtime, threads,
                            max_images)
    return Int8Report(report, fp32)
