"""What one benchmark run measures: :class:`BenchmarkOptions` is the whole
input of :func:`tools.bench.run_benchmark` (``tools/benchmark.py`` fills it
from its command line)."""
from dataclasses import dataclass, field
from typing import Sequence, Tuple


@dataclass
class BenchmarkOptions:
    """Options of one run; every section reads the ones it needs.

    Args:
        only (Sequence[str]): Sections to run (default: all registered).
        skip (Sequence[str]): Sections not to run (e.g. the slow
            ``compiled``).
        threads (Sequence[int]): Thread counts; each is its own group.
        sizes (Sequence[int]): Square backbone input sizes.
        rounds (int): Interleaved rounds per group (medians over them).
        calls (int): Timed calls per case and round.
        detector_size (int): SSDLite input size (a multiple of 32).
        mask_image_sizes (Sequence[tuple]): (H, W) images of the deployed
            Mask R-CNN rows.
        train_batch, train_size (int): SSDLite training batch and size.
        mask_batch, mask_size (int): Mask R-CNN training batch and size.
        openvino (bool): Add OpenVINO rows. Default: True.
        quick (bool): Tiny sizes, one round: a smoke test of every path,
            not a measurement.
    """
    only: Sequence[str] = ()
    skip: Sequence[str] = ()
    threads: Sequence[int] = (1, 2)
    sizes: Sequence[int] = (224, 320)
    rounds: int = 7
    calls: int = 10
    detector_size: int = 320
    mask_image_sizes: Sequence[Tuple[int, int]] = ((128, 128), (800, 1333))
    train_batch: int = 8
    train_size: int = 320
    mask_batch: int = 2
    mask_size: int = 512
    openvino: bool = True
    quick: bool = False
    command: str = field(default='', repr=False)

    def __post_init__(self) -> None:
        if self.quick:
            self.threads, self.sizes = (1, ), (224, )  # goals judge 224
            self.rounds, self.calls = 1, 1
            self.detector_size, self.mask_image_sizes = 128, ((64, 64), )
            self.train_batch, self.train_size = 2, 64
            self.mask_batch, self.mask_size = 2, 64
        for name in ('threads', 'sizes'):
            values = list(getattr(self, name))
            if not values or min(values) < 1:
                raise ValueError(f'{name} must be positive, got {values}')
        if min(self.sizes) < 32:
            raise ValueError(f'sizes must be >= 32, got {list(self.sizes)}')
        if self.rounds < 1 or self.calls < 1:
            raise ValueError(f'rounds and calls must be >= 1, got '
                             f'rounds={self.rounds}, calls={self.calls}')
        if self.detector_size < 32 or self.detector_size % 32:
            raise ValueError('detector_size must be a multiple of 32, got '
                             f'{self.detector_size}')
