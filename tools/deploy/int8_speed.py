"""INT8 vs FP32 speed on onnxruntime and OpenVINO, peers in the same run.

SSDLite-ReXNet-1.0x (channel-aligned, as export.py writes it) and mmdet's
SSDLite-MobileNetV2 at --size (320) end to end (reading the decoded image,
resizing, network, decoding, NMS), and the ReXNet-1.0x backbone vs
EfficientNet-B0 (pads folded) vs MobileNetV2 at --backbone-size (224), each
as its FP32 file and its INT8 file (tools/deploy/quantize.py defaults),
batch 1, on 1 and 2 threads. Prints the CPU model and its integer
instruction sets, the tables and the issue #21 speed goals; --json writes
everything (commit, date, CPU, flags, threads, versions, load average).
Random busy weights (speed does not depend on the values). Logic in
rexnet_det.analysis.int8_speed; restarts itself with the timing
environment of tools/deploy/benchmark.py.

Example::

    nice python tools/deploy/int8_speed.py --json work_dirs/int8_speed.json
"""
import argparse
import datetime
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import warnings
from typing import List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from rexnet_det.analysis.detector_latency import \
    restart_with_timing_env  # noqa: E402
from rexnet_det.utils.io import atomic_write  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--backbone-size', type=int, default=224)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--runtimes', nargs='+', choices=['ort', 'openvino'],
                        default=['ort', 'openvino'])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--calls', type=int, default=5)
    parser.add_argument('--parts', nargs='+', default=['detectors',
                                                       'backbones'],
                        choices=['detectors', 'backbones'])
    parser.add_argument('--json', metavar='PATH', help='write the figures')
    args = parser.parse_args(argv)
    for name in ('threads', 'rounds', 'calls'):
        value = getattr(args, name)
        if min(value if isinstance(value, list) else [value]) < 1:
            parser.error(f'--{name} must be >= 1, got {value}')
    if args.size % 32 or args.size < 64:
        parser.error(f'--size must be a multiple of 32, got {args.size}')
    return args


def versions() -> dict:
    import numpy
    import onnxruntime
    import openvino
    import torch
    return dict(onnxruntime=onnxruntime.__version__,
                openvino=openvino.__version__, torch=torch.__version__,
                numpy=numpy.__version__, python=sys.version.split()[0])


def commit() -> str:
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                              cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    restart_with_timing_env(argv)
    warnings.filterwarnings('ignore')
    from rexnet_det.analysis.int8_speed import (backbone_rows, cpu_info,
                                                detector_rows, format_rows,
                                                int8_goals)
    cpu = cpu_info()
    print(f'CPU {cpu["model"]} ({cpu["cpus"]} logical CPUs); integer '
          f'instruction sets: {" ".join(cpu["flags"]) or "none found"} '
          f'(VNNI/AMX: {"yes" if cpu["vnni"] else "no"}); load average '
          f'{os.getloadavg()[0]:.2f}', flush=True)
    record = dict(commit=commit(), date=datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec='seconds'), cpu=cpu,
        threads=args.threads, versions=versions(), size=args.size,
        backbone_size=args.backbone_size, load_before=os.getloadavg()[0])
    detectors, backbones = [], []
    with tempfile.TemporaryDirectory() as tmp:
        if 'detectors' in args.parts:
            detectors = detector_rows(args.size, args.threads, args.runtimes,
                                      args.rounds, args.calls, tmp)
            print(f'\nSSDLite at {args.size} px, end to end (load '
                  f'{os.getloadavg()[0]:.2f}):\n{format_rows(detectors)}',
                  flush=True)
        if 'backbones' in args.parts:
            backbones = backbone_rows(args.backbone_size, args.threads,
                                      args.runtimes, args.rounds, args.calls,
                                      tmp)
            print(f'\nbackbones at {args.backbone_size} px (load '
                  f'{os.getloadavg()[0]:.2f}):\n{format_rows(backbones)}',
                  flush=True)
    goals = int8_goals(detectors, backbones, cpu['vnni'])
    print()
    for g in goals:
        status = ('met' if g['met'] else 'MISSED') if g['applies'] else \
            'not a goal on this CPU (no VNNI/AMX)'
        print(f'{g["name"]}: {g["value"]:.2f} (goal '
              f'{">=" if "speed-up" in g["name"] else "<="} {g["limit"]}): '
              f'{status}')
    record.update(detectors=detectors, backbones=backbones, goals=goals,
                  load_after=os.getloadavg()[0])
    if args.json:
        atomic_write(json.dumps(record, indent=1, default=str), args.json)
    return record


if __name__ == '__main__':
    main()
