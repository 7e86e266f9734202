"""Every ReXNet variant and its released weights, in one place.

The registry plays the part of timm's ``default_cfgs`` and torchvision's
``WeightsEnum``: for each variant it holds the architecture, the official
checkpoint files and where to get them, the ImageNet accuracy the paper
reports and the evaluation preprocessing. Channel counts are never typed
here: :attr:`Variant.arch_spec` derives them from :func:`rexnet_arch`.

The checkpoint loader names the variant a file holds with
:func:`find_variant`, the tools build models from :func:`get_variant`
names (``rexnet-1.0x``, ``rexnet-lite-1.3x``), and the docs' tables are
written from :data:`VARIANTS`. A new variant (e.g. timm's channel-rounded
``rexnetr``) is one more entry in :data:`VARIANTS` (and, if its channel
rule is new, one more case in :func:`rexnet_arch`).
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

from .arch import ReXNetArch, rexnet_arch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """ImageNet evaluation preprocessing (timm's ``rexnet_*`` cfg: resize
    the shorter side to ``resize``, centre-crop ``crop``, RGB in [0, 1]
    normalised with ``mean``/``std``)."""
    crop: int = 224
    resize: int = 256  # crop_pct 0.875
    interpolation: str = 'bicubic'
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class Weights:
    """One released checkpoint file.

    ``layout`` is the key layout the loader will detect (``clovaai`` or
    ``timm``); every layout loads directly, so any of a variant's files
    will do.
    """
    layout: str
    filename: str
    url: Optional[str]
    where: str  # who publishes it


@dataclass(frozen=True)
class Variant:
    """One ReXNet variant.

    ``top1``/``top5``, ``params_m`` and ``flops_g`` are the paper's
    (official README) figures at 224x224, not measurements of ours.
    """
    name: str
    arch: str
    width_mult: float
    top1: float
    top5: float
    params_m: float
    flops_g: float
    weights: Tuple[Weights, ...] = ()
    timm_name: Optional[str] = None
    preprocess: Preprocess = field(default_factory=Preprocess)

    @property
    def arch_spec(self) -> ReXNetArch:
        """The full layer plan (channels, strides, taps)."""
        return rexnet_arch(self.width_mult, 1.0, self.arch)

    @property
    def tap_channels(self) -> Tuple[int, ...]:
        """Channels of taps 0-5."""
        return tuple(t.num_chs for t in self.arch_spec.taps)

    def backbone_config(self, **kwargs) -> dict:
        """An mmdet backbone config dict for this variant."""
        return dict(type='ReXNet', arch=self.arch,
                    width_mult=self.width_mult, **kwargs)


_CLOVAAI = 'clovaai/rexnet README (Google Drive)'
_TIMM_RELEASE = ('https://github.com/rwightman/pytorch-image-models/'
                 'releases/download/v0.1-rexnet/')


def _drive(file_id: str) -> str:
    return f'https://drive.google.com/file/d/{file_id}/view'


def _v1(width: float, top1: float, top5: float, params: float, flops: float,
        drive: str, timm_file: Optional[str]) -> Variant:
    timm_name = f'rexnet_{round(width * 100)}'
    weights = [Weights('clovaai', f'rexnetv1_{width:.1f}.pth', _drive(drive),
                       _CLOVAAI)]
    if timm_file:
        weights.append(Weights('timm', timm_file, _TIMM_RELEASE + timm_file,
                               f'timm (HF hub: timm/{timm_name}.nav_in1k)'))
    return Variant(f'rexnet-{width:.1f}x', 'v1', width, top1, top5, params,
                   flops, tuple(weights), timm_name)


def _lite(width: float, top1: float, top5: float, params: float,
          flops: float) -> Variant:
    # Released later (clovaai/rexnet#27); the README links the files.
    weights = (Weights('clovaai', f'rexnet_lite_{width:.1f}.pth', None,
                       'clovaai/rexnet README'), )
    return Variant(f'rexnet-lite-{width:.1f}x', 'lite', width, top1, top5,
                   params, flops, weights)


#: name -> Variant, for every variant with released ImageNet weights.
VARIANTS: Dict[str, Variant] = {v.name: v for v in (
    _v1(1.0, 77.9, 93.9, 4.8, 0.40, '1xeIJ3wb83uOowU008ykYj6wDX2dsncA9',
        'rexnetv1_100-1b4dddf4.pth'),
    _v1(1.3, 79.5, 94.7, 7.6, 0.66, '1x2ziK9Oyv66Y9NsxJxXsdjzpQF2uSJj0',
        'rexnetv1_130-590d768e.pth'),
    _v1(1.5, 80.3, 95.2, 9.7, 0.88, '1TOBGsbDhTHWBgqcRnyKIR0tHsJTOPUIG',
        'rexnetv1_150-bd1a6aa8.pth'),
    _v1(2.0, 81.6, 95.7, 16.0, 1.5, '1R1aOTKIe1Mvck86NanqcjWnlR8DY-Z4C',
        'rexnetv1_200-8c0b7f2d.pth'),
    _v1(3.0, 82.8, 96.2, 34.0, 3.4, '1chOnQPKtE1LaLz6WzSdzH55x6VlZ29sQ',
        None),
    _lite(1.0, 76.2, 92.8, 4.7, 0.41),
    _lite(1.3, 77.8, 93.8, 6.8, 0.65),
    _lite(1.5, 78.6, 94.2, 8.3, 0.84),
    _lite(2.0, 80.2, 95.0, 13.0, 1.5),
)}


def get_variant(name: str) -> Variant:
    """The variant called `name` (e.g. ``'rexnet-1.0x'``).

    Raises:
        KeyError: Unknown name; the message lists the known ones.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in VARIANTS:
        raise KeyError(f'unknown ReXNet variant {name!r}; known: '
                       f'{", ".join(VARIANTS)}')
    return VARIANTS[key]


