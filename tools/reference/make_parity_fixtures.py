"""Generate the parity fixtures in tests/fixtures/parity/ from the reference
implementations themselves.

Run once, in a throwaway venv that has the reference code (never commit it):

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm numpy
    git clone https://github.com/clovaai/rexnet /tmp/clovaai-rexnet
    /tmp/refvenv/bin/python tools/reference/make_parity_fixtures.py \
        --clovaai /tmp/clovaai-rexnet --out tests/fixtures/parity

For every reference model it builds the official module tree, fills it with
deterministic synthetic weights (tests/fixtures/synthetic_weights.py; BN
statistics included), runs it in eval mode at 224x224 and 257x321, and stores:
the key list with shapes, the seed, the logits and every tap (evenly
subsampled to at most MAX_VALUES values, plus per-channel means). The tests
regenerate the same weights in the reference layout, load them through
rexnet_det's converters and compare.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import re
import sys

import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'tests',
                            'fixtures'))
from synthetic_weights import (sample_indices, synthetic_input,  # noqa: E402
                               synthetic_state_dict)

SIZES = ((224, 224), (257, 321))
MAX_VALUES = 4096
SEED = 20210601


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dw_stride(block):
    return next(m for m in block.out if isinstance(m, torch.nn.Conv2d)
                and m.groups > 1).stride[0]


def clovaai_taps(model, x):
    """Taps 0-5 of an official model: the block output before every stride-2
    block, the last block, and the penultimate conv + BN + act."""
    feats = list(model.features)
    blocks = [m for m in feats if type(m).__name__ == 'LinearBottleneck']
    first = feats.index(blocks[0])
    out = model.features[:first](x)
    taps = []
    for i, block in enumerate(blocks):
        out = block(out)
        if i + 1 == len(blocks) or _dw_stride(blocks[i + 1]) == 2:
            taps.append(out)
    pen = model.features[first + len(blocks):first + len(blocks) + 3]
    taps.append(pen(out))
    return taps


def record(name, model, layout, tap_fn, extra=None):
    keys = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(synthetic_state_dict(SEED, keys))
    model.eval()
    entry = dict(name=name, layout=layout, seed=SEED, keys=keys,
                 outputs={}, **(extra or {}))
    tensors = {}
    with torch.no_grad():
        for h, w in SIZES:
            x = synthetic_input(SEED + h * 1000 + w, (1, 3, h, w))
            size = f'{h}x{w}'
            results = {}
            if tap_fn is not None:
                for i, t in enumerate(tap_fn(model, x)):
                    results[f'tap{i}'] = t
            if hasattr(model, 'forward') and entry.get('has_logits', True):
                results['logits'] = model(x)
            meta = {}
            for key, t in results.items():
                flat = t.flatten()
                idx = sample_indices(flat.numel(), MAX_VALUES)
                tensors[f'{size}/{key}/values'] = flat[idx].clone()
                tensors[f'{size}/{key}/channel_mean'] = t.mean(
                    dim=tuple(d for d in range(t.dim()) if d != 1)).clone()
                meta[key] = list(t.shape)
            entry['outputs'][size] = meta
    return entry, tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--clovaai', required=True,
                        help='checkout of github.com/clovaai/rexnet')
    parser.add_argument('--out', default='tests/fixtures/parity')
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)

    v1 = load_module(osp.join(args.clovaai, 'rexnetv1.py'), 'rexnetv1')
    lite = load_module(osp.join(args.clovaai, 'rexnetv1_lite.py'),
                       'rexnetv1_lite')
    import timm

    jobs = [
        ('clovaai_v1_1.0', lambda: v1.ReXNetV1(width_mult=1.0), 'clovaai',
         clovaai_taps, dict(width_mult=1.0,
                                                      arch='v1')),
        ('clovaai_v1_1.3', lambda: v1.ReXNetV1(width_mult=1.3), 'clovaai',
         clovaai_taps, dict(width_mult=1.3,
                                                      arch='v1')),
        ('clovaai_lite_1.0', lambda: lite.ReXNetV1_lite(multiplier=1.0),
         'clovaai', clovaai_taps,
         dict(width_mult=1.0, arch='lite')),
        ('timm_rexnet_100', lambda: timm.create_model('rexnet_100'), 'timm',
         None, dict(width_mult=1.0, arch='v1')),
        ('timm_rexnet_150', lambda: timm.create_model('rexnet_150'), 'timm',
         None, dict(width_mult=1.5, arch='v1')),
    ]
    index = dict(generator='tools/reference/make_parity_fixtures.py',
                 torch=torch.__version__, timm=timm.__version__,
                 sizes=[list(s) for s in SIZES], max_values=MAX_VALUES,
                 models={})
    for name, build, layout, tap_fn, extra in jobs:
        torch.manual_seed(0)
        model = build()
        entry, tensors = record(name, model, layout, tap_fn, extra)
        if layout == 'timm':
            # features_only maps (taps 0-4) from timm's own feature wrapper.
            feat = timm.create_model(name.replace('timm_', ''),
                                     features_only=True)
            full = model.state_dict()
            feat.load_state_dict(
                {k: full[re.sub(r'^features_(\d+)', r'features.\1', k)]
                 for k in feat.state_dict()}, strict=True)
            feat.eval()
            with torch.no_grad():
                for h, w in SIZES:
                    x = synthetic_input(SEED + h * 1000 + w, (1, 3, h, w))
                    size = f'{h}x{w}'
                    for i, t in enumerate(feat(x)):
                        flat = t.flatten()
                        idx = sample_indices(flat.numel(), MAX_VALUES)
                        tensors[f'{size}/tap{i}/values'] = flat[idx].clone()
                        tensors[f'{size}/tap{i}/channel_mean'] = t.mean(
                            dim=(0, 2, 3)).clone()
                        entry['outputs'][size][f'tap{i}'] = list(t.shape)
            entry['feature_info'] = feat.feature_info.get_dicts()
        entry['num_params'] = sum(p.numel() for p in model.parameters())
        torch.save(tensors, osp.join(args.out, f'{name}.pt'))
        index['models'][name] = entry
        print(f'{name}: {entry["num_params"]} params, outputs '
              f'{ {s: sorted(o) for s, o in entry["outputs"].items()} }')
    with open(osp.join(args.out, 'index.json'), 'w') as f:
        json.dump(index, f, indent=1)


if __name__ == '__main__':
    main()
