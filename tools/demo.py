"""The main job of `make demo`: train Mask R-CNN-ReXNet on the built-in
shapes data on the CPU, evaluate it with COCO metrics, draw its predictions
(logic in tools.lib.demo)::

    python tools/demo.py [--out-dir work_dirs/demo] [--threads 1]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import rexnet_det  # noqa: E402,F401
from tools.lib.demo import DemoOptions, run_demo  # noqa: E402


def parse_args(argv=None) -> DemoOptions:
    d = DemoOptions()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default=d.out_dir,
                        help='where data, checkpoint, log, results and '
                        'pictures go')
    parser.add_argument('--config', default=d.config)
    parser.add_argument('--num-train', type=int, default=d.num_train)
    parser.add_argument('--num-val', type=int, default=d.num_val)
    parser.add_argument('--size', type=int, default=d.size,
                        help='image size (the long side)')
    parser.add_argument('--min-aspect', type=float, default=d.min_aspect,
                        help='smallest short / long side ratio of the '
                        'images (1: square)')
    parser.add_argument('--epochs', type=int, default=None,
                        help="training epochs (default: the config's)")
    parser.add_argument('--seed', type=int, default=d.seed)
    parser.add_argument(
        '--threads', type=int, default=d.threads,
        help='torch CPU threads. 1 is the default: with 2 threads on a '
        '2-core machine that other jobs share, training is several times '
        'slower (OpenMP threads wait for each other)')
    parser.add_argument('--num-vis', type=int, default=d.num_vis,
                        help='validation images to draw')
    args = parser.parse_args(argv)
    for name in ('num_train', 'num_val', 'size', 'threads'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{getattr(args, name)}')
    return DemoOptions(**vars(args))


if __name__ == '__main__':
    sys.exit(run_demo(parse_args()))
