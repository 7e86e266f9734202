"""The INT8 step of ``make demo``: quantize the deployed FP32 file,
evaluate it on the validation split and print PyTorch, FP32 and INT8 mAP
and latency side by side.

PyTorch and FP32 figures come from the deploy step's
:class:`~rexnet_det.deploy.detector.VerifyReport`; the INT8 file is
evaluated on the same images, and the latency of the two files is timed
interleaved on the same images (reading and resizing included).
"""
import json
import os.path as osp
import time
from dataclasses import dataclass
from typing import Any, Dict, List

from rexnet_det.deploy.quantize.accuracy import MAX_MAP_DROP


@dataclass
class Int8Outcome:
    """What the INT8 step produced."""
    path: str
    metrics: Dict[str, Any]  # deployed_metrics of the INT8 file
    ms: Dict[str, float]  # 'fp32' / 'int8' per image
    drops: Dict[str, float]  # PyTorch mAP minus INT8 mAP
    ok: bool


def paired_latency(paths: Dict[str, str], images: List[str], threads: int,
                   rounds: int = 2) -> Dict[str, float]:
    """Median ms per image of each file, the files alternating image by
    image (so load from other jobs hits both alike)."""
    import numpy as np

    from rexnet_det.deploy.detector import DeployedDetector
    detectors = {k: DeployedDetector(p, 'ort', threads)
                 for k, p in paths.items()}
    for d in detectors.values():  # first-run allocations out of the timing
        d.predict(images[0])
    times: Dict[str, List[float]] = {k: [] for k in paths}
    for _ in range(rounds):
        for image in images:
            for key, detector in detectors.items():
                start = time.perf_counter()
                detector.predict(image)
                times[key].append(time.perf_counter() - start)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def int8_step(cfg, onnx_path: str, report, threads: int,
              latency_images: int = 10) -> Int8Outcome:
    """Quantize `onnx_path` (calibrated on the training split), evaluate
    it and print it next to `report` (the deploy step's PyTorch and FP32
    figures)."""
    from rexnet_det.deploy.quantize import quantize_detector
    from rexnet_det.deploy.quantize.accuracy import deployed_metrics
    from rexnet_det.evaluation import format_metrics
    out = osp.splitext(onnx_path)[0] + '.int8.onnx'
    t0 = time.perf_counter()
    result = quantize_detector(cfg, onnx_path, out)
    options = result.options
    print(f'quantized {osp.basename(onnx_path)} -> {osp.basename(out)} in '
          f'{time.perf_counter() - t0:.0f} s: {result.nodes} network nodes '
          f'INT8 ({options.num_images} training images, {options.method}, '
          f'per-channel {options.weights} weights, {options.activations} '
          f'activations); decoding, NMS, RoIAlign and mask pasting float',
          flush=True)
    ann_file = cfg.test_evaluator.ann_file
    img_dir = osp.join(cfg.test_dataloader.dataset.data_root,
                       cfg.test_dataloader.dataset.data_prefix.img)
    metrics = deployed_metrics(out, ann_file, img_dir, 'ort', threads)
    print('box/seg: PT = PyTorch, F32 = FP32 file, I8 = INT8 file '
          '(onnxruntime)')
    print(format_metrics({'box PT': report.metrics['reference'],
                          'box F32': report.metrics['deployed'],
                          'box I8': metrics['bbox'],
                          'seg PT': report.segm_metrics['reference'],
                          'seg F32': report.segm_metrics['deployed'],
                          'seg I8': metrics['segm']}))
    drops = dict(bbox=report.map_reference - metrics['bbox']['AP'],
                 segm=report.segm_map_reference - metrics['segm']['AP'])
    with open(ann_file) as f:
        names = [i['file_name'] for i in json.load(f)['images']]
    images = [osp.join(img_dir, n) for n in names[:latency_images]]
    ms = paired_latency(dict(fp32=onnx_path, int8=out), images, threads, 2)
    limit = MAX_MAP_DROP
    ok = all(d <= limit for d in drops.values())
    print(f'INT8 mAP drop vs PyTorch: bbox {drops["bbox"]:+.4f}, segm '
          f'{drops["segm"]:+.4f} (goal <= {limit}: '
          f'{"met" if ok else "NOT met"}); onnxruntime latency per image '
          f'({threads} thread(s), {len(images)} images x 2, reading and '
          f'resizing included): FP32 {ms["fp32"]:.1f} ms, INT8 '
          f'{ms["int8"]:.1f} ms ({ms["fp32"] / ms["int8"]:.2f}x)')
    return Int8Outcome(out, metrics, ms, drops, ok)
