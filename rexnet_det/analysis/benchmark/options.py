"""What a benchmark run measures, and the timing helpers its sections share.

:class:`BenchmarkOptions` is the benchmark's whole input: the CLI
(``tools/analysis/benchmark.py``) fills it from ``argparse`` and Python
callers build it directly. ``quick=True`` shrinks every size to a smoke
test of each path (not a measurement).
"""
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Sequence

import torch

#: Sections in the order they run.
SECTIONS = ('backbone', 'detector', 'train', 'memory')


@dataclass
class BenchmarkOptions:
    """Options of one benchmark run.

    Args:
        only (Sequence[str]): Sections to run (of :data:`SECTIONS`).
        sizes (Sequence[int]): Square backbone input sizes.
        batches (Sequence[int]): Batch sizes for backbones and SSDLite.
        repeats (int): Rounds per group; medians are taken over them.
        calls (int): Timed calls per case and round (0: about 0.3 s of
            work per case and round).
        threads (int): torch and onnxruntime threads (0: library default).
        device (str): ``'auto'`` (CPU, plus CUDA rows when available),
            ``'cpu'`` or ``'cuda'``.
        train_batch, train_size (int): SSDLite training batch and size.
        mask_batch, mask_size (int): Mask R-CNN batch and size.
        onnx (bool): Add onnxruntime rows.
        profile (bool): Profile one SSDLite training iteration per model.
        quick (bool): Tiny sizes and one round (a smoke test).
    """
    only: Sequence[str] = SECTIONS
    sizes: Sequence[int] = (224, 320)
    batches: Sequence[int] = (1, 8)
    repeats: int = 5
    calls: int = 0
    threads: int = 1
    device: str = 'auto'
    train_batch: int = 8
    train_size: int = 320
    mask_batch: int = 2
    mask_size: int = 512
    onnx: bool = True
    profile: bool = False
    quick: bool = False
    command: str = field(default='', repr=False)

    def __post_init__(self) -> None:
        if self.quick:
            self.sizes, self.batches = (64, ), (1, )
            self.repeats, self.calls = 1, 1
            self.train_batch, self.train_size = 2, 64
            self.mask_batch, self.mask_size = 2, 64
        unknown = sorted(set(self.only) - set(SECTIONS))
        if unknown:
            raise ValueError(f'only: unknown sections {unknown}; choose from '
                             f'{list(SECTIONS)}')
        for name in ('sizes', 'batches'):
            values = list(getattr(self, name))
            if not values or min(values) < 1:
                raise ValueError(f'{name} must be positive, got {values}')
        if self.repeats < 1 or self.calls < 0 or self.threads < 0:
            raise ValueError(
                f'repeats must be >= 1 and calls, threads >= 0; got '
                f'repeats={self.repeats}, calls={self.calls}, '
                f'threads={self.threads}')
        if self.device not in ('auto', 'cpu', 'cuda'):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got "
                             f'{self.device!r}')


def devices(opts: BenchmarkOptions) -> List[str]:
    """Devices to time on.

    Raises:
        RuntimeError: ``device='cuda'`` but CUDA is not available.
    """
    cuda = torch.cuda.is_available()
    if opts.device == 'cuda' and not cuda:
        raise RuntimeError("device='cuda' but CUDA is not available")
    if opts.device == 'cuda':
        return ['cuda']
    return ['cpu', 'cuda'] if opts.device == 'auto' and cuda else ['cpu']


def calls_for(opts: BenchmarkOptions, seconds_per_call: float) -> int:
    """Timed calls per round: ``opts.calls``, else about 0.3 s of work."""
    if opts.calls:
        return opts.calls
    return max(1, min(20, round(0.3 / max(seconds_per_call, 1e-3))))


def estimate(fn: Callable[[], Any]) -> float:
    """Seconds of one call of `fn`, after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def inference(model: Callable, x: torch.Tensor, device: str
              ) -> Callable[[], Any]:
    """A call that runs ``model(x)`` in inference mode and waits for it."""
    def run():
        with torch.inference_mode():
            out = model(x)
        sync(device)
        return out
    return run
