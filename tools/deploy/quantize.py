"""INT8 post-training quantization of an exported detector or backbone.

SOURCE is the config a detector file was exported from with
tools/deploy/export.py (calibration images come from its data set, resized
as the file expects), or an image folder for backbone / classifier files
from tools/deploy/export_onnx.py (ImageNet evaluation preprocessing).
onnxruntime's static QDQ quantization after quant_pre_process; only the
network is quantized (decoding, NMS, RoIAlign and mask pasting stay
float). The INT8 file keeps the input, outputs and metadata of the FP32
file, so infer.py, verify.py (with --fp32) and DeployedDetector take it
as it is; stock onnxruntime and OpenVINO run it. See docs/deployment.md.

Example::

    python tools/deploy/quantize.py \
        configs/demo/ssdlite_rexnet-1.0x_shapes.py \
        work_dirs/demo/ssdlite.onnx --out work_dirs/demo/ssdlite.int8.onnx
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from rexnet_det.datasets import ImageLoadError  # noqa: E402
from rexnet_det.deploy.detector import NotADeployedDetectorError  # noqa
from rexnet_det.deploy.quantize import (METHODS, NETWORK_OPS,  # noqa: E402
                                        QuantizeOptions, quantize_file)
from rexnet_det.deploy.quantize.layers import format_layers  # noqa: E402
from rexnet_det.utils.io import atomic_write  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    d = QuantizeOptions()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('source', metavar='CONFIG_OR_IMAGE_DIR',
                        help='detector config, or an image folder for '
                        'backbone/classifier files')
    parser.add_argument('model', help='the FP32 .onnx file')
    parser.add_argument('--out', required=True, help='INT8 .onnx to write')
    parser.add_argument('--num-images', type=int, default=d.num_images,
                        help=f'calibration images (default {d.num_images})')
    parser.add_argument('--method', choices=METHODS, default=d.method,
                        help='calibration method')
    parser.add_argument('--per-tensor', action='store_true',
                        help='one weight scale per tensor (default: per '
                        'output channel)')
    parser.add_argument('--activations', choices=['u8', 's8'],
                        default=d.activations)
    parser.add_argument('--weights', choices=['u8', 's8'], default=d.weights)
    parser.add_argument('--reduce-range', action='store_true',
                        help='7-bit weights (x86 CPUs without VNNI)')
    parser.add_argument('--float-ops', nargs='+', default=[],
                        metavar='OP', help=f'op types kept float inside the '
                        f'network (quantized: {" ".join(NETWORK_OPS)})')
    parser.add_argument('--float-nodes', metavar='REGEX',
                        help="network nodes kept float by name, e.g. '/se/'")
    parser.add_argument('--split', choices=['train', 'val', 'test'],
                        default=d.split, help='detectors: data split to '
                        'calibrate on')
    parser.add_argument('--report', metavar='PATH', help='write the per-'
                        'tensor SQNR/cosine report (JSON) and print the '
                        'worst tensors')
    parser.add_argument('--report-images', type=int, default=4,
                        help='calibration images the report runs on')
    args = parser.parse_args(argv)
    if not args.out.endswith('.onnx'):
        parser.error(f'--out must end with .onnx, got {args.out!r}')
    if args.report_images < 1:
        parser.error(f'--report-images must be >= 1, got '
                     f'{args.report_images}')
    return args


def main(argv: Optional[List[str]] = None):
    args = parse_args(argv)
    try:
        options = QuantizeOptions(
            num_images=args.num_images, method=args.method,
            per_channel=not args.per_tensor, activations=args.activations,
            weights=args.weights, reduce_range=args.reduce_range,
            float_ops=tuple(args.float_ops), float_nodes=args.float_nodes,
            split=args.split)
        result = quantize_file(
            args.source, args.model, args.out, options,
            min(args.report_images, args.num_images) if args.report else 0)
    except (NotADeployedDetectorError, FileNotFoundError, ImageLoadError,
            ValueError) as exc:
        sys.exit(f'error: {exc}')
    ops = ', '.join(f'{k} {v}' for k, v in sorted(result.op_counts.items()))
    print(f'wrote {args.out} ({osp.getsize(args.out) / 1e6:.1f} MB, from '
          f'{osp.getsize(args.model) / 1e6:.1f} MB): {result.nodes} network '
          f'nodes quantized ({ops}); {options.num_images} calibration '
          f'images, {options.method}, '
          f'{"per-channel" if options.per_channel else "per-tensor"} '
          f'{options.weights} weights, {options.activations} activations'
          f'{", reduce_range" if options.reduce_range else ""}')
    if args.report:
        atomic_write(json.dumps(result.layers, indent=1), args.report)
        print(f'per-tensor errors on {args.report_images} calibration '
              f'images (worst first; all in {args.report}):')
        print(format_layers(result.layers))
    return result


if __name__ == '__main__':
    main()
