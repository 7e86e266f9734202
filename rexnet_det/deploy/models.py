"""Build a ReXNet from a short name or a checkpoint, for the command-line
tools (FLOPs, benchmark, fuse, ONNX export).

Names: ``rexnet-<w>x`` (ImageNet classifier), ``rexnet-lite-<w>x`` and a
``-backbone`` suffix for the backbone with all six taps, e.g.
``rexnet-1.0x``, ``rexnet-lite-1.3x``, ``rexnet-1.0x-backbone``.
"""
import os
import re
from dataclasses import dataclass
from typing import Dict, Tuple, Union

import torch
from mmengine.logging import MMLogger

from ..checkpoint import (load_pretrained, safe_torch_load, to_rexnet_det,
                          unwrap_state_dict)
from ..checkpoint.loader import CheckpointMismatchError
from ..models import ReXNet, ReXNetClassifier
from ..models.arch import NUM_TAPS, OFFICIAL_WIDTHS, rexnet_arch

ALL_TAPS = tuple(range(NUM_TAPS))
_SPEC = re.compile(r'^rexnet(?P<lite>-lite)?-(?P<width>\d+(\.\d+)?)x'
                   r'(?P<backbone>-backbone)?$')
SPEC_HELP = ('rexnet-<width>x (classifier), rexnet-lite-<width>x, with '
             "'-backbone' for the backbone alone, e.g. rexnet-1.0x, "
             'rexnet-lite-1.3x, rexnet-1.0x-backbone')

ReXNetModel = Union[ReXNet, ReXNetClassifier]


def quiet_init_weights(model) -> None:
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


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model name such as ``rexnet-lite-1.3x-backbone``.

    Raises:
        ValueError: The name does not follow the pattern (the message
            quotes it and shows the accepted forms).
    """
    m = _SPEC.match(spec.strip().lower()) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(f'unknown model name {spec!r}; expected {SPEC_HELP}')
    width = float(m['width'])
    if width <= 0:
        raise ValueError(f'model name {spec!r}: width must be > 0')
    return ModelSpec(arch='lite' if m['lite'] else 'v1', width_mult=width,
                     backbone=bool(m['backbone']))


def build_from_spec(spec: Union[str, ModelSpec]) -> ReXNetModel:
    """A randomly initialised model (eval mode) for a model name."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.backbone:
        model = ReXNet(width_mult=spec.width_mult, arch=spec.arch,
                       out_indices=spec.taps)
    else:
        model = ReXNetClassifier(width_mult=spec.width_mult, arch=spec.arch)
    quiet_init_weights(model)
    return model.eval()


def infer_spec(state: Dict[str, torch.Tensor], source: str) -> ModelSpec:
    """Find the released variant a checkpoint (any layout) holds."""
    canonical, _ = to_rexnet_det(state)
    has_head = any(k.startswith('head.') for k in canonical)
    has_se = any('.se.' in k for k in canonical)

    def out_ch(key):
        t = canonical.get(key)
        return None if t is None else int(t.shape[0])

    stem = out_ch('backbone.stem.conv.weight')
    pen = out_ch('backbone.pen.conv.weight')
    blocks = []
    while f'backbone.blocks.{len(blocks)}.conv_pwl.conv.weight' in canonical:
        blocks.append(out_ch(
            f'backbone.blocks.{len(blocks)}.conv_pwl.conv.weight'))
    for arch, widths in OFFICIAL_WIDTHS.items():
        if (arch == 'lite') == has_se:
            continue
        for width in widths:
            arch_spec = rexnet_arch(width, 1.0, arch)
            if stem == arch_spec.stem_channels and \
                    blocks == [b.out_channels for b in arch_spec.blocks] and \
                    pen in (None, arch_spec.pen_channels):
                # detectors that do not use tap 5 have no penultimate conv
                taps = ALL_TAPS if pen is not None else ALL_TAPS[:5]
                return ModelSpec(arch, float(width), backbone=not has_head
                                 or pen is None, taps=taps)
    raise CheckpointMismatchError(
        f'{source}: not a complete released ReXNet (stem {stem} ch, '
        f'{len(blocks)} blocks, penultimate conv {pen} ch); the tools need '
        'all 16 blocks of a released width')


def load_model(ckpt_or_spec: Union[str, os.PathLike]
               ) -> Tuple[ReXNetModel, ModelSpec, str]:
    """Build the model a checkpoint path or a model name describes.

    A checkpoint (clovaai, timm or rexnet_det layout, or a fused file from
    ``tools/deploy/fuse.py``) is loaded strictly; its variant is inferred.

    Returns:
        tuple: The model (eval mode), its :class:`ModelSpec` and a
        description of the source.

    Raises:
        FileNotFoundError: The argument looks like a path (contains a path
            separator or ends with .pth/.pt) but no such file exists.
        ValueError: It is neither a file nor a valid model name.
    """
    text = os.fspath(ckpt_or_spec)
    if os.path.isfile(text):
        obj = safe_torch_load(text)
        if isinstance(obj, dict) and isinstance(obj.get('meta'), dict) and \
                obj['meta'].get('fused'):
            from .fuse import load_fused
            model, spec = load_fused(obj, text)
            return model, spec, f'fused checkpoint {text}'
        state = unwrap_state_dict(obj, text)
        spec = infer_spec(state, text)
        model = build_from_spec(spec)
        load_pretrained(model, state)
        return model.eval(), spec, f'checkpoint {text}'
    if os.sep in text or text.endswith(('.pth', '.pt', '.ckpt')):
        raise FileNotFoundError(f'checkpoint {text!r} does not exist')
    spec = parse_spec(text)
    return build_from_spec(spec), spec, f'{spec.name} (random weights)'
