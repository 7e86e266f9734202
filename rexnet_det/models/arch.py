"""ReXNet architecture as data: a pure function from hyper-parameters to
per-block settings.

Everything that builds, converts or checks a ReXNet reads the same
:class:`ReXNetArch`, so channel counts, strides and tap positions are written
down exactly once.
"""
from dataclasses import dataclass
from math import ceil
from typing import Tuple

# Stage layout shared by ReXNet v1 and ReXNet-lite. Columns, one entry per
# stage: number of blocks, stride of the stage's first block, SE in v1.
STAGE_BLOCKS = (1, 2, 2, 3, 3, 5)
STAGE_STRIDES = (1, 2, 2, 2, 1, 2)
STAGE_USE_SE = (False, False, True, True, True, True)

# Per-arch constants from the official code (clovaai/rexnet rexnetv1.py and
# rexnetv1_lite.py): channels of block 0, channels added over all blocks,
# stem channels, channels of the penultimate 1x1 conv at width 1.0, divisor
# for channel rounding (None = plain round-half-to-even).
ARCH_CONSTANTS = {
    'v1': dict(input_ch=16, final_ch=180, stem_ch=32, pen_ch=1280, divisor=None),
    'lite': dict(input_ch=16, final_ch=164, stem_ch=32, pen_ch=1280, divisor=8),
}
SE_RATIO = 12  # SE hidden width = expanded channels // 12 (v1 only)
NUM_TAPS = 6  # strides 2, 4, 8, 16, 32 (blocks) and 32 (penultimate conv)


@dataclass(frozen=True)
class BlockCfg:
    """Settings of one LinearBottleneck."""
    in_channels: int
    out_channels: int
    expand_ratio: int
    stride: int
    se_channels: int  # 0 = no SE

    @property
    def mid_channels(self) -> int:
        return self.in_channels * self.expand_ratio

    @property
    def use_shortcut(self) -> bool:
        # ReXNet's partial residual: the input is added to the first
        # `in_channels` output channels whenever the resolution is kept.
        return self.stride == 1 and self.in_channels <= self.out_channels


@dataclass(frozen=True)
class TapInfo:
    """One feature map a ReXNet can return (timm-style ``feature_info``)."""
    index: int
    num_chs: int
    reduction: int
    module: str

    def as_dict(self) -> dict:
        return dict(num_chs=self.num_chs, reduction=self.reduction,
                    module=self.module)


@dataclass(frozen=True)
class ReXNetArch:
    """Complete layer plan of one ReXNet variant."""
    arch: str
    width_mult: float
    depth_mult: float
    stem_channels: int
    blocks: Tuple[BlockCfg, ...]
    pen_channels: int
    taps: Tuple[TapInfo, ...]

    @property
    def tap_blocks(self) -> Tuple[int, ...]:
        """Index of the block whose output is each of taps 0-4."""
        return tuple(int(t.module.split('.')[1]) for t in self.taps[:5])

    def signature(self) -> Tuple[int, ...]:
        """Channel counts that identify a variant: stem, every block, pen."""
        return (self.stem_channels,
                *(b.out_channels for b in self.blocks), self.pen_channels)

    @property
    def name(self) -> str:
        prefix = 'ReXNet-lite' if self.arch == 'lite' else 'ReXNet'
        depth = '' if self.depth_mult == 1 else \
            f' depth {_mult(self.depth_mult)}x'
        return f'{prefix} {_mult(self.width_mult)}x{depth}'


def _mult(value: float) -> str:
    """1.0 -> '1.0', 1.3 -> '1.3', 0.75 -> '0.75' (the paper's naming)."""
    text = f'{value:g}'
    return text if '.' in text else f'{text}.0'


