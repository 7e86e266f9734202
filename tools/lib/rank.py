"""Matrix rank of features: the diagnostic behind ReXNet's design (§3 of
the paper).

Random-layer study: a layer ``f(W X)`` with ``X`` in R^{d_in x N} and
``W`` in R^{d_out x d_in} (standard normal entries), for an expansion
ratio ``r = d_out / d_in``; its normalised rank is ``rank(f(WX)) / d_out``,
averaged over many random layers. The same ``W X`` is passed through every
activation, so activations are compared on identical layers.

Three rank measures are reported, all divided by the number of rows:

* ``strict``: numerical rank at float32 precision (singular values above
  ``max(rows, cols) * eps32 * s_max``, as ``torch.linalg.matrix_rank``);
* ``significant``: singular values above ``rel_tol * s_max`` (default 0.1);
* ``effective``: exp of the entropy of the normalised singular values
  (Roy & Vetterli, 2007), a threshold-free measure.

``significant_centered`` repeats ``significant`` after removing each row's
mean, which separates a rank effect from the rank-one mean component.
"""
import math
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    'linear': lambda z: z,
    'relu': F.relu,
    'relu6': F.relu6,
    'silu': F.silu,
}
MEASURES = ('strict', 'significant', 'effective', 'significant_centered')
_EPS32 = torch.finfo(torch.float32).eps


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values (float64, descending) of a 2-D matrix; a wide matrix
    goes through its Gram matrix, which is exact enough for the measures
    here (relative resolution ~1e-8 of the largest value)."""
    y = matrix.detach().to(torch.float64)
    rows, cols = y.shape
    if cols > 4 * rows:
        eig = torch.linalg.eigvalsh(y @ y.T).clamp_min(0).sqrt()
        return eig.flip(0)
    return torch.linalg.svdvals(y)


def rank_measures(matrix: torch.Tensor, rel_tol: float = 0.1
                  ) -> Dict[str, float]:
    """The normalised rank measures of one matrix (rows = channels)."""
    rows, cols = matrix.shape
    s = singular_values(matrix)
    out = dict(strict=0., significant=0., effective=0.,
               significant_centered=0.)
    if s.numel() and s[0] > 0:
        out['strict'] = int((s > s[0] * max(rows, cols) * _EPS32).sum())
        out['significant'] = int((s > rel_tol * s[0]).sum())
        p = s / s.sum()
        p = p[p > 0]
        out['effective'] = float(torch.exp(-(p * p.log()).sum()))
    centered = singular_values(matrix - matrix.mean(1, keepdim=True))
    if centered.numel() and centered[0] > 0:
        out['significant_centered'] = int(
            (centered > rel_tol * centered[0]).sum())
    return {k: v / rows for k, v in out.items()}


def random_layer_study(ratios: Sequence[float],
                       activations: Sequence[str] = ('linear', 'relu',
                                                     'relu6', 'silu'),
                       layers: int = 100,
                       d_in_range: Tuple[int, int] = (16, 48),
                       weight_std: str = 'unit',
                       rel_tol: float = 0.1,
                       seed: int = 0) -> Dict:
    """Average normalised rank of ``f(WX)`` over random layers.

    Args:
        ratios: Expansion ratios ``d_out / d_in`` to test.
        activations: Names from :data:`ACTIVATIONS`.
        layers (int): Random layers per ratio. Default: 100.
        d_in_range (tuple): ``d_in`` is drawn uniformly from this closed
            range. Default: (16, 48).
        weight_std (str): ``'unit'`` (W ~ N(0, 1)) or ``'fan_in'``
            (W ~ N(0, 1 / d_in), unit-variance pre-activations).
        rel_tol (float): Threshold of the ``significant`` rank.
        seed (int): Random seed.

    Returns:
        dict: ``ratios``, ``settings`` and ``mean`` / ``std``:
        ``{activation: {measure: [value per ratio]}}``.

    Raises:
        ValueError: On an unknown activation, weight_std or a bad range.
    """
    unknown = [a for a in activations if a not in ACTIVATIONS]
    if unknown:
        raise ValueError(f'unknown activations {unknown}; choose from '
                         f'{sorted(ACTIVATIONS)}')
    if weight_std not in ('unit', 'fan_in'):
        raise ValueError("weight_std must be 'unit' or 'fan_in', got "
                         f'{weight_std!r}')
    lo, hi = d_in_range
    if not 1 <= lo <= hi or layers < 1 or min(ratios) <= 0:
        raise ValueError(f'need 1 <= d_in_range[0] <= d_in_range[1], '
                         f'layers >= 1 and ratios > 0; got {d_in_range}, '
                         f'{layers}, {list(ratios)}')
    gen = torch.Generator().manual_seed(seed)
    values = {a: {m: [[] for _ in ratios] for m in MEASURES}
              for a in activations}
    for i, ratio in enumerate(ratios):
        for _ in range(layers):
            d_in = int(torch.randint(lo, hi + 1, (), generator=gen))
            d_out = max(1, round(ratio * d_in))
            n = 2 * max(d_in, d_out)  # never the limiting dimension
            w = torch.randn(d_out, d_in, generator=gen, dtype=torch.float64)
            if weight_std == 'fan_in':
                w /= math.sqrt(d_in)
            z = w @ torch.randn(d_in, n, generator=gen, dtype=torch.float64)
            for act in activations:
                for m, v in rank_measures(ACTIVATIONS[act](z),
                                          rel_tol).items():
                    values[act][m][i].append(v)
    mean = {a: {m: [sum(v) / len(v) for v in per] for m, per in d.items()}
            for a, d in values.items()}
    std = {a: {m: [float(torch.tensor(v).std()) if len(v) > 1 else 0.
                   for v in per] for m, per in d.items()}
           for a, d in values.items()}
    return dict(ratios=list(ratios), mean=mean, std=std, settings=dict(
        layers=layers, d_in_range=list(d_in_range), weight_std=weight_std,
        rel_tol=rel_tol, seed=seed, n='2 * max(d_in, d_out)'))


def feature_ranks(backbone: nn.Module, images: torch.Tensor,
                  rel_tol: float = 0.1) -> List[Dict]:
    """Normalised rank of the output of the stem, every block and the
    penultimate conv of a ReXNet on a batch of images.

    Each ``(N, C, H, W)`` output is read as a ``C x (N*H*W)`` matrix.

    Returns:
        list[dict]: One row per layer: ``layer``, ``channels``, ``stride``,
        ``expand_ratio`` (blocks), ``samples`` (``N*H*W``, which bounds the
        rank) and the :data:`MEASURES`.
    """
    from rexnet_det.models import ReXNet
    if not isinstance(backbone, ReXNet):
        raise TypeError(f'feature_ranks needs a ReXNet, got '
                        f'{type(backbone).__name__}')
    named = [('stem', backbone.stem, None, 2)]
    stride = 2
    for i, (block, cfg) in enumerate(zip(backbone.blocks,
                                         backbone.arch_spec.blocks)):
        stride *= cfg.stride
        named.append((f'blocks.{i}', block, cfg.expand_ratio, stride))
    if backbone.pen is not None:
        named.append(('pen', backbone.pen, None, stride))
    outputs = {}
    handles = [module.register_forward_hook(
        lambda m, i, o, name=name: outputs.__setitem__(name, o))
        for name, module, _, _ in named]
    try:
        with torch.no_grad():
            backbone(images)
    finally:
        for h in handles:
            h.remove()
    rows = []
    for name, _, ratio, s in named:
        feat = outputs[name]
        matrix = feat.transpose(0, 1).reshape(feat.shape[1], -1)
        rows.append(dict(layer=name, channels=int(feat.shape[1]), stride=s,
                         expand_ratio=ratio, samples=int(matrix.shape[1]),
                         **rank_measures(matrix, rel_tol)))
    return rows
