"""Export a ReXNet backbone (all six taps) or classifier to ONNX and check
it with onnxruntime.

CKPT_OR_ARCH is a checkpoint or a model name: ``rexnet-1.0x`` exports the
classifier (output ``logits``), ``rexnet-1.0x-backbone`` the backbone
(outputs ``tap0`` .. ``tap5``, strides 2, 4, 8, 16, 32, 32); ``--backbone``
exports the backbone of a classifier checkpoint. Batch, height and width are
dynamic. Uses the TorchScript-based exporter (``dynamo=False``, needs only
the ``onnx`` package). The file is written only if onnxruntime reproduces
PyTorch's outputs within 1e-4 relative error at a second input size.
ReXNets are exported channel-aligned (internal widths padded to multiples
of 4 with zeros, same outputs, faster in onnxruntime); ``--no-align``
exports the original widths.

Example::

    python tools/deploy/export_onnx.py rexnet-1.0x-backbone rexnet.onnx
    python tools/deploy/export_onnx.py rexnetv1_1.0.pth cls.onnx --fuse
"""
import argparse
import copy
import os
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

import torch  # noqa: E402

from rexnet_det.checkpoint import CheckpointError, load_model  # noqa: E402
from rexnet_det.deploy import max_relative_error  # noqa: E402
from rexnet_det.deploy.onnx import (DEFAULT_OPSET, OrtRunner,  # noqa: E402
                                    export_onnx)

TOLERANCE = 1e-4


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', metavar='CKPT_OR_ARCH',
                        help='checkpoint path or model name')
    parser.add_argument('out', metavar='OUT', help='.onnx file to write')
    parser.add_argument('--backbone', action='store_true',
                        help='export the backbone (all taps) of a classifier')
    parser.add_argument('--fuse', action='store_true',
                        help='export the fused form (BN folded; onnxruntime '
                        'folds BN itself, so this changes little)')
    parser.add_argument('--no-align', action='store_true',
                        help='keep the original channel counts (default: '
                        'pad internal widths to multiples of 4)')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224],
                        metavar=('H', 'W'), help='tracing input size')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    parser.add_argument('--static', action='store_true',
                        help='fixed input shape instead of dynamic axes')
    parser.add_argument('--force', action='store_true',
                        help='overwrite OUT if it exists')
    args = parser.parse_args(argv)
    if not args.out.endswith('.onnx'):
        parser.error(f'OUT must end with .onnx, got {args.out!r}')
    return args


def as_backbone(model):
    """The classifier's backbone rebuilt with all six taps."""
    from rexnet_det import ReXNet, load_pretrained
    backbone = ReXNet(width_mult=model.backbone.width_mult,
                      depth_mult=model.backbone.depth_mult,
                      arch=model.backbone.arch,
                      out_indices=(0, 1, 2, 3, 4, 5))
    load_pretrained(backbone, model.state_dict())
    return backbone.eval()


def check(model, path: str, x: torch.Tensor) -> float:
    """Relative error of onnxruntime vs PyTorch on input `x`."""
    with torch.no_grad():
        expected = model(x)
    return max_relative_error(OrtRunner(path)(x), expected)


def main(argv: Optional[List[str]] = None) -> float:
    args = parse_args(argv)
    if osp.exists(args.out) and not args.force:
        sys.exit(f'error: {args.out} exists; pass --force to overwrite')
    try:
        model, spec, source = load_model(args.model)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        sys.exit(f'error: {exc}')
    if args.backbone and not spec.backbone:
        model = as_backbone(model)
    if args.fuse:
        model = copy.deepcopy(model).fuse(channels_last=False)
    tmp = f'{args.out}.unchecked.onnx'
    export_onnx(model, tmp, input_shape=(1, 3, *args.shape),
                opset=args.opset, dynamic=not args.static,
                align=not args.no_align)
    # Dynamic exports are checked at another batch and size than traced.
    h, w = args.shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, h, w, generator=gen) if args.static else \
        torch.randn(2, 3, h + 32, w - 32 if w > 64 else w + 32, generator=gen)
    error = check(model, tmp, x)
    if error > TOLERANCE:
        sys.exit(f'error: onnxruntime differs from PyTorch by {error:.2e} '
                 f'(relative) > {TOLERANCE:g}; kept {tmp} for inspection')
    os.replace(tmp, args.out)
    print(f'{spec.name} from {source} -> {args.out} (opset {args.opset}, '
          f'{"static" if args.static else "dynamic batch/height/width"}'
          f'{", unaligned" if args.no_align else ", channel-aligned"}); '
          f'onnxruntime vs PyTorch max relative error {error:.2e}')
    return error


if __name__ == '__main__':
    main()
