"""GPU training / inference throughput of ReXNet-1.0x against timm's
rexnet_100, efficientnet_b0 and mobilenetv2_100 (autocast, channels_last),
and CUDA parity of our classifier with timm's rexnet_100.

Made for a rented GPU machine with torch and timm but without mmcv's
compiled ops (they take 10+ minutes to build): the model code is imported
without the ``rexnet_det`` package ``__init__`` files, which register the
detectors and therefore import ``mmcv.ops``. mmcv's, mmengine's and
mmdet's Python files must still be importable. The logic lives in
tools/lib/gpu_throughput.py.

Example::

    python tools/analysis/gpu_throughput.py --json work_dirs/gpu.json
"""
import argparse
import importlib
import json
import os.path as osp
import sys
import types
from typing import List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def import_without_registration(module: str) -> types.ModuleType:
    """Import `module` (``tools.lib.<name>``) with every ``rexnet_det``
    package on its path as a bare namespace: only the modules it imports
    itself run."""
    for pkg in ('', '.models', '.utils', '.checkpoint'):
        name = 'rexnet_det' + pkg
        if name not in sys.modules:
            stand_in = types.ModuleType(name)
            stand_in.__path__ = [osp.join(ROOT, *name.split('.'))]
            sys.modules[name] = stand_in
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    return importlib.import_module(module)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--batch', type=int, default=256)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--amp', default='float16',
                        choices=['float16', 'bfloat16', 'none'])
    parser.add_argument('--modes', nargs='+', default=['infer', 'train'],
                        choices=['infer', 'train'])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--no-peers', action='store_true',
                        help='measure ours only (with --no-parity: no timm '
                        'needed)')
    parser.add_argument('--no-parity', action='store_true',
                        help='skip the logits parity check with timm')
    parser.add_argument('--json', help='also write the figures here')
    args = parser.parse_args(argv)
    for name in ('batch', 'size', 'rounds', 'iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1, got {getattr(args, name)}')
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    gpu = import_without_registration('tools.lib.gpu_throughput')
    import torch
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit(f'error: --device {args.device}: no CUDA device here')
    names = (gpu.OURS, ) if args.no_peers else (gpu.OURS, ) + gpu.TIMM_PEERS
    result = dict(torch=torch.__version__, device=args.device,
                  gpu=(torch.cuda.get_device_name()
                       if args.device.startswith('cuda') else 'cpu'),
                  batch=args.batch, size=args.size, amp=args.amp)
    if not args.no_parity:
        result['parity'] = gpu.timm_parity(args.device)
        print('parity with timm rexnet_100:', json.dumps(result['parity']))
    rows = gpu.measure_throughput(names, args.modes, args.batch, args.size,
                                  args.amp, args.device, args.rounds,
                                  args.iters, args.warmup)
    result['rows'] = gpu.rows_as_dicts(rows)
    print(f"{result['gpu']}, torch {result['torch']}, batch {args.batch}, "
          f'{args.size}x{args.size}, autocast {args.amp}, channels_last')
    print(gpu.format_rows(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
