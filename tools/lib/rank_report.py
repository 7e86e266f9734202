"""Report of ReXNet's rank diagnostic (``tools/analysis/rank_study.py``):
images for the per-block study, markdown tables and the plot.

The measures themselves are in :mod:`tools.lib.rank`.
"""
import glob
from typing import List, Optional

import torch

from rexnet_det.checkpoint import load_model
from rexnet_det.models import ReXNet
from rexnet_det.utils.io import atomic_output
from .rank import MEASURES, feature_ranks

ACT_STYLE = {'linear': ('k', ':'), 'relu': ('tab:blue', '-'),
             'relu6': ('tab:orange', '-'), 'silu': ('tab:green', '-')}


def load_images(patterns: Optional[List[str]], num: int,
                size: int) -> torch.Tensor:
    """Images normalised with the ImageNet mean/std, or random ones."""
    if not patterns:
        gen = torch.Generator().manual_seed(0)
        return torch.randn(num, 3, size, size, generator=gen)
    import mmcv
    files = sorted(f for p in patterns for f in glob.glob(p))
    if not files:
        raise FileNotFoundError(f'no image matches {patterns}')
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    batch = []
    for path in files[:num]:
        img = mmcv.imread(path, channel_order='rgb')
        if img is None:
            raise FileNotFoundError(f'cannot read image {path}')
        img = mmcv.imresize(img, (size, size))
        batch.append((torch.from_numpy(img).permute(2, 0, 1).float() - mean)
                     / std)
    return torch.stack(batch)


def model_ranks(model_name: str, image_patterns: Optional[List[str]],
                num_images: int, size: int, rel_tol: float) -> Optional[dict]:
    """Per-block ranks of a model name or checkpoint (None for 'none')."""
    if model_name.lower() == 'none':
        return None
    model, spec, source = load_model(model_name)
    backbone = model if isinstance(model, ReXNet) else model.backbone
    images = load_images(image_patterns, num_images, size)
    return dict(model=spec.name, source=source,
                images='random normal' if not image_patterns else
                f'{len(images)} files', size=size,
                rows=feature_ranks(backbone.eval(), images, rel_tol))


def format_tables(study: dict, blocks: Optional[dict]) -> str:
    s = study['settings']
    lines = [
        '## Random single layers f(WX)', '',
        f'{s["layers"]} random layers per ratio, d_in in '
        f'[{s["d_in_range"][0]}, {s["d_in_range"][1]}], N = {s["n"]}, '
        f'W ~ N(0, {"1" if s["weight_std"] == "unit" else "1/d_in"}), '
        f'X ~ N(0, 1); significant rank: singular values > '
        f'{s["rel_tol"]:g} x the largest. Mean normalised rank '
        '(rank / d_out).', '']
    acts = list(study['mean'])
    for measure in MEASURES:
        lines.append(f'**{measure}**')
        lines.append('')
        lines.append('| d_out/d_in | ' + ' | '.join(acts) + ' |')
        lines.append('|---' * (len(acts) + 1) + '|')
        for i, r in enumerate(study['ratios']):
            lines.append(f'| {r:g} | ' + ' | '.join(
                f'{study["mean"][a][measure][i]:.3f}' for a in acts) + ' |')
        lines.append('')
    if blocks:
        lines += [f'## Per-block rank of {blocks["model"]} '
                  f'({blocks["source"]}), {blocks["images"]} images of '
                  f'{blocks["size"]}x{blocks["size"]}', '',
                  'Each output is a channels x (N*H*W) matrix; its rank '
                  'cannot exceed min(channels, N*H*W) (column "cap").', '',
                  '| layer | channels | stride | expand | cap | strict | '
                  'significant | effective |',
                  '|---|---|---|---|---|---|---|---|']
        for r in blocks['rows']:
            cap = min(r['channels'], r['samples']) / r['channels']
            lines.append(
                f'| {r["layer"]} | {r["channels"]} | {r["stride"]} | '
                f'{r["expand_ratio"] or "-"} | {cap:.3f} | '
                f'{r["strict"]:.3f} | {r["significant"]:.3f} | '
                f'{r["effective"]:.3f} |')
    return '\n'.join(lines) + '\n'


def plot(study: dict, blocks: Optional[dict], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = 3 if blocks else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    ratios = study['ratios']
    for ax, measure in zip(axes, ('significant', 'effective')):
        for act, values in study['mean'].items():
            color, style = ACT_STYLE.get(act, (None, '-'))
            mean = values[measure]
            std = study['std'][act][measure]
            ax.plot(ratios, mean, style, color=color, marker='o', ms=3,
                    label=act)
            ax.fill_between(ratios, [m - s for m, s in zip(mean, std)],
                            [m + s for m, s in zip(mean, std)],
                            color=color, alpha=0.15)
        ax.set_xscale('log')
        ax.minorticks_off()
        ax.set_xticks(ratios)
        ax.set_xticklabels([f'{r:g}' for r in ratios])
        ax.set_xlabel('expansion ratio d_out / d_in')
        ax.set_ylabel(f'{measure} rank / d_out')
        ax.set_title(f'random layers f(WX): {measure} rank')
        ax.grid(alpha=0.3)
        ax.legend()
    if blocks:
        ax = axes[2]
        rows = blocks['rows']
        x = range(len(rows))
        for measure, color in (('significant', 'tab:red'),
                               ('effective', 'tab:purple')):
            ax.plot(x, [r[measure] for r in rows], marker='o', ms=3,
                    color=color, label=measure)
        ax.set_xticks(list(x))
        ax.set_xticklabels([r['layer'].replace('blocks.', 'b')
                            for r in rows], rotation=90, fontsize=7)
        ax.set_ylabel('rank / channels')
        ax.set_ylim(0, 1.05)
        ax.set_title(f'{blocks["model"]}: output rank per block')
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120, format='png')
    plt.close(fig)
