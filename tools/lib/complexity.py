"""Parameters and FLOPs of classifiers, backbones and detectors: the one
counter behind ``tools/analysis/get_flops.py``, ``model_zoo.py`` and the
benchmarks (mmengine's FlopAnalyzer, see :mod:`.flops`)."""
from typing import List, Optional, Tuple

import torch

from rexnet_det.checkpoint import load_model
from rexnet_det.models import VARIANTS
from .detectors import (build_detector, config_input_size, load_config,
                        synthetic_batch)
from .flops import count_complexity, image_complexity


def detector_complexity(path: str, shape: Optional[Tuple[int, int]] = None
                        ) -> dict:
    """Complexity of a detector config's ``tensor`` forward (backbone, neck
    and heads on one image; NMS and RoIAlign are not counted), with the
    parameters of each part."""
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
    # the data preprocessor pads to its size divisor: count what runs
    result.update(model=path, kind='detector', height=inputs.shape[-2],
                  width=inputs.shape[-1])
    result['parts'] = {
        name: int(sum(p.numel() for p in getattr(model, name).parameters()))
        for name in ('backbone', 'neck', 'rpn_head', 'roi_head', 'bbox_head')
        if getattr(model, name, None) is not None}
    with torch.no_grad():
        result['backbone'] = count_complexity(model.backbone, (inputs, ))
    return result


def model_complexity(name: str, shape: Optional[Tuple[int, int]] = None
                     ) -> dict:
    """Complexity of a model name or checkpoint (classifier or backbone),
    with the paper's figures for released classifiers at 224x224."""
    model, spec, source = load_model(name)
    h, w = shape or (224, 224)
    result = image_complexity(model, h, w)
    result.update(model=spec.name, source=source,
                  kind='backbone' if spec.backbone else 'classifier',
                  height=h, width=w)
    variant = next((v for v in VARIANTS.values() if (v.arch, v.width_mult)
                    == (spec.arch, spec.width_mult)), None)
    if variant and not spec.backbone and (h, w) == (224, 224):
        result['paper_params_m'] = variant.params_m
        result['paper_flops_g'] = variant.flops_g
        result['params_diff'] = result['params'] / 1e6 / variant.params_m - 1
        result['flops_diff'] = result['macs'] / 1e9 / variant.flops_g - 1
    return result


def complexity(model: str, shape: Optional[Tuple[int, int]] = None) -> dict:
    """Complexity of a detector config (``.py``, ``mmdet::``,
    ``rexnet_det::``) or a model name / checkpoint."""
    if model.endswith('.py'):
        return detector_complexity(model, shape)
    return model_complexity(model, shape)


def format_table(rows: List[dict]) -> str:
    """The table ``tools/analysis/get_flops.py`` prints."""
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
