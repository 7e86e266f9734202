"""Parameters and FLOPs of a ReXNet classifier, backbone or detector.

Counted with mmengine's FlopAnalyzer, which counts one multiply-add as one
FLOP. Two figures are printed: ``MACs`` (conv + linear multiply-adds, the
paper's convention; BatchNorm folds into the convs at inference) and
mmengine's total (which also counts one op per BatchNorm element). For
ReXNet classifiers at 224x224 the published numbers are shown next to them.

Examples::

    python tools/analysis/get_flops.py rexnet-1.0x
    python tools/analysis/get_flops.py rexnet-lite-1.3x --shape 224 224
    python tools/analysis/get_flops.py rexnet-1.0x-backbone --shape 320 320
    python tools/analysis/get_flops.py \
        configs/ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py
    python tools/analysis/get_flops.py rexnet-1.0x rexnet-1.3x --json out.json
"""
import argparse
import json
import os
import os.path as osp
import sys
import warnings
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

import torch  # noqa: E402

from rexnet_det.analysis.flops import (PAPER_COMPLEXITY,  # noqa: E402
                                       count_complexity, image_complexity)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Params and FLOPs (multiply-adds) of a ReXNet model')
    parser.add_argument(
        'models', nargs='+', metavar='CONFIG_OR_ARCH',
        help='an mmdet config path (detector) or a model name: '
        'rexnet-<w>x, rexnet-lite-<w>x, optionally with -backbone')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 224 224 for models, the '
                        "config's test Resize for detectors)")
    parser.add_argument('--json', metavar='PATH', help='also write JSON')
    args = parser.parse_args(argv)
    if args.shape and min(args.shape) < 1:
        parser.error(f'--shape must be positive, got {args.shape}')
    return args


def _detector_row(path: str, shape) -> dict:
    from rexnet_det.analysis.detectors import (build_detector,
                                               config_input_size,
                                               load_config, synthetic_batch)
    cfg = load_config(path)
    h, w = shape or config_input_size(cfg) or (800, 1333)
    model = build_detector(cfg, init=False).eval()
    inputs, samples = synthetic_batch(model, 1, h, w, training=False)
    forward = model.forward

    def tensor_forward(x):  # trace only the tensors (as mmdet's tool does)
        return forward(x, samples, mode='tensor')

    model.forward = tensor_forward
    with torch.no_grad():
        result = count_complexity(model, (inputs, ))
    result.update(model=path, kind='detector', height=h, width=w)
    result['parts'] = {
        name: int(sum(p.numel() for p in getattr(model, name).parameters()))
        for name in ('backbone', 'neck', 'rpn_head', 'roi_head', 'bbox_head')
        if getattr(model, name, None) is not None}
    return result


def _model_row(name: str, shape) -> dict:
    from rexnet_det.checkpoint import load_model
    model, spec, source = load_model(name)
    h, w = shape or (224, 224)
    result = image_complexity(model, h, w)
    result.update(model=spec.name, source=source,
                  kind='backbone' if spec.backbone else 'classifier',
                  height=h, width=w)
    paper = PAPER_COMPLEXITY.get((spec.arch, spec.width_mult))
    if paper and not spec.backbone and (h, w) == (224, 224):
        result['paper_params_m'], result['paper_flops_g'] = paper
        result['params_diff'] = result['params'] / 1e6 / paper[0] - 1
        result['flops_diff'] = result['macs'] / 1e9 / paper[1] - 1
    return result


def measure(model: str, shape=None) -> dict:
    """Complexity of one CONFIG_OR_ARCH argument."""
    if model.endswith('.py'):
        return _detector_row(model, shape)
    return _model_row(model, shape)


def format_table(rows: List[dict]) -> str:
    head = (f'{"model":<56} {"input":>9} {"params":>9} {"MACs":>9} '
            f'{"mmengine":>9} {"paper":>14} {"diff":>13}')
    lines = [head, '-' * len(head)]
    for r in rows:
        paper = diff = ''
        if 'paper_flops_g' in r:
            paper = f'{r["paper_params_m"]}M/{r["paper_flops_g"]}G'
            diff = f'{r["params_diff"]:+.1%}/{r["flops_diff"]:+.1%}'
        lines.append(
            f'{r["model"]:<56} {r["height"]:>4}x{r["width"]:<4} '
            f'{r["params"] / 1e6:>8.3f}M {r["macs"] / 1e9:>8.4f}G '
            f'{r["flops"] / 1e9:>8.4f}G {paper:>14} {diff:>13}')
    lines.append('MACs = conv + linear multiply-adds (the paper\'s FLOPs); '
                 'mmengine = FlopAnalyzer total (MACs + 1 op per BatchNorm '
                 'element + other supported ops); diff = params/MACs vs '
                 'paper.')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> List[dict]:
    args = parse_args(argv)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for model in args.models:
            try:
                rows.append(measure(model, args.shape))
            except (FileNotFoundError, ValueError) as exc:
                sys.exit(f'error: {exc}')
    print(format_table(rows))
    if args.json:
        tmp = f'{args.json}.tmp'
        with open(tmp, 'w') as f:
            json.dump(rows, f, indent=2)
        os.replace(tmp, args.json)
    return rows


if __name__ == '__main__':
    main()