def find_variant(arch: Optional[str], stem: Optional[int],
                 blocks: Sequence[int],
                 pen: Optional[int]) -> Optional[Variant]:
    """The released variant whose channels match, or None.

    Args:
        arch (str, optional): ``'v1'`` (has SE), ``'lite'`` or None
            (either).
        stem (int, optional): Stem output channels.
        blocks (Sequence[int]): Output channels of the first blocks, in
            order; a prefix of the full list (a detector builds only the
            blocks its taps need).
        pen (int, optional): Penultimate conv channels, None if absent.
    """
    blocks = list(blocks)
    for variant in VARIANTS.values():
        spec = variant.arch_spec
        full = [b.out_channels for b in spec.blocks]
        if arch in (None, variant.arch) and stem == spec.stem_channels and \
                blocks == full[:len(blocks)] and \
                pen in (None, spec.pen_channels):
            return variant
    return None


def channel_signature(state: Dict[str, Any]) -> tuple:
    """(arch, stem, block channels, pen) of a state dict in our layout
    (``backbone.stem.*``, ``backbone.blocks.N.*``, ``backbone.pen.*``).
    ``arch`` is None when the blocks present cannot tell (v1 has SE from
    block 3 on)."""
    def out_ch(key):
        t = state.get(key)
        return None if t is None else int(t.shape[0])

    blocks = []
    while f'backbone.blocks.{len(blocks)}.conv_pwl.conv.weight' in state:
        blocks.append(out_ch(
            f'backbone.blocks.{len(blocks)}.conv_pwl.conv.weight'))
    has_se = any('.se.' in k for k in state)
    arch = 'v1' if has_se else 'lite' if len(blocks) > 3 else None
    return (arch, out_ch('backbone.stem.conv.weight'), blocks,
            out_ch('backbone.pen.conv.weight'))


def describe_state(state: Dict[str, Any]) -> str:
    """Name the variant a canonical (rexnet_det) state dict holds."""
    arch, stem, blocks, pen = channel_signature(state)
    variant = find_variant(arch, stem, blocks, pen)
    if variant is not None:
        return variant.arch_spec.name
    return (f'an unknown ReXNet (stem {stem} ch, {len(blocks)} blocks ending '
            f'at {blocks[-1] if blocks else None} ch, pen {pen} ch)')