def make_divisible(value: float, divisor: int) -> int:
    """TF-style rounding used by ReXNet-lite: nearest multiple of `divisor`,
    never below `divisor` and never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _round_channels(value: float, divisor) -> int:
    # int(round(.)) is Python's round-half-to-even, as in the official code
    # (e.g. 38.5 -> 38); lite additionally snaps to multiples of 8.
    channels = int(round(value))
    return channels if divisor is None else make_divisible(channels, divisor)


def rexnet_arch(width_mult: float = 1.0,
                depth_mult: float = 1.0,
                arch: str = 'v1') -> ReXNetArch:
    """Turn ReXNet's hyper-parameters into its per-block settings.

    Reproduces the channel schedule of the official implementation: channels
    grow linearly by ``final_ch / num_blocks`` (v1) or
    ``final_ch / (num_blocks - 1)`` (lite) per block.

    Args:
        width_mult (float): Width multiplier (> 0).
        depth_mult (float): Depth multiplier (> 0); each stage gets
            ``ceil(blocks * depth_mult)`` blocks.
        arch (str): ``'v1'`` or ``'lite'``.

    Returns:
        ReXNetArch: The frozen layer plan.
    """
    if arch not in ARCH_CONSTANTS:
        raise ValueError(f"arch must be one of {sorted(ARCH_CONSTANTS)}, "
                         f'got {arch!r}')
    for name, value in (('width_mult', width_mult),
                        ('depth_mult', depth_mult)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 < value < float('inf'):
            raise ValueError(f'{name} must be a finite number > 0, got '
                             f'{value!r}')
    const = ARCH_CONSTANTS[arch]
    divisor = const['divisor']

    stage_blocks = [ceil(n * depth_mult) for n in STAGE_BLOCKS]
    num_blocks = sum(stage_blocks)
    strides, use_se = [], []
    for n, stride, se in zip(stage_blocks, STAGE_STRIDES, STAGE_USE_SE):
        strides += [stride] + [1] * (n - 1)
        use_se += [se and arch == 'v1'] * n
    expand_ratios = [1] * stage_blocks[0] + [6] * (num_blocks - stage_blocks[0])

    # Below width 1.0 the stem and the first block keep their width-1 size.
    small = width_mult < 1.0
    stem_base = const['stem_ch'] / width_mult if small else const['stem_ch']
    planes = const['input_ch'] / width_mult if small else const['input_ch']
    stem_channels = _round_channels(stem_base * width_mult, divisor)
    step = const['final_ch'] / (num_blocks - 1 if arch == 'lite' else num_blocks)

    blocks = []
    in_channels = stem_channels
    for i in range(num_blocks):
        if i > 0:
            planes += step
        out_channels = _round_channels(planes * width_mult, divisor)
        mid = in_channels * expand_ratios[i]
        blocks.append(BlockCfg(
            in_channels=in_channels,
            out_channels=out_channels,
            expand_ratio=expand_ratios[i],
            stride=strides[i],
            se_channels=mid // SE_RATIO if use_se[i] else 0))
        in_channels = out_channels

    if arch == 'v1':
        pen_channels = int(const['pen_ch'] * width_mult)
    else:
        pen_channels = int(const['pen_ch'] * width_mult) if width_mult > 1 \
            else const['pen_ch']

    # Taps: the last block before every stride-2 block, then the last block,
    # then the penultimate conv. Strides are accumulated, never typed.
    taps = []
    reduction = 2  # the stem has stride 2
    for i, block in enumerate(blocks):
        reduction *= block.stride
        next_stride = blocks[i + 1].stride if i + 1 < num_blocks else 2
        if next_stride == 2:
            taps.append(TapInfo(len(taps), block.out_channels, reduction,
                                f'blocks.{i}'))
    taps.append(TapInfo(len(taps), pen_channels, reduction, 'pen'))
    assert len(taps) == NUM_TAPS, taps

    return ReXNetArch(arch=arch, width_mult=float(width_mult),
                      depth_mult=float(depth_mult),
                      stem_channels=stem_channels, blocks=tuple(blocks),
                      pen_channels=pen_channels, taps=tuple(taps))
