"""ReXNet's rank diagnostic: random single layers and a model's blocks.

(1) Reproduces the paper's §3 study: the average normalised rank of
``f(WX)`` over random layers against the expansion ratio ``d_out / d_in``,
for linear, ReLU, ReLU6 and SiLU (tools/lib/rank.py defines the
measures). (2) Reports the normalised rank of the stem, every block and the
penultimate conv of a model or checkpoint on a batch of images. Writes a PNG
(two or three panels), a markdown table and optionally JSON.

Examples::

    python tools/analysis/rank_study.py                 # docs/rank_study.*
    python tools/analysis/rank_study.py --model rexnetv1_1.0.pth \
        --images demo/*.jpg --out work_dirs/rank.png
    python tools/analysis/rank_study.py --weight-std fan_in --layers 200
    python tools/analysis/rank_study.py --quick --out /tmp/rank.png
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

import rexnet_det  # noqa: E402,F401
from tools.lib.rank import random_layer_study  # noqa: E402
from tools.lib.rank_report import (format_tables,  # noqa: E402
                                             model_ranks, plot)
from rexnet_det.utils.io import atomic_write  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ratios', type=float, nargs='+',
                        default=[0.5, 1, 1.5, 2, 3, 4, 6, 8],
                        help='expansion ratios d_out / d_in')
    parser.add_argument('--layers', type=int, default=100,
                        help='random layers per ratio')
    parser.add_argument('--d-in', type=int, nargs=2, default=[16, 48],
                        metavar=('MIN', 'MAX'), help='range of d_in')
    parser.add_argument('--weight-std', choices=['unit', 'fan_in'],
                        default='unit', help="W ~ N(0, 1) ('unit') or "
                        'N(0, 1/d_in)')
    parser.add_argument('--rel-tol', type=float, default=0.1,
                        help='threshold of the significant rank, relative '
                        'to the largest singular value')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--model', default='rexnet-1.0x-backbone',
                        help='model name or checkpoint for the per-block '
                        "ranks ('none' to skip)")
    parser.add_argument('--images', nargs='+',
                        help='image files or globs (default: random '
                        'normal images)')
    parser.add_argument('--num-images', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--out', default='docs/rank_study.png',
                        help='PNG path; the table goes next to it (.md)')
    parser.add_argument('--json', metavar='PATH')
    parser.add_argument('--quick', action='store_true',
                        help='few small layers and images (a smoke test)')
    args = parser.parse_args(argv)
    if args.quick:
        args.ratios, args.layers, args.d_in = [0.5, 1, 2, 4], 6, [8, 16]
        args.num_images, args.size = 2, 64
    if args.layers < 1 or args.num_images < 1 or args.size < 1 or \
            not 0 < args.rel_tol < 1 or min(args.ratios) <= 0:
        parser.error('--layers, --num-images, --size, --ratios must be '
                     'positive and 0 < --rel-tol < 1')
    if not args.out.lower().endswith('.png'):
        parser.error(f'--out must be a .png path, got {args.out!r}')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    study = random_layer_study(args.ratios, layers=args.layers,
                               d_in_range=tuple(args.d_in),
                               weight_std=args.weight_std,
                               rel_tol=args.rel_tol, seed=args.seed)
    try:
        blocks = model_ranks(args.model, args.images, args.num_images,
                             args.size, args.rel_tol)
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f'error: {exc}')
    table = format_tables(study, blocks)
    print(table)
    plot(study, blocks, args.out)
    table_path = osp.splitext(args.out)[0] + '.md'
    atomic_write(table, table_path)
    result = dict(study=study, blocks=blocks, png=args.out,
                  table=table_path)
    if args.json:
        atomic_write(json.dumps(result, indent=1), args.json)
    print(f'wrote {args.out} and {table_path}')
    return result


if __name__ == '__main__':
    main()
