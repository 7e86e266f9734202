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

__all__ = ['BenchmarkOptions', 'run_benchmark', 'update_record', 'ROOT']


def run_benchmark(opts: BenchmarkOptions,
                  log: Optional[Callable[[str], None]] = print
                  ) -> Dict[str, Any]:
    """Run the sections of `opts` (all by default) and judge the goals.

    Returns:
        dict: ``meta`` (:func:`~.machine.machine_record`, the command,
        seconds per section and the load at the end), ``options``,
        ``sections`` (name -> result)
        and ``goals`` (:func:`~.goals.judge`).

    Raises:
        ValueError: `opts.only` or `opts.skip` names a section that does
            not exist.
    """
    import dataclasses

    import torch

    from .goals import judge
    from .machine import machine_record
    from .sections import discover
    sections = discover()
    for name in ('only', 'skip'):
        unknown = sorted(set(getattr(opts, name)) - set(sections))
        if unknown:
            raise ValueError(f'{name}: unknown sections {unknown}; choose '
                             f'from {list(sections)}')
    only = [n for n in list(opts.only) or list(sections)
            if n not in opts.skip]
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


def update_record(old: Dict[str, Any], new: Dict[str, Any]
                  ) -> Dict[str, Any]:
    """`old` with the sections of the later run `new` added or replaced,
    the goals judged again, and `new`'s meta (command, date, commit, load,
    seconds) kept under ``meta['updates']`` so every figure still names the
    run that measured it."""
    from .goals import judge
    merged = dict(old, sections=dict(old['sections'], **new['sections']))
    meta = dict(old['meta'])
    meta['updates'] = list(meta.get('updates', [])) + [dict(
        {k: new['meta'][k] for k in (
            'commit', 'dirty', 'date', 'command', 'load_average_start',
            'load_average_end', 'section_seconds', 'threads')},
        options=new['options'], sections=sorted(new['sections']))]
    merged['meta'] = meta
    merged['goals'] = judge(merged['sections'])
    return merged
