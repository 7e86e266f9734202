"""Deployed backbone speed: ReXNet-1.0x and lite-1.0x (unaligned /
channel-aligned) vs mmdet's EfficientNet-B0 and MobileNetV2, per image, per
FLOP and against the same-run sgemm peak, in one table.

onnxruntime (and OpenVINO in float32) and eager PyTorch (eval and fused)
at batch 1, each backbone to its 1280-channel conv, at ``--sizes`` on
``--threads``; EfficientNet-B0 both as exported and with its "SAME" Pad
nodes folded into its convs. Every group is timed in interleaved rounds
(medians, [min-max] of round medians); the issue #12 goals are judged on
the table's rows.
``--multiples`` adds the alignment-multiple comparison, ``--eager`` the
fused eager forms, ``--profile`` onnxruntime's time per op type of the
ReXNet graphs. The tool restarts itself with glibc malloc pinned and
passive OpenMP waits (rexnet_det.analysis.detector_latency.TIMING_ENV).
The logic lives in rexnet_det/analysis/backbone_speed.py.

Example::

    python tools/analysis/backbone_speed.py --threads 1 2 --eager
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import warnings
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from rexnet_det.analysis.backbone_speed import (  # noqa: E402
    alignment_rows, backbone_goals, comparison_table, deployed_backbone_rows,
    eager_fused_rows, format_rows, ort_op_profile)
from rexnet_det.analysis.detector_latency import \
    restart_with_timing_env  # noqa: E402
from rexnet_det.utils.io import atomic_write  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[224, 320])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--calls', type=int, default=10,
                        help='timed calls per case and round')
    parser.add_argument('--no-openvino', action='store_true')
    parser.add_argument('--multiples', type=int, nargs='*',
                        help='also compare these alignment multiples '
                        '(1 = off) on 1 thread, e.g. 1 4 8 16')
    parser.add_argument('--eager', action='store_true',
                        help='also compare four eager ReXNet forms (eval, '
                        'fused NCHW / channels_last, aligned + fused; '
                        '1 thread); the main table always has eager rows')
    parser.add_argument('--profile', action='store_true',
                        help='print onnxruntime time per op type (1 thread)')
    parser.add_argument('--json', metavar='PATH', help='write the figures')
    args = parser.parse_args(argv)
    for name in ('threads', 'rounds', 'calls'):
        value = getattr(args, name)
        if min(value if isinstance(value, list) else [value]) < 1:
            parser.error(f'--{name} must be >= 1, got {value}')
    if min(args.sizes) < 32:
        parser.error(f'--sizes must be >= 32, got {args.sizes}')
    return args


def print_profile(out_dir: str, size: int) -> dict:
    profiles = {}
    for name in ('rexnet', 'rexnet_aligned'):
        path = osp.join(out_dir, f'{name}_{size}.onnx')
        profiles[name] = prof = ort_op_profile(path, size)
        total = sum(prof.values())
        print(f'\nonnxruntime profile, {name}, {size} px, 1 thread '
              f'({total:.2f} ms of kernels per run):')
        for op, ms in list(prof.items())[:10]:
            print(f'  {op:<28} {ms:7.2f} ms  {ms / total:6.1%}')
    return profiles


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    restart_with_timing_env(argv)
    warnings.filterwarnings('ignore')
    report = dict(load_start=os.getloadavg())
    print(f'load average at start: {report["load_start"]}', flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = deployed_backbone_rows(args.threads, args.sizes, args.rounds,
                                      args.calls, not args.no_openvino, tmp)
        print(comparison_table(rows), flush=True)
        report['deployed'] = rows
        report['goals'] = backbone_goals(rows)
        if not report['goals']:
            print('goals not judged: they need 224 px rows (--sizes 224)')
        for goal in report['goals']:
            print(f"goal {goal['name']}: {goal['value']:.2f} (limit "
                  f"{goal['limit']}): {'met' if goal['met'] else 'NOT met'}")
        if args.profile:
            report['profiles'] = print_profile(tmp, args.sizes[0])
    if args.multiples:
        report['multiples'] = alignment_rows(args.multiples, args.sizes, 1,
                                             args.rounds, args.calls)
        print('\n| multiple | size | GMACs | ms [min-max] | CPU ms | speed-up '
              'vs unaligned [min-max] | same, CPU clock |\n'
              '|---|---|---|---|---|---|---|')
        for r in report['multiples']:
            s, c = r['speedup'], r['speedup_cpu']
            print(f'| {r["multiple"]} | {r["size"]} | {r["gmacs"]:.4f} | '
                  f'{r["ms"]:.2f} [{r["ms_min"]:.2f}-{r["ms_max"]:.2f}] | '
                  f'{r["cpu_ms"]:.2f} | {s["median"]:.3f} [{s["min"]:.3f}-'
                  f'{s["max"]:.3f}] | {c["median"]:.3f} [{c["min"]:.3f}-'
                  f'{c["max"]:.3f}] |', flush=True)
    if args.eager:
        report['eager'] = eager_fused_rows(args.sizes, (1, ), args.rounds,
                                           args.calls)
        print('\n' + format_rows(report['eager']))
    report['load_end'] = os.getloadavg()
    print(f'\nload average at end: {report["load_end"]}')
    if args.json:
        atomic_write(json.dumps(report, indent=1), args.json)
    return report


if __name__ == '__main__':
    main()
