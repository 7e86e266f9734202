"""Run every comparison the docs show and write one results file.

Sections (``--only``, default all; tools/bench/sections/): ``backbones``
(ReXNet-1.0x / lite vs EfficientNet-B0 and MobileNetV2, eager eval and
fused, onnxruntime, OpenVINO), ``eager_forms`` (the fused eager limit),
``alignment`` (NCHWc channel alignment), ``compiled`` (torch.compile vs
eager and onnxruntime; slow, ``--skip compiled``), ``detectors`` (SSDLite
and Mask R-CNN deployed latency), ``int8`` (INT8 vs FP32 detectors and
backbones), ``training`` (s/iter vs SSDLite-MobileNetV2, with_cp cost) and
``memory`` (with_cp peak memory). The JSON records the
commit, date, CPU model and instruction sets, threads and versions, and
the goals judged (tools/bench/goals.py). Regenerate the docs' tables from
it with ``python tools/gen_tables.py benchmarks/results.json``.

The tool restarts itself with glibc malloc pinned and OpenMP threads that
sleep instead of spinning (:data:`TIMING_ENV`).

Examples::

    python tools/benchmark.py --out benchmarks/results.json
    python tools/benchmark.py --only backbones --threads 1 --out /tmp/b.json
    python tools/benchmark.py --quick --out /tmp/quick.json
    python tools/benchmark.py --only compiled --update \
        --out benchmarks/results.json
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from rexnet_det.utils.io import atomic_write  # noqa: E402
from tools.bench import (BenchmarkOptions, run_benchmark,  # noqa: E402
                         update_record)
from tools.bench.tables import render  # noqa: E402

#: Set before start-up: glibc malloc pinned (eager timings swing up to 30%
#: between processes otherwise) and OpenMP threads that sleep instead of
#: spin-waiting (on a shared machine spinning makes 2-thread PyTorch many
#: times slower; onnxruntime sessions are made without spinning too).
TIMING_ENV = {'MALLOC_MMAP_THRESHOLD_': str(2**30),
              'MALLOC_TRIM_THRESHOLD_': str(2**31),
              'OMP_WAIT_POLICY': 'PASSIVE'}


def restart_with_timing_env(argv: Optional[List[str]]) -> None:
    """Re-execute this command line with :data:`TIMING_ENV` set, unless it
    already is or the tool was called in-process (`argv` given): glibc and
    OpenMP read these only at start-up."""
    if argv is None and any(os.environ.get(k) != v
                            for k, v in TIMING_ENV.items()):
        os.execve(sys.executable, [sys.executable] + sys.argv,
                  dict(os.environ, **TIMING_ENV))


def parse_args(argv: Optional[List[str]] = None):
    d = BenchmarkOptions()
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, metavar='JSON',
                        help='results file to write')
    parser.add_argument('--only', nargs='+', default=[],
                        help='sections to run (default: all)')
    parser.add_argument('--skip', nargs='+', default=[],
                        help='sections not to run (e.g. compiled, slow)')
    parser.add_argument('--update', action='store_true',
                        help='add the sections run to the existing --out '
                        'file (replacing them), keep the others, judge the '
                        'goals again')
    parser.add_argument('--threads', type=int, nargs='+',
                        default=list(d.threads))
    parser.add_argument('--sizes', type=int, nargs='+', default=list(d.sizes))
    parser.add_argument('--rounds', type=int, default=d.rounds)
    parser.add_argument('--calls', type=int, default=d.calls,
                        help='timed calls per case and round')
    parser.add_argument('--mask-image-sizes', type=int, nargs='+',
                        metavar='H W', default=[v for hw in d.mask_image_sizes
                                                for v in hw],
                        help='images (H W pairs) of the Mask R-CNN latency '
                        'rows')
    parser.add_argument('--no-openvino', action='store_true')
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes, one round: a smoke test of every '
                        'path, not a measurement')
    args = parser.parse_args(argv)
    sizes = args.mask_image_sizes
    if len(sizes) % 2 or min(sizes) < 32:
        parser.error(f'--mask-image-sizes takes H W pairs >= 32, got {sizes}')
    try:
        opts = BenchmarkOptions(
            only=args.only, skip=args.skip, threads=args.threads,
            sizes=args.sizes,
            rounds=args.rounds, calls=args.calls,
            mask_image_sizes=list(zip(sizes[::2], sizes[1::2])),
            openvino=not args.no_openvino, quick=args.quick,
            command=' '.join(['python', 'tools/benchmark.py'] +
                             (argv if argv is not None else sys.argv[1:])))
    except ValueError as e:
        parser.error(str(e))
    if args.update and not osp.isfile(args.out):
        parser.error(f'--update: no results file {args.out!r} to update')
    return opts, args.out, args.update


def main(argv: Optional[List[str]] = None) -> dict:
    opts, out, update = parse_args(argv)
    restart_with_timing_env(argv)
    try:
        record = run_benchmark(opts)
    except ValueError as e:  # an unknown section
        sys.exit(f'error: {e}')
    if update:
        with open(out) as f:
            record = update_record(json.load(f), record)
    for name, table in render(record).items():
        print(f'\n## {name}\n{table}')
    atomic_write(json.dumps(record, indent=1) + '\n', out)
    print(f'\nwrote {out}')
    return record


if __name__ == '__main__':
    main()
