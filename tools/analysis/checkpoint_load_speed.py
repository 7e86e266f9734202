"""Time the safe checkpoint loader against torch.load on a Mask R-CNN-sized
training checkpoint (interleaved rounds)::

    python tools/analysis/checkpoint_load_speed.py [--rounds 9] [--file F]
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

import rexnet_det  # noqa: E402,F401
from tools.lib.load_speed import (compare_loading,  # noqa: E402
                                  make_training_checkpoint)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=9)
    parser.add_argument('--file', help='checkpoint to time (default: write '
                        'a Mask R-CNN-ReXNet training checkpoint to a temp '
                        'folder)')
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f'--rounds must be >= 1, got {args.rounds}')
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or osp.join(tmp, 'mask_rcnn_training.pth')
        if not args.file:
            make_training_checkpoint(path)
        size = os.path.getsize(path) / 2**20
        results = compare_loading(path, args.rounds)
    print(f'{size:.0f} MiB checkpoint, {args.rounds} interleaved rounds')
    base = results['torch.load(weights_only=False)']['median']
    for name, r in results.items():
        print(f'{name:<34} {r["median"] * 1e3:8.1f} ms '
              f'[{r["min"] * 1e3:.1f}-{r["max"] * 1e3:.1f}]  '
              f'{r["median"] / base:.3f}x')
    return results


if __name__ == '__main__':
    main()
