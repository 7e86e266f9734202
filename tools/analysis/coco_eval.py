"""Evaluate a COCO results file against a COCO annotation file.

    python tools/analysis/coco_eval.py RESULTS.json ANN.json \
        [--types bbox segm]

Prints the 12 standard COCO metrics per IoU type (pycocotools). RESULTS.json
is what ``tools/test.py --out`` writes, or any COCO results list.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from rexnet_det.evaluation.coco import (IOU_TYPES,  # noqa: E402
                                        evaluate_coco, format_metrics)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='COCO evaluation of a results file')
    parser.add_argument('results', help='COCO results JSON')
    parser.add_argument('ann', help='COCO annotation JSON')
    parser.add_argument('--types', nargs='+', default=['bbox'],
                        choices=IOU_TYPES, help='IoU types to evaluate')
    parser.add_argument('--json-out', help='also write the metrics as JSON')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        metrics = evaluate_coco(args.results, args.ann, args.types)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    print(format_metrics(metrics))
    if args.json_out:
        with open(args.json_out, 'w') as f:
            json.dump(metrics, f, indent=1)


if __name__ == '__main__':
    main()
