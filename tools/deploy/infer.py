"""Detect objects in images with an exported detector (ONNX file).

Prints the detections of each image (original-image pixels) and, with
``--show-dir``, draws them (boxes, and masks for Mask R-CNN files) as
``tools/test.py --show-dir`` does; images larger than
``--max-draw-side`` (default 1333 px) are drawn downscaled to it. Runs on
onnxruntime (``--runtime ort``, default) or OpenVINO (``--runtime
openvino``, forced to f32). Needs no PyTorch model, config or checkpoint.
Every failure (a model or image file that cannot be used, a bad argument)
is one ``error: ...`` line naming the file or value; exit code 1 (2 for
command-line errors).

Example::

    python tools/deploy/infer.py work_dirs/demo/ssdlite.onnx \
        data/shapes/val/000000.png data/shapes/val/000001.png \
        --show-dir work_dirs/demo/onnx_vis
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from rexnet_det.deploy.detector import (RUNTIMES,  # noqa: E402
                                        DeployedDetector, read_image)
from rexnet_det.deploy.detector.runtime import (RUNTIME_ERRORS,  # noqa: E402
                                                check_threads)
from rexnet_det.deploy.detector.visualize import (  # noqa: E402
    MAX_DRAW_SIDE, draw_detections)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', help='.onnx file from tools/deploy/export.py')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--show-dir', help='write drawn images here')
    parser.add_argument('--runtime', choices=RUNTIMES, default='ort')
    parser.add_argument('--threads', type=int, default=0,
                        help='runtime threads (0: its default; at most the '
                        'CPU count)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw and print detections above this score')
    parser.add_argument('--max-draw-side', type=int, default=MAX_DRAW_SIDE,
                        help='draw larger images downscaled to this side')
    args = parser.parse_args(argv)
    try:
        check_threads(args.threads, '--threads')
    except ValueError as exc:
        parser.error(str(exc))
    if args.max_draw_side < 1:
        parser.error(f'--max-draw-side must be >= 1, got '
                     f'{args.max_draw_side}')
    return args


def main(argv: Optional[List[str]] = None) -> list:
    args = parse_args(argv)
    try:
        detector = DeployedDetector(args.model, args.runtime, args.threads)
    except RUNTIME_ERRORS as exc:
        sys.exit(f'error: {exc}')
    results = []
    for path in args.images:
        try:
            result = detector.predict(path)
        except RUNTIME_ERRORS as exc:
            message = str(exc) if path in str(exc) else f'{path}: {exc}'
            sys.exit(f'error: {message}')
        results.append(result)
        shown = result.scores > args.score_thr
        masks = '' if result.masks is None else ' (with masks)'
        print(f'{path}: {len(result)} detections{masks}, '
              f'{int(shown.sum())} above {args.score_thr:g}')
        for box, score, label in zip(result.bboxes[shown],
                                     result.scores[shown],
                                     result.labels[shown]):
            print(f'  {detector.classes[label]:<16} {score:.3f}  '
                  + ' '.join(f'{v:7.1f}' for v in box))
        if args.show_dir:
            os.makedirs(args.show_dir, exist_ok=True)
            draw_detections(read_image(path), result, detector.classes,
                            osp.join(args.show_dir, osp.basename(path)),
                            detector.meta.palette, args.score_thr,
                            args.max_draw_side)
    if args.show_dir:
        print(f'drawn images in {args.show_dir}')
    return results


if __name__ == '__main__':
    main()
