"""Fold BatchNorm into the convs of a ReXNet and save the inference form.

CKPT_OR_ARCH is a checkpoint (clovaai, timm or rexnet_det layout; the
variant is inferred) or a model name (random weights), e.g.
``rexnet-1.0x`` or ``rexnet-lite-1.3x-backbone``. The fused model is
checked against the unfused one on a random batch before it is written.
Load the result with ``rexnet_det.deploy.load_fused(OUT)``.

Example::

    python tools/deploy/fuse.py rexnetv1_1.0.pth rexnet-1.0x_fused.pth
"""
import argparse
import copy
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

import torch  # noqa: E402

from rexnet_det.checkpoint import (CheckpointError,  # noqa: E402
                                   fused_checkpoint, load_model)
from rexnet_det.deploy import max_relative_error  # noqa: E402
from rexnet_det.models.utils import fuse_model  # noqa: E402
from rexnet_det.utils.io import atomic_output  # noqa: E402

TOLERANCE = 1e-4  # relative error that makes the tool refuse to write


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', metavar='CKPT_OR_ARCH',
                        help='checkpoint path or model name')
    parser.add_argument('out', metavar='OUT', help='fused checkpoint to write')
    parser.add_argument('--no-channels-last', action='store_true',
                        help='keep NCHW weights (channels_last is faster '
                        'with oneDNN on CPU)')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224],
                        metavar=('H', 'W'), help='input size of the check')
    parser.add_argument('--force', action='store_true',
                        help='overwrite OUT if it exists')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> float:
    args = parse_args(argv)
    if osp.exists(args.out) and not args.force:
        sys.exit(f'error: {args.out} exists; pass --force to overwrite')
    try:
        model, spec, source = load_model(args.model)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        sys.exit(f'error: {exc}')
    fused = fuse_model(copy.deepcopy(model),
                       channels_last=not args.no_channels_last)
    x = torch.randn(2, 3, *args.shape, generator=torch.Generator()
                    .manual_seed(0))
    with torch.no_grad():
        error = max_relative_error(fused(x), model(x))
    if error > TOLERANCE:
        sys.exit(f'error: fused outputs differ from the model by {error:.2e}'
                 f' (relative) > {TOLERANCE:g}; nothing written')
    payload = fused_checkpoint(fused)
    payload['meta']['source'] = source
    with atomic_output(args.out) as tmp:
        torch.save(payload, tmp)
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in fused.parameters())
    print(f'{spec.name} from {source}: {before / 1e6:.3f}M -> '
          f'{after / 1e6:.3f}M params, {len(model.state_dict())} -> '
          f'{len(payload["state_dict"])} tensors; max relative error vs '
          f'unfused {error:.2e}; wrote {args.out}')
    return error


if __name__ == '__main__':
    main()
