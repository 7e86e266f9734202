"""Parameters and FLOPs with mmengine's counter, in the paper's convention.

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` (fvcore's jit counter)
counts one fused multiply-add as one "flop", i.e. it counts MACs. It counts
convs and linear layers (bias adds are not counted), plus one op per element
for each BatchNorm and a few other ops (upsampling, RoIAlign is skipped);
activations, pooling, ``mean`` and element-wise ``add``/``mul`` are ignored.

The ReXNet paper counts multiply-adds of convs and linear layers only
(the authors used ptflops with activations and pooling zeroed, following
MobileNetV2/V3; clovaai/rexnet#28). BatchNorm folds into the preceding conv
at inference, so "conv + linear MACs" is the number to compare with the
paper (:data:`rexnet_det.models.VARIANTS` holds the published figures).
Both numbers are reported.
"""
from typing import Any, Dict, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count

# mmengine operator names that are multiply-adds in the paper's sense.
MAC_OPERATORS = ('conv', 'linear', 'matmul', 'bmm', 'einsum')


def count_complexity(model: nn.Module, inputs: Tuple[Any, ...]
                     ) -> Dict[str, Any]:
    """Count parameters and FLOPs of ``model(*inputs)``.

    Args:
        model (nn.Module): The model, in the mode it should be counted in
            (eval for inference FLOPs).
        inputs (tuple): Positional inputs of its forward.

    Returns:
        dict: ``params`` (all parameters), ``flops`` (mmengine's total),
        ``macs`` (conv + linear multiply-adds, the paper's FLOPs),
        ``by_operator`` (mmengine's total per operator name) and
        ``unsupported`` (ops mmengine skipped, with counts).
    """
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    by_operator = dict(analyzer.by_operator())
    macs = sum(v for k, v in by_operator.items() if k in MAC_OPERATORS)
    return dict(params=int(parameter_count(model)['']),
                flops=int(analyzer.total()), macs=int(macs),
                by_operator={k: int(v) for k, v in by_operator.items()},
                unsupported=dict(analyzer.unsupported_ops()))


def image_complexity(model: nn.Module, height: int, width: int,
                     batch: int = 1) -> Dict[str, Any]:
    """:func:`count_complexity` of a model taking one image batch."""
    with torch.no_grad():
        return count_complexity(model, (torch.zeros(batch, 3, height,
                                                    width), ))
