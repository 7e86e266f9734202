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
import sys

import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'tests',
                            'fixtures'))
from reference_outputs import (MAX_VALUES, SIZES,  # noqa: E402
                               clovaai_taps, record, timm_features)


def load_module(path, name):
    """Import a reference source file (clovaai's rexnetv1.py, ...)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
            timm_features(name.replace('timm_', ''), model, tensors, entry)
        entry['num_params'] = sum(p.numel() for p in model.parameters())
        torch.save(tensors, osp.join(args.out, f'{name}.pt'))
        index['models'][name] = entry
        print(f'{name}: {entry["num_params"]} params, outputs '
              f'{ {s: sorted(o) for s, o in entry["outputs"].items()} }')
    with open(osp.join(args.out, 'index.json'), 'w') as f:
        json.dump(index, f, indent=1)


if __name__ == '__main__':
    main()
