"""Export a detector (SSD, RetinaNet, Faster/Mask R-CNN) to ONE ONNX file.

Normalisation, anchors, box decoding, the score threshold, per-class NMS
and top-k are inside the graph (standard ONNX ops only); for two-stage
detectors also the RPN, RoIAlign, the RoI heads and mask pasting. The
file's metadata holds the test-time resize rule, class names and
thresholds. Input ``input``: float32 [N, 3, H, W] RGB 0-255, already
resized and padded (keep-ratio configs: to multiples of the
pad_size_divisor, any size, exactly as mmdet; ``--static-shape``: a fixed
canvas); outputs ``dets`` [N, K, 5] (x1, y1, x2, y2, score in input
pixels) and ``labels`` [N, K] (int64, -1 in empty slots), K =
max_per_img; Mask R-CNN also ``masks`` [N, K, H, W] (probabilities in
input pixels; --no-masks leaves them out). See docs/deployment.md.

Example::

    python tools/deploy/export.py \
        configs/demo/ssdlite_rexnet-1.0x_shapes.py work_dirs/demo/model.pth \
        --out work_dirs/demo/ssdlite.onnx
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from rexnet_det.checkpoint import CheckpointError  # noqa: E402
from rexnet_det.deploy.detector import (DEFAULT_OPSET,  # noqa: E402
                                        UnsupportedDetectorError,
                                        export_detector)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='detector config (path, '
                        'rexnet_det::... or mmdet::...)')
    parser.add_argument('checkpoint', help='its checkpoint (path or URL)')
    parser.add_argument('--out', required=True, help='.onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='fixed input size, a multiple of the model\'s '
                        'stride (default: the config\'s test resize; for '
                        'keep-ratio configs any size padded to the '
                        'pad_size_divisor, as mmdet does)')
    parser.add_argument('--static-shape', action='store_true',
                        help='keep-ratio configs: a fixed input canvas '
                        '(--shape or the config\'s scale) for runtimes that '
                        'need static shapes; detections then differ from '
                        'mmdet\'s (see docs/deployment.md)')
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='let the batch size vary (default: 1)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset, >= 11, >= 16 for two-stage '
                        f'(default {DEFAULT_OPSET})')
    parser.add_argument('--masks', action=argparse.BooleanOptionalAction,
                        help='output masks (default: if the model has a '
                        'mask head)')
    parser.add_argument('--no-align', action='store_true',
                        help='keep a ReXNet backbone\'s channel counts '
                        '(default: pad them to multiples of 4, same outputs)')
    args = parser.parse_args(argv)
    if not args.out.endswith('.onnx'):
        parser.error(f'--out must end with .onnx, got {args.out!r}')
    return args


def main(argv: Optional[List[str]] = None):
    args = parse_args(argv)
    try:
        meta = export_detector(args.config, args.checkpoint, args.out,
                               shape=args.shape,
                               dynamic_batch=args.dynamic_batch,
                               opset=args.opset, masks=args.masks,
                               align=not args.no_align,
                               static_shape=args.static_shape)
    except (UnsupportedDetectorError, CheckpointError, FileNotFoundError,
            ValueError) as exc:
        sys.exit(f'error: {exc}')
    rule = meta.resize
    h, w = rule.size or ('H', 'W')
    how = {'stretch': f'stretch to {w}x{h}',
           'keep_ratio': f'keep ratio within {rule.scale}, fit and pad to '
                         f'{w}x{h}',
           'keep_ratio_pad_divisor': f'keep ratio within {rule.scale}, pad '
                                     f'H and W to multiples of '
                                     f'{rule.divisor}'}[rule.mode]
    print(f'wrote {args.out} ({osp.getsize(args.out) / 1e6:.1f} MB): '
          f'{meta.detector}, input [{"N" if meta.dynamic_batch else 1}, 3, '
          f'{h}, {w}] ({how}), {len(meta.classes)} classes, score_thr '
          f'{meta.score_thr:g}, NMS IoU {meta.iou_threshold:g}, nms_pre '
          f'{meta.nms_pre}, K={meta.max_per_img}, '
          f'{"masks, " if meta.masks else ""}opset {args.opset}')
    return meta


if __name__ == '__main__':
    main()
