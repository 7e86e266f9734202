"""Generate the built-in COCO-format shapes dataset.

    python tools/make_synthetic_coco.py --out data/shapes \
        --num-train 200 --num-val 50 --size 128 --seed 0

Writes OUT/{train,val}/*.png and OUT/annotations/instances_{train,val}.json
(classes: circle, rectangle, triangle, ellipse; polygon masks).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from rexnet_det.datasets.synthetic import (SyntheticCocoSpec,  # noqa: E402
                                           make_synthetic_coco)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the built-in COCO-format shapes dataset')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--size', type=int, default=128,
                        help='image height and width')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--max-objects', type=int, default=4)
    parser.add_argument('--hue-jitter', type=int, default=12,
                        help='hue deviation around each class colour '
                        '(90: colour tells nothing about the class)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        spec = SyntheticCocoSpec(size=args.size, max_objects=args.max_objects,
                                 hue_jitter=args.hue_jitter)
        paths = make_synthetic_coco(args.out, args.num_train, args.num_val,
                                    seed=args.seed, spec=spec)
    except ValueError as e:
        sys.exit(f'error: {e}')
    print(f'wrote {args.num_train} train / {args.num_val} val images of '
          f'{args.size}px to {paths["data_root"]}')
    print(f'annotations: {paths["train_ann"]}, {paths["val_ann"]}')


if __name__ == '__main__':
    main()
