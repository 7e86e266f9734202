"""Parameters and FLOPs of a ReXNet classifier, backbone or detector.

Counted with mmengine's FlopAnalyzer, which counts one multiply-add as one
FLOP. Two figures are printed: ``MACs`` (conv + linear multiply-adds, the
paper's convention; BatchNorm folds into the convs at inference) and
mmengine's total (which also counts one op per BatchNorm element). For
ReXNet classifiers at 224x224 the published numbers are shown next to them.

Examples::

    python tools/analysis/get_flops.py rexnet-1.0x
    python tools/analysis/get_flops.py rexnet-lite-1.3x --shape 224 224
    python tools/analysis/get_flops.py rexnet-1.0x-backbone --shape 320 320
    python tools/analysis/get_flops.py \
        configs/ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py
    python tools/analysis/get_flops.py rexnet-1.0x rexnet-1.3x --json out.json
"""
import argparse
import json
import os.path as osp
import sys
import warnings
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

import rexnet_det  # noqa: E402,F401
from tools.lib.complexity import (complexity,  # noqa: E402
                                            format_table)
from rexnet_det.utils.io import atomic_write  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Params and FLOPs (multiply-adds) of a ReXNet model')
    parser.add_argument(
        'models', nargs='+', metavar='CONFIG_OR_ARCH',
        help='an mmdet config path (detector) or a model name: '
        'rexnet-<w>x, rexnet-lite-<w>x, optionally with -backbone')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 224 224 for models, the '
                        "config's test Resize for detectors)")
    parser.add_argument('--json', metavar='PATH', help='also write JSON')
    args = parser.parse_args(argv)
    if args.shape and min(args.shape) < 1:
        parser.error(f'--shape must be positive, got {args.shape}')
    return args


def main(argv: Optional[List[str]] = None) -> List[dict]:
    args = parse_args(argv)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for model in args.models:
            try:
                rows.append(complexity(model, args.shape))
            except (FileNotFoundError, ValueError) as exc:
                sys.exit(f'error: {exc}')
    print(format_table(rows))
    if args.json:
        atomic_write(json.dumps(rows, indent=2), args.json)
    return rows


if __name__ == '__main__':
    main()
