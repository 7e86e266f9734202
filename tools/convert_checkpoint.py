"""Convert a ReXNet checkpoint between the clovaai, timm and rexnet_det
layouts. The source layout is detected; round trips are exact.

Example:
    python tools/convert_checkpoint.py rexnetv1_1.0.pth \
        rexnet-1.0x_in1k.pth --to rexnet_det
"""
import argparse
import os
import sys

import torch

import rexnet_det  # noqa: F401  (safe loader, registry)
from rexnet_det.checkpoint import (FORMATS, CheckpointError,
                                   CheckpointFormatError, convert_state_dict,
                                   detect_format, load_checkpoint_file,
                                   unwrap_state_dict)
from rexnet_det.utils.io import atomic_output


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint to read: a path, URL or '
                        'other mmengine scheme (open-mmlab://...)')
    parser.add_argument('dst', help='file to write')
    parser.add_argument('--to', required=True, choices=FORMATS,
                        help='layout of the written checkpoint')
    parser.add_argument('--force', action='store_true',
                        help='overwrite DST if it exists')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if os.path.abspath(args.src) == os.path.abspath(args.dst):
        sys.exit(f'error: dst must differ from src ({args.src})')
    if os.path.exists(args.dst) and not args.force:
        sys.exit(f'error: dst {args.dst} exists; pass --force to overwrite')
    try:
        state = unwrap_state_dict(load_checkpoint_file(args.src), args.src)
        src_format = detect_format(state)
        converted = convert_state_dict(state, args.to)
    except (CheckpointError, CheckpointFormatError, FileNotFoundError) as exc:
        sys.exit(f'error: {exc}')
    payload = converted
    if args.to == 'rexnet_det':
        payload = dict(state_dict=converted,
                       meta=dict(converted_from=src_format,
                                 source=os.path.basename(args.src),
                                 rexnet_det=rexnet_det.__version__))
    with atomic_output(args.dst) as tmp:
        torch.save(payload, tmp)
    print(f'{args.src} ({src_format}, {len(state)} tensors) -> {args.dst} '
          f'({args.to}, {len(converted)} tensors)')


if __name__ == '__main__':
    main()
