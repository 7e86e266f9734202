"""Build a ReXNet from a model name or a checkpoint, for the tools (FLOPs,
benchmarks, fusion, ONNX export).

Names: ``rexnet-<w>x`` (ImageNet classifier), ``rexnet-lite-<w>x`` and a
``-backbone`` suffix for the backbone with all six taps, e.g.
``rexnet-1.0x``, ``rexnet-lite-1.3x``, ``rexnet-1.0x-backbone``. Released
widths are the entries of :data:`rexnet_det.models.variants.VARIANTS`;
other widths build with random weights.
"""
import os
import re
from dataclasses import dataclass
from typing import Tuple, Union

import torch.nn as nn
from mmengine.logging import MMLogger

from ..models import ReXNet, ReXNetClassifier
from ..models.arch import NUM_TAPS
from ..models.variants import channel_signature, find_variant
from ..utils.errors import CheckpointMismatchError
from .formats import StateDict, to_rexnet_det
from .fused import is_fused_checkpoint, load_fused
from .loader import load_pretrained, unwrap_state_dict
from .schemes import load_checkpoint_file

ALL_TAPS = tuple(range(NUM_TAPS))
_NAME = re.compile(r'^rexnet(?P<lite>-lite)?-(?P<width>\d+(\.\d+)?)x'
                   r'(?P<backbone>-backbone)?$')
NAME_HELP = ('rexnet-<width>x (classifier), rexnet-lite-<width>x, with '
             "'-backbone' for the backbone alone, e.g. rexnet-1.0x, "
             'rexnet-lite-1.3x, rexnet-1.0x-backbone')


def quiet_init_weights(model: nn.Module) -> None:
    """``model.init_weights()`` without mmengine's per-tensor INFO log."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class ModelSpec:
    """What a model name asks for."""
    arch: str
    width_mult: float
    backbone: bool
    taps: Tuple[int, ...] = ALL_TAPS  # backbone taps to build

    @property
    def name(self) -> str:
        lite = '-lite' if self.arch == 'lite' else ''
        suffix = '-backbone' if self.backbone else ''
        return f'rexnet{lite}-{self.width_mult:.1f}x{suffix}'


def parse_name(name: str) -> ModelSpec:
    """Parse a model name such as ``rexnet-lite-1.3x-backbone``.

    Raises:
        ValueError: The name does not follow the pattern (the message
            quotes it and shows the accepted forms).
    """
    m = _NAME.match(name.strip().lower()) if isinstance(name, str) else None
    if m is None:
        raise ValueError(f'unknown model name {name!r}; expected {NAME_HELP}')
    width = float(m['width'])
    if width <= 0:
        raise ValueError(f'model name {name!r}: width must be > 0')
    return ModelSpec(arch='lite' if m['lite'] else 'v1', width_mult=width,
                     backbone=bool(m['backbone']))


def build_model(spec: Union[str, ModelSpec]) -> nn.Module:
    """A randomly initialised model (eval mode) for a model name."""
    spec = parse_name(spec) if isinstance(spec, str) else spec
    if spec.backbone:
        model = ReXNet(width_mult=spec.width_mult, arch=spec.arch,
                       out_indices=spec.taps)
    else:
        model = ReXNetClassifier(width_mult=spec.width_mult, arch=spec.arch)
    quiet_init_weights(model)
    return model.eval()


def infer_spec(state: StateDict, source: str) -> ModelSpec:
    """The released variant a checkpoint (any layout) holds.

    Raises:
        CheckpointMismatchError: Not all 16 blocks of a released width.
    """
    canonical, _ = to_rexnet_det(state)
    arch, stem, blocks, pen = channel_signature(canonical)
    variant = find_variant(arch, stem, blocks, pen)
    if variant is None or len(blocks) != len(variant.arch_spec.blocks):
        raise CheckpointMismatchError(
            f'{source}: not a complete released ReXNet (stem {stem} ch, '
            f'{len(blocks)} blocks, penultimate conv {pen} ch); the tools '
            'need all 16 blocks of a released width')
    has_head = any(k.startswith('head.') for k in canonical)
    # detectors that do not use tap 5 have no penultimate conv
    return ModelSpec(variant.arch, variant.width_mult,
                     backbone=not has_head or pen is None,
                     taps=ALL_TAPS if pen is not None else ALL_TAPS[:5])


def load_model(path_or_name: Union[str, os.PathLike]
               ) -> Tuple[nn.Module, ModelSpec, str]:
    """Build the model a checkpoint or a model name describes.

    A checkpoint (clovaai, timm or rexnet_det layout, an mmdet detector, or
    a fused file from ``tools/deploy/fuse.py``; a path or a URL) is loaded
    strictly and its variant inferred.

    Returns:
        tuple: The model (eval mode), its :class:`ModelSpec` and a
        description of the source.

    Raises:
        FileNotFoundError: The argument looks like a path (contains a path
            separator or ends with .pth/.pt) but no such file exists.
        ValueError: It is neither a file nor a valid model name.
    """
    text = os.fspath(path_or_name)
    is_name = _NAME.match(text.strip().lower()) is not None
    # a directory or FIFO goes to the loader too, which says what it is
    if os.path.isfile(text) or '://' in text or (os.path.exists(text) and
                                                 not is_name):
        obj = load_checkpoint_file(text)
        if is_fused_checkpoint(obj):
            model, meta = load_fused(obj, text)
            spec = ModelSpec(meta['arch'], meta['width_mult'],
                             backbone=not meta['classifier'],
                             taps=tuple(meta['out_indices']))
            return model, spec, f'fused checkpoint {text}'
        state = unwrap_state_dict(obj, text)
        spec = infer_spec(state, text)
        model = build_model(spec)
        load_pretrained(model, state)
        return model.eval(), spec, f'checkpoint {text}'
    if os.sep in text or text.endswith(('.pth', '.pt', '.ckpt')):
        raise FileNotFoundError(f'checkpoint {text!r} does not exist')
    spec = parse_name(text)
    return build_model(spec), spec, f'{spec.name} (random weights)'
