"""The benchmark harness: one run of every comparison the docs show, one
results file, the tables generated from it.

* :mod:`.sections` - one module per comparison (backbones on every
  runtime, eager forms, channel alignment, deployed detectors, training
  step, with_cp memory); a new comparison is one more module there;
* :mod:`.goals` - the one goal table and the code that judges it;
* :mod:`.machine` - commit, date, CPU model and instruction sets, versions;
* :mod:`.tables` - the Markdown tables ``tools/gen_tables.py`` writes into
  README.md and docs/ between ``<!-- bench:NAME -->`` markers.

Commands: ``python tools/benchmark.py --out benchmarks/results.json`` and
``python tools/gen_tables.py benchmarks/results.json``.
"""
import os
import os.path as osp
import time
import warnings
from typing import Any, Callable, Dict, Optional

from .options import BenchmarkOptions

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

__all__ = ['BenchmarkOptions', 'run_benchmark', 'ROOT']


def run_benchmark(opts: BenchmarkOptions,
                  log: Optional[Callable[[str], None]] = print
                  ) -> Dict[str, Any]:
    """Run the sections of `opts` (all by default) and judge the goals.

    Returns:
        dict: ``meta`` (:func:`~.machine.machine_record`, the command,
        seconds per section and the load at the end), ``options``, ``sections`` (name -> result)
        and ``goals`` (:func:`~.goals.judge`).

    Raises:
        ValueError: `opts.only` names a section that does not exist.
    """
    import dataclasses

    import torch

    from .goals import judge
    from .machine import machine_record
    from .sections import discover
    sections = discover()
    only = list(opts.only) or list(sections)
    unknown = sorted(set(only) - set(sections))
    if unknown:
        raise ValueError(f'only: unknown sections {unknown}; choose from '
                         f'{list(sections)}')
    record: Dict[str, Any] = dict(
        meta=dict(machine_record(ROOT, list(opts.threads)),
                  command=opts.command,
                  torch_threads_default=torch.get_num_threads()),
        options={k: v for k, v in dataclasses.asdict(opts).items()
                 if k != 'command'},
        sections={})
    seconds = record['meta']['section_seconds'] = {}
    with warnings.catch_warnings():
        # mmdet/mmengine warn about deprecated defaults on every build
        warnings.simplefilter('ignore')
        for name, module in sections.items():
            if name in only:
                if log:
                    log(f'[{name}] load {os.getloadavg()[0]:.2f}')
                start = time.perf_counter()
                record['sections'][name] = module.run(opts)
                seconds[name] = round(time.perf_counter() - start, 1)
    record['meta']['load_average_end'] = list(os.getloadavg())
    record['goals'] = judge(record['sections'])
    return record
