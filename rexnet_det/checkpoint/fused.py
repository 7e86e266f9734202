"""Checkpoints of the fused inference form (``tools/deploy/fuse.py``).

A fused model has no BatchNorm tensors and a bias on every conv, so its
state dict fits no training layout; the file also records how to rebuild
the model before :func:`~rexnet_det.models.utils.fuse_model` and a strict
``load_state_dict``.
"""
from math import ceil
from typing import Tuple, Union

import torch
import torch.nn as nn

from ..models import ReXNet, ReXNetClassifier
from ..models.arch import STAGE_BLOCKS
from ..models.utils.align import is_aligned
from ..models.utils.fuse import FUSED_ATTR, fuse_model, is_fused
from ..utils.errors import CheckpointError, CheckpointMismatchError
from ..utils.strict_state import compare_state, copy_state
from .schemes import load_checkpoint_file

_META_KEYS = ('arch', 'width_mult', 'depth_mult', 'classifier',
              'out_indices', 'channels_last')


def fused_checkpoint(model: nn.Module) -> dict:
    """What ``tools/deploy/fuse.py`` saves: the fused state dict and what
    :func:`load_fused` needs to rebuild the model.

    Raises:
        ValueError: `model` is not a fused ReXNet or ReXNetClassifier, or
            it is channel-aligned.
    """
    if not is_fused(model) or not isinstance(model,
                                             (ReXNet, ReXNetClassifier)):
        raise ValueError('fused_checkpoint expects a fused ReXNet or '
                         'ReXNetClassifier; call model.eval().fuse() first')
    if is_aligned(model):
        raise ValueError('fused_checkpoint expects an unaligned model: '
                         'load_fused rebuilds the original widths; save '
                         'before align_channels and align after loading')
    classifier = isinstance(model, ReXNetClassifier)
    backbone = model.backbone if classifier else model
    meta = dict(fused=True, arch=backbone.arch,
                width_mult=float(backbone.width_mult),
                depth_mult=float(backbone.depth_mult),
                classifier=classifier,
                out_indices=list(backbone.out_indices),
                channels_last=getattr(model, FUSED_ATTR)['channels_last'])
    if classifier:
        meta['num_classes'] = model.head.fc.out_features
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return dict(state_dict=state, meta=meta)


def is_fused_checkpoint(checkpoint) -> bool:
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return isinstance(meta, dict) and bool(meta.get('fused'))


def load_fused(checkpoint: Union[str, dict],
               source: str = 'checkpoint') -> Tuple[nn.Module, dict]:
    """Rebuild a fused model saved by :func:`fused_checkpoint`.

    Args:
        checkpoint (str | dict): Path of the file or its loaded content.
        source (str): Name used in error messages for a dict.

    Returns:
        tuple: The fused model (eval mode) and the file's ``meta``.

    Raises:
        CheckpointError: The file is not a fused checkpoint.
        CheckpointMismatchError: Its state dict does not fit the model its
            meta describes (:func:`~rexnet_det.utils.strict_state.
            compare_state`); nothing was loaded.
    """
    if isinstance(checkpoint, str):
        source = checkpoint
        checkpoint = load_checkpoint_file(checkpoint)
    if not is_fused_checkpoint(checkpoint):
        raise CheckpointError(f'{source} is not a fused checkpoint (no '
                              "meta['fused']); make one with "
                              'tools/deploy/fuse.py')
    meta = checkpoint['meta']
    check_fused_meta(checkpoint, source)
    model = _build_fused(meta)
    state, target = checkpoint['state_dict'], model.state_dict()
    report = compare_state(target, state)
    if report:
        raise CheckpointMismatchError(
            f'{source} does not fit the fused model it describes: '
            + ' | '.join(report.problems()) + '. Nothing was loaded.')
    copy_state(target, state, report.fits)
    return model, meta


def _build_fused(meta: dict) -> nn.Module:
    if meta['classifier']:
        model = ReXNetClassifier(width_mult=meta['width_mult'],
                                 depth_mult=meta['depth_mult'],
                                 arch=meta['arch'],
                                 num_classes=meta['num_classes'])
    else:
        model = ReXNet(width_mult=meta['width_mult'],
                       depth_mult=meta['depth_mult'], arch=meta['arch'],
                       out_indices=tuple(meta['out_indices']))
    return fuse_model(model.eval(), channels_last=meta['channels_last'])


def check_fused_meta(checkpoint: dict, source: str) -> None:
    """Refuse a fused checkpoint whose ``meta`` does not describe its own
    tensors, before anything of the declared size is allocated: the meta
    says how big a model to build (``num_classes``, ``width_mult``,
    ``depth_mult``), so a small file could otherwise make the loader build
    a huge one. The model is built on PyTorch's ``meta`` device (shapes
    only, no memory) and its shapes compared with the file's tensors.

    Raises:
        CheckpointError: A meta key is missing or a value the model
            refuses (named), or the state dict is not a dict of tensors.
        CheckpointMismatchError: The meta describes other shapes or keys
            than the file holds (the message names the key and both
            shapes).
    """
    meta, state = checkpoint['meta'], checkpoint.get('state_dict')
    missing = [k for k in _META_KEYS + (
        ('num_classes', ) if meta.get('classifier') else ())
        if k not in meta]
    if missing:
        raise CheckpointError(f'{source}: fused checkpoint meta lacks '
                              f'{missing}')
    if not isinstance(state, dict) or not state or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{source}: fused checkpoint has no '
                              "state_dict of tensors")
    depth = meta['depth_mult']
    described = (f'its meta (arch={meta["arch"]!r}, width_mult='
                 f'{meta["width_mult"]!r}, depth_mult={depth!r}'
                 + (f', num_classes={meta["num_classes"]!r}'
                    if meta['classifier'] else '') + ')')
    if isinstance(depth, (int, float)) and not isinstance(depth, bool) \
            and 0 < depth < float('inf'):
        # each block holds several tensors: the file bounds the depth
        blocks = sum(ceil(n * depth) for n in STAGE_BLOCKS)
        if blocks > len(state):
            raise CheckpointMismatchError(
                f'{source}: {described} declares {blocks} blocks, but the '
                f'file holds only {len(state)} tensors; nothing was built')
    try:
        with torch.device('meta'):
            expected = {k: tuple(v.shape) for k, v in
                        _build_fused(meta).state_dict().items()}
    except (TypeError, ValueError) as exc:  # values the model refuses
        raise CheckpointError(f'{source}: {described} cannot be built: '
                              f'{exc}') from None
    got = {k: tuple(v.shape) for k, v in state.items()}
    for key in sorted(set(expected) | set(got)):
        if expected.get(key) != got.get(key):
            raise CheckpointMismatchError(
                f'{source}: {described} describes {key} as '
                f'{list(expected[key]) if key in expected else "absent"}, '
                f'but the file holds '
                f'{list(got[key]) if key in got else "nothing"}; nothing was '
                f'built')
