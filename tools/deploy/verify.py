"""Check an exported detector against mmdet's own inference on a COCO set.

Runs mmdet's ``inference_detector`` (the config's test pipeline and the
model's predict) and the ONNX file on every image, then prints the fraction
of detections that pair up (same label, IoU >= 0.98, score within 2e-3),
the worst box difference in pixels and the COCO bbox mAP of both; for
Mask R-CNN files also the worst mask IoU of the pairs and the segm mAP.
The image set defaults to the config's test set. For an INT8 file
(tools/deploy/quantize.py), ``--fp32 FP32.onnx`` adds the FP32 file's mAP:
PyTorch, FP32 and INT8 side by side (columns PT, F32, I8).

Exit code 1, with one ``error: ...`` line naming the file, when parity
misses its thresholds (printed with the result): at least 99% of the
untied detections pair up (``--min-matched``; untied: no other detection
of the image scores within 2e-3, so their pairing does not depend on tie
order) and the bbox (and segm) mAP of the untied detections differ by at
most 2% of PyTorch's (``--map-rel-tol``). Unusable files and arguments
also end in one ``error:`` line (exit 1; 2 for command-line errors).

Example::

    python tools/deploy/verify.py configs/demo/ssdlite_rexnet-1.0x_shapes.py \
        work_dirs/demo/model.pth work_dirs/demo/ssdlite.onnx \
        --runtime openvino
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from rexnet_det.checkpoint import CheckpointError  # noqa: E402
from rexnet_det.deploy.detector import (RUNTIMES,  # noqa: E402
                                        UnsupportedDetectorError,
                                        verify_detector)
from rexnet_det.deploy.detector.runtime import (RUNTIME_ERRORS,  # noqa: E402
                                                check_threads)
from rexnet_det.deploy.detector.verify import ParityThresholds  # noqa: E402
from rexnet_det.deploy.quantize.accuracy import (MAX_MAP_DROP,  # noqa: E402
                                                 compare_int8)
from rexnet_det.evaluation import format_metrics  # noqa: E402
from rexnet_det.utils.io import atomic_write  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the config the file was exported '
                        'from')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument('model', help='the exported .onnx file')
    parser.add_argument('--runtime', choices=RUNTIMES, default='ort')
    parser.add_argument('--ann-file', help='COCO annotations (default: the '
                        'config\'s test set)')
    parser.add_argument('--img-dir', help='image folder (default: the '
                        'config\'s test set)')
    parser.add_argument('--max-images', type=int,
                        help='only the first N images')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch and runtime threads (0: defaults; at '
                        'most the CPU count)')
    parser.add_argument('--json', metavar='PATH', help='also write the '
                        'figures as JSON')
    parser.add_argument('--fp32', metavar='ONNX', help='MODEL is an INT8 '
                        'file quantized from this FP32 file: report PyTorch, '
                        'FP32 and INT8 mAP side by side, and judge the INT8 '
                        'mAP drop instead of detection parity')
    parser.add_argument('--max-map-drop', type=float, default=MAX_MAP_DROP,
                        help='with --fp32: largest INT8 bbox/segm mAP drop '
                        'vs PyTorch (default: %(default)s)')
    defaults = ParityThresholds()
    parser.add_argument('--min-matched', type=float,
                        default=defaults.min_untied_matched,
                        help='least share of untied detections that must '
                        'pair up (default: %(default)s)')
    parser.add_argument('--map-rel-tol', type=float,
                        default=defaults.map_rel_tol,
                        help='largest |mAP difference| of the untied '
                        'detections as a share of PyTorch\'s (default: '
                        '%(default)s)')
    args = parser.parse_args(argv)
    try:
        check_threads(args.threads, '--threads')
        args.thresholds = ParityThresholds(args.min_matched,
                                           args.map_rel_tol)
    except ValueError as exc:
        parser.error(str(exc).replace('min_untied_matched', '--min-matched')
                     .replace('map_rel_tol', '--map-rel-tol'))
    if args.max_images is not None and args.max_images < 1:
        parser.error(f'--max-images must be >= 1, got {args.max_images}')
    return args


def main(argv: Optional[List[str]] = None):
    args = parse_args(argv)

    def progress(done: int, total: int) -> None:
        print(f'\r{done}/{total} images', end='' if done < total else '\n',
              file=sys.stderr, flush=True)

    try:
        verify = compare_int8 if args.fp32 else verify_detector
        report = verify(args.config, args.checkpoint, args.model,
                        *([args.fp32] if args.fp32 else []), args.ann_file,
                        args.img_dir, args.runtime, args.threads,
                        args.max_images, progress)
    except (UnsupportedDetectorError, CheckpointError) + RUNTIME_ERRORS \
            as exc:
        sys.exit(f'error: {exc}')
    label = {'ort': 'ORT', 'openvino': 'OV'}[args.runtime]
    if args.fp32:  # PyTorch, FP32 and INT8 side by side
        int8, report = report, report.verify
        tables = int8.tables()  # F32 / I8: the two files on `label`
    else:
        tables = {'PyTorch': report.metrics['reference'],
                  label: report.metrics['deployed']}
    if report.segm_metrics and not args.fp32:
        tables = {'box PT': tables['PyTorch'], f'box {label}': tables[label],
                  'seg PT': report.segm_metrics['reference'],
                  f'seg {label}': report.segm_metrics['deployed']}
    print(format_metrics(tables))
    print(report.summary())
    if args.fp32:
        print(int8.summary())
    failures = (int8.failures(args.max_map_drop) if args.fp32
                else report.failures(args.thresholds))
    if args.json:
        m = report.match
        atomic_write(json.dumps(dict(
            images=report.images, matched=m.matched, reference=m.reference,
            deployed=m.candidate, fraction=m.fraction,
            worst_box_diff=m.worst_box_diff,
            worst_score_diff=m.worst_score_diff, metrics=report.metrics,
            mask_pairs=m.mask_pairs, worst_mask_iou=m.worst_mask_iou,
            segm_metrics=report.segm_metrics, untied=m.untied,
            untied_fraction=m.untied_fraction, untied_map=report.untied_map,
            confident_matched=report.confident.matched,
            confident_reference=report.confident.reference,
            confident_deployed=report.confident.candidate,
            failures=failures, **(dict(fp32=int8.fp32) if args.fp32 else {})),
            indent=1), args.json)
    if args.fp32:
        print(f'threshold: INT8 mAP drop vs PyTorch <= {args.max_map_drop:g}')
    else:
        print(f'thresholds: {args.thresholds.describe()}')
    if failures:
        sys.exit(f'error: {args.model} does not reproduce {args.config} + '
                 f'{args.checkpoint}: {"; ".join(failures)}')
    print('accuracy: met' if args.fp32 else 'parity: met')
    return int8 if args.fp32 else report


if __name__ == '__main__':
    main()
