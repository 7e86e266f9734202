"""The machine's practical fp32 peak, measured in the same run as a table.

Achieved GFLOP/s of a network only means something next to what this CPU
reaches on the friendliest workload it has: a large square fp32 matrix
product (sgemm), timed with the same thread count.
"""
import time

import torch


def sgemm_peak_gflops(threads: int = 1, n: int = 2048, rounds: int = 5
                      ) -> float:
    """Best GFLOP/s (``2 n^3`` FLOPs per product) of an ``n`` x ``n`` fp32
    matmul over `rounds` timed products, with torch on `threads` threads.

    Args:
        threads (int): torch intra-op threads for the measurement (restored
            afterwards).
        n (int): Matrix size. Default: 2048 (large enough to be compute
            bound, small enough to take ~0.1-0.2 s per product here).
        rounds (int): Timed products; the fastest counts. Default: 5.

    Raises:
        ValueError: `threads`, `n` or `rounds` is below 1.

    Example:
        >>> peak = sgemm_peak_gflops(threads=1, n=512, rounds=2)
        >>> peak > 0
        True
    """
    for name, value in (('threads', threads), ('n', n), ('rounds', rounds)):
        if value < 1:
            raise ValueError(f'{name} must be >= 1, got {value}')
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen)
        b = torch.randn(n, n, generator=gen)
        torch.mm(a, b)  # warm-up: thread pool, packing buffers
        best = float('inf')
        for _ in range(rounds):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return 2 * n ** 3 / best / 1e9
