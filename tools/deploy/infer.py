"""Detect objects in images with an exported detector (ONNX file).

Prints the detections of each image (original-image pixels) and, with
``--show-dir``, draws them (boxes, and masks for Mask R-CNN files) as
``tools/test.py --show-dir`` does. Runs on
onnxruntime (``--runtime ort``, default) or OpenVINO (``--runtime
openvino``, forced to f32). Needs no PyTorch model, config or checkpoint.

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

from rexnet_det.datasets import ImageLoadError  # noqa: E402
from rexnet_det.deploy.detector import (RUNTIMES,  # noqa: E402
                                        DeployedDetector,
                                        NotADeployedDetectorError,
                                        RuntimeNotInstalledError, read_image)
from rexnet_det.deploy.detector.visualize import \
    draw_detections  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', help='.onnx file from tools/deploy/export.py')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--show-dir', help='write drawn images here')
    parser.add_argument('--runtime', choices=RUNTIMES, default='ort')
    parser.add_argument('--threads', type=int, default=0,
                        help='runtime threads (0: its default)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw and print detections above this score')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> list:
    args = parse_args(argv)
    try:
        detector = DeployedDetector(args.model, args.runtime, args.threads)
    except (FileNotFoundError, NotADeployedDetectorError,
            RuntimeNotInstalledError) as exc:
        sys.exit(f'error: {exc}')
    results = []
    for path in args.images:
        try:
            image = read_image(path)
        except ImageLoadError as exc:
            sys.exit(f'error: {exc}')
        result = detector.predict(image)
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
            draw_detections(image, result, detector.classes,
                            osp.join(args.show_dir, osp.basename(path)),
                            detector.meta.palette, args.score_thr)
    if args.show_dir:
        print(f'drawn images in {args.show_dir}')
    return results


if __name__ == '__main__':
    main()
