"""Interleaved timing for noisy, shared machines.

Every case of a group is measured in each round, in an order rotated from
round to round, so slow phases of the machine (another job on the other
hyper-thread, frequency changes) hit all cases alike. A ratio between two
cases is the median of their per-round ratios, and its spread over the
rounds is reported as the noise. Each call is timed on the wall clock and
in process CPU time (which leaves out time the process spent waiting for
a CPU).
"""
import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence

import numpy as np


@dataclass
class Case:
    """One thing to time: ``fn()`` processes ``batch`` images."""
    name: str
    fn: Callable[[], Any]
    batch: int = 1
    info: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Timings:
    """Per-call times (seconds) of one case, grouped by round."""
    case: Case
    wall: List[List[float]] = field(default_factory=list)
    cpu: List[List[float]] = field(default_factory=list)

    def round_medians(self, clock: str = 'wall') -> List[float]:
        return [statistics.median(r) for r in getattr(self, clock)]

    def summary(self) -> Dict[str, Any]:
        wall = np.array([t for r in self.wall for t in r])
        cpu = np.array([t for r in self.cpu for t in r])
        p50 = float(np.median(wall))
        return dict(
            name=self.case.name, batch=self.case.batch,
            calls=int(wall.size), rounds=len(self.wall),
            p50_ms=p50 * 1e3,
            p90_ms=float(np.percentile(wall, 90)) * 1e3,
            cpu_p50_ms=float(np.median(cpu)) * 1e3,
            images_per_s=self.case.batch / p50,
            images_per_cpu_s=self.case.batch / float(np.median(cpu)),
            **self.case.info)


def measure(cases: Sequence[Case], rounds: int, calls: int,
            warmup: int = 1) -> Dict[str, Timings]:
    """Time every case ``calls`` times per round for ``rounds`` rounds.

    Args:
        cases: The cases to compare (names must be unique).
        rounds (int): Rounds; the case order rotates each round.
        calls (int): Timed calls per case and round.
        warmup (int): Untimed calls per case before the first round.

    Returns:
        dict: Case name -> :class:`Timings`.
    """
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f'case names must be unique, got {names}')
    if rounds < 1 or calls < 1:
        raise ValueError(f'rounds and calls must be >= 1, got {rounds}, '
                         f'{calls}')
    for case in cases:
        for _ in range(warmup):
            case.fn()
    results = {c.name: Timings(c) for c in cases}
    for r in range(rounds):
        shift = r % len(cases)
        for case in list(cases[shift:]) + list(cases[:shift]):
            gc.collect()
            walls, cpus = [], []
            for _ in range(calls):
                t0, c0 = time.perf_counter(), time.process_time()
                case.fn()
                cpus.append(time.process_time() - c0)
                walls.append(time.perf_counter() - t0)
            results[case.name].wall.append(walls)
            results[case.name].cpu.append(cpus)
    return results


def paired_ratio(a: Timings, b: Timings, clock: str = 'wall'
                 ) -> Dict[str, float]:
    """Time of `a` over time of `b` (per image), from the same rounds.

    Returns:
        dict: ``median`` of the per-round ratios and their ``min``/``max``.
    """
    ratios = [(ta / a.case.batch) / (tb / b.case.batch) for ta, tb in zip(
        a.round_medians(clock), b.round_medians(clock))]
    return dict(median=float(statistics.median(ratios)),
                min=float(min(ratios)), max=float(max(ratios)),
                rounds=len(ratios))
