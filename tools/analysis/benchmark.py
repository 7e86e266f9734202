"""Speed and memory of ReXNet-1.0x against mmdet's MobileNetV2, same run.

Sections (``--only``, default all): ``backbone`` (eval / fused /
onnxruntime inference and per-FLOP cost), ``detector`` (SSDLite and
Mask R-CNN predict), ``train`` (s/iter; ``--profile`` adds where the time
goes) and ``memory`` (peak training memory with and without ``with_cp``).
The logic lives in :mod:`rexnet_det.analysis.benchmark`, the goals in
:mod:`rexnet_det.analysis.goals`.

Examples::

    python tools/analysis/benchmark.py --json work_dirs/benchmark.json
    python tools/analysis/benchmark.py --only backbone --sizes 320 \
        --batches 1 --repeats 7
    python tools/analysis/benchmark.py --only train --profile
    python tools/analysis/benchmark.py --quick --json /tmp/quick.json
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from rexnet_det.analysis.benchmark import (  # noqa: E402
    SECTIONS, BenchmarkOptions, format_report, run_benchmark)
from rexnet_det.utils.io import atomic_write  # noqa: E402


def parse_args(argv: Optional[List[str]] = None
               ) -> Tuple[BenchmarkOptions, Optional[str]]:
    parser = argparse.ArgumentParser(
        description='ReXNet vs MobileNetV2 speed and memory',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', nargs='+', choices=SECTIONS,
                        default=list(SECTIONS), help='sections to run')
    parser.add_argument('--sizes', type=int, nargs='+', default=[224, 320],
                        help='square input sizes for backbones')
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8],
                        help='batch sizes for backbones and SSDLite')
    parser.add_argument('--repeats', type=int, default=5,
                        help='rounds per group (medians are taken over them)')
    parser.add_argument('--calls', type=int, default=0,
                        help='timed calls per case and round (0: about 0.3 s '
                        'of work per case and round)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch and onnxruntime threads (0: library '
                        'default). Default 1: reproducible on a shared '
                        'machine')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'],
                        default='auto',
                        help='auto: CPU, plus CUDA rows when available')
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--train-size', type=int, default=320)
    parser.add_argument('--mask-batch', type=int, default=2)
    parser.add_argument('--mask-size', type=int, default=512)
    parser.add_argument('--no-onnx', action='store_true',
                        help='skip onnxruntime rows')
    parser.add_argument('--profile', action='store_true',
                        help='profile one SSDLite training iteration of each '
                        'backbone (phases and top ops)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes, one round: a smoke test of every '
                        'path, not a measurement')
    parser.add_argument('--json', metavar='PATH', help='write results here')
    args = parser.parse_args(argv)
    try:
        opts = BenchmarkOptions(
            only=args.only, sizes=args.sizes, batches=args.batches,
            repeats=args.repeats, calls=args.calls, threads=args.threads,
            device=args.device, train_batch=args.train_batch,
            train_size=args.train_size, mask_batch=args.mask_batch,
            mask_size=args.mask_size, onnx=not args.no_onnx,
            profile=args.profile, quick=args.quick,
            command=' '.join([osp.basename(__file__)] +
                             (argv if argv is not None else sys.argv[1:])))
    except ValueError as e:
        parser.error(str(e))
    return opts, args.json


def main(argv: Optional[List[str]] = None) -> dict:
    opts, json_path = parse_args(argv)
    report = run_benchmark(opts)
    print(format_report(report))
    if json_path:
        atomic_write(json.dumps(report, indent=1), json_path)
        print(f'wrote {json_path}')
    return report


if __name__ == '__main__':
    main()
