"""Latency of deployed detectors: PyTorch predict vs onnxruntime vs OpenVINO.

SSDLite-ReXNet-1.0x and mmdet's SSDLite-MobileNetV2 at ``--size`` (320),
batch 1, on 1 and 2 threads (``--suite mask-rcnn``: Mask R-CNN-ReXNet-1.0x
vs Mask R-CNN-R50 with masks, on images of each ``--image-sizes`` H W pair,
default the demo's 128x128 and COCO's 800x1333, no targets; ``--suite
dynamic``: Mask R-CNN-ReXNet-1.0x exported with a dynamic input size vs
the same model at a fixed canvas, onnxruntime, same image sizes, against
the issue #23 goal); every row
goes from the same decoded BGR image to boxes in its pixels (resize and
normalisation included). Rows of one
thread count are timed in interleaved rounds; figures are medians with the
min-max of the round medians. MACs (conv + linear multiply-adds of the
network) come from mmengine's FlopAnalyzer. Prints the table and the issue
#11 targets; ``--profile`` adds onnxruntime's time per op type. Random
weights, made busy so NMS is fully loaded (rexnet_det/analysis/
busy_weights.py). The tool restarts itself with glibc malloc pinned and
passive OpenMP waiting (rexnet_det.analysis.detector_latency.TIMING_ENV).

Example::

    python tools/deploy/benchmark.py --json work_dirs/deploy_latency.json
"""
import argparse
import json
import os.path as osp
import sys
import tempfile
import warnings
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from rexnet_det.analysis.detector_latency import (  # noqa: E402
    DEFAULT_MODELS, MASK_RCNN_MODELS, MASK_RCNN_SIZES, restart_with_timing_env,
    format_latency, prepare_model, prepare_two_stage, profile_ort,
    run_dynamic_suite, run_latency)
from rexnet_det.utils.io import atomic_write  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--suite', choices=['ssdlite', 'mask-rcnn',
                                            'dynamic'],
                        default='ssdlite')
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--image-sizes', type=int, nargs='+',
                        default=[v for s in MASK_RCNN_SIZES for v in s],
                        metavar='H W', help='mask-rcnn and dynamic suites: '
                        'image sizes')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--runtimes', nargs='+',
                        choices=['pytorch', 'ort', 'openvino'],
                        default=['pytorch', 'ort', 'openvino'])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--calls', type=int, default=5,
                        help='timed calls per case and round')
    parser.add_argument('--profile', action='store_true',
                        help='also print onnxruntime time per op type')
    parser.add_argument('--json', metavar='PATH', help='write the figures')
    args = parser.parse_args(argv)
    if args.size < 32 or args.size % 32:
        parser.error(f'--size must be a multiple of 32, got {args.size}')
    if len(args.image_sizes) % 2 or min(args.image_sizes) < 32:
        parser.error(f'--image-sizes takes H W pairs >= 32, got '
                     f'{args.image_sizes}')
    for name in ('threads', 'rounds', 'calls'):
        value = getattr(args, name)
        if min(value if isinstance(value, list) else [value]) < 1:
            parser.error(f'--{name} must be >= 1, got {value}')
    return args


def main(argv: Optional[List[str]] = None):
    args = parse_args(argv)
    restart_with_timing_env(argv)
    warnings.filterwarnings('ignore')
    import numpy as np
    if args.suite == 'mask-rcnn':
        return mask_rcnn_suite(args)
    if args.suite == 'dynamic':
        return dynamic_suite(args)
    image = np.random.RandomState(0).randint(0, 256, (480, 640, 3),
                                             dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        models = [prepare_model(m, args.size, tmp) for m in DEFAULT_MODELS]
        for m in models:
            print(f'{m.spec.label}: {m.macs / 1e9:.3f} GMACs, '
                  f'{m.params / 1e6:.2f} M params at {args.size}x{args.size}'
                  f' (image 640x480)', flush=True)
        result = run_latency(models, image, args.threads, args.runtimes,
                             args.rounds, args.calls)
        print(format_latency(result))
        profiles = {}
        if args.profile:
            for m in models:
                profiles[m.spec.label] = profile_ort(m.onnx_path, image, 1)
                total = sum(profiles[m.spec.label].values())
                print(f'\nonnxruntime profile, {m.spec.label}, 1 thread '
                      f'({total:.1f} ms of kernels per run):')
                for op, ms in list(profiles[m.spec.label].items())[:12]:
                    print(f'  {op:<28} {ms:7.2f} ms  {ms / total:6.1%}')
    if args.json:
        atomic_write(json.dumps(dict(rows=result.rows,
                                     targets=result.targets,
                                     profiles=profiles, size=args.size),
                                indent=1), args.json)
    return result


def mask_rcnn_suite(args: argparse.Namespace) -> list:
    """Time the two-stage suite at every image size; print one table each."""
    import numpy as np
    results = []
    sizes = list(zip(args.image_sizes[::2], args.image_sizes[1::2]))
    for h, w in sizes:
        image = np.random.RandomState(0).randint(0, 256, (h, w, 3),
                                                 dtype=np.uint8)
        with tempfile.TemporaryDirectory() as tmp:
            models = [prepare_two_stage(m, (h, w), tmp)
                      for m in MASK_RCNN_MODELS]
            print(f'\nimage {h}x{w}: ' + ', '.join(
                f'{m.spec.label} {m.macs / 1e9:.2f} GMACs '
                f'{m.params / 1e6:.1f} M params' for m in models), flush=True)
            result = run_latency(models, image, args.threads, args.runtimes,
                                 args.rounds, args.calls, targets=False,
                                 warmup=args.warmup)
        print(format_latency(result), flush=True)
        results.append(dict(size=[h, w], rows=result.rows))
    if args.json:
        atomic_write(json.dumps(results, indent=1), args.json)
    return results


def dynamic_suite(args: argparse.Namespace) -> list:
    """Dynamic- vs fixed-size export per image size, against the goal."""
    results = run_dynamic_suite(
        list(zip(args.image_sizes[::2], args.image_sizes[1::2])),
        args.threads, args.rounds, args.calls, args.warmup)
    if args.json:
        atomic_write(json.dumps(results, indent=1), args.json)
    return results


if __name__ == '__main__':
    main()
