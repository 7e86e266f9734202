"""Comparing a deployed form of a model with the original."""
from typing import Sequence, Tuple, Union

import torch

Outputs = Union[torch.Tensor, Sequence[torch.Tensor]]


def _as_tuple(outputs: Outputs) -> Tuple[torch.Tensor, ...]:
    return (outputs, ) if isinstance(outputs, torch.Tensor) else \
        tuple(outputs)


def max_relative_error(actual: Outputs, expected: Outputs) -> float:
    """max |a - e| / max |e| per output, then the worst over all outputs.

    A tensor-level relative error: it stays meaningful where single values
    cross zero. Raises ValueError if the numbers of outputs differ.
    """
    actual, expected = _as_tuple(actual), _as_tuple(expected)
    if len(actual) != len(expected) or not expected:
        raise ValueError(f'got {len(actual)} outputs, expected '
                         f'{len(expected)}')
    return max(float((a - e).abs().max() / e.abs().max().clamp_min(1e-12))
               for a, e in zip(actual, expected))
