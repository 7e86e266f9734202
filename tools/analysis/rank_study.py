"""ReXNet's rank diagnostic: random single layers and a model's blocks.

(1) Reproduces the paper's §3 study: the average normalised rank of
``f(WX)`` over random layers against the expansion ratio ``d_out / d_in``,
for linear, ReLU, ReLU6 and SiLU (rexnet_det/analysis/rank.py defines the
measures). (2) Reports the normalised rank of the stem, every block and the
penultimate conv of a model or checkpoint on a batch of images. Writes a PNG
(two or three panels), a markdown table and optionally JSON.

Examples::

    python tools/analysis/rank_study.py                 # docs/rank_study.*
    python tools/analysis/rank_study.py --model rexnetv1_1.0.pth \
        --images demo/*.jpg --out work_dirs/rank.png
    python tools/analysis/rank_study.py --weight-std fan_in --layers 200
    python tools/analysis/rank_study.py --quick --out /tmp/rank.png
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

import torch  # noqa: E402

from rexnet_det.analysis.rank import (MEASURES, feature_ranks,  # noqa: E402
                                      random_layer_study)

ACT_STYLE = {'linear': ('k', ':'), 'relu': ('tab:blue', '-'),
             'relu6': ('tab:orange', '-'), 'silu': ('tab:green', '-')}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ratios', type=float, nargs='+',
                        default=[0.5, 1, 1.5, 2, 3, 4, 6, 8],
                        help='expansion ratios d_out / d_in')
    parser.add_argument('--layers', type=int, default=100,
                        help='random layers per ratio')
    parser.add_argument('--d-in', type=int, nargs=2, default=[16, 48],
                        metavar=('MIN', 'MAX'), help='range of d_in')
    parser.add_argument('--weight-std', choices=['unit', 'fan_in'],
                        default='unit', help="W ~ N(0, 1) ('unit') or "
                        'N(0, 1/d_in)')
    parser.add_argument('--rel-tol', type=float, default=0.1,
                        help='threshold of the significant rank, relative '
                        'to the largest singular value')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--model', default='rexnet-1.0x-backbone',
                        help='model name or checkpoint for the per-block '
                        "ranks ('none' to skip)")
    parser.add_argument('--images', nargs='+',
                        help='image files or globs (default: random '
                        'normal images)')
    parser.add_argument('--num-images', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--out', default='docs/rank_study.png',
                        help='PNG path; the table goes next to it (.md)')
    parser.add_argument('--json', metavar='PATH')
    parser.add_argument('--quick', action='store_true',
                        help='few small layers and images (a smoke test)')
    args = parser.parse_args(argv)
    if args.quick:
        args.ratios, args.layers, args.d_in = [0.5, 1, 2, 4], 6, [8, 16]
        args.num_images, args.size = 2, 64
    if args.layers < 1 or args.num_images < 1 or args.size < 1 or \
            not 0 < args.rel_tol < 1 or min(args.ratios) <= 0:
        parser.error('--layers, --num-images, --size, --ratios must be '
                     'positive and 0 < --rel-tol < 1')
    if not args.out.lower().endswith('.png'):
        parser.error(f'--out must be a .png path, got {args.out!r}')
    return args


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


def model_ranks(args) -> Optional[dict]:
    if args.model.lower() == 'none':
        return None
    from rexnet_det import ReXNet
    from rexnet_det.checkpoint import load_model
    model, spec, source = load_model(args.model)
    backbone = model if isinstance(model, ReXNet) else model.backbone
    images = load_images(args.images, args.num_images, args.size)
    return dict(model=spec.name, source=source,
                images='random normal' if not args.images else
                f'{len(images)} files', size=args.size,
                rows=feature_ranks(backbone.eval(), images, args.rel_tol))


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
    tmp = f'{path}.tmp.png'
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def _write(path: str, text: str) -> None:
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    study = random_layer_study(args.ratios, layers=args.layers,
                               d_in_range=tuple(args.d_in),
                               weight_std=args.weight_std,
                               rel_tol=args.rel_tol, seed=args.seed)
    try:
        blocks = model_ranks(args)
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f'error: {exc}')
    table = format_tables(study, blocks)
    print(table)
    plot(study, blocks, args.out)
    table_path = osp.splitext(args.out)[0] + '.md'
    _write(table_path, table)
    result = dict(study=study, blocks=blocks, png=args.out,
                  table=table_path)
    if args.json:
        _write(args.json, json.dumps(result, indent=1))
    print(f'wrote {args.out} and {table_path}')
    return result


if __name__ == '__main__':
    main()
