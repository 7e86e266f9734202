"""NCHWc alignment: ReXNet-1.0x on onnxruntime with its channels padded to
each multiple (1 = off), interleaved, and onnxruntime's own profile by op
type of the unaligned and the default (x4) graph - which convs run on the
blocked NCHWc path."""
import copy
import os.path as osp
import tempfile
from typing import Any, Dict

import numpy as np

from rexnet_det.models import ReXNet
from rexnet_det.models.utils import align_channels
from tools.bench.goals import clock
from tools.bench.sections.backbones import (export_static, inverse,
                                            ort_runner, ratio, stats)
from tools.lib.flops import image_complexity
from tools.lib.ort_profile import ort_op_times
from tools.lib.timing import Case, measure

NAME, ORDER = 'alignment', 30
MULTIPLES = (1, 4, 8, 16)


def run(opts) -> Dict[str, Any]:
    import torch
    torch.manual_seed(0)
    base = ReXNet(out_indices=(5, )).eval()
    rows, profiles = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in opts.sizes:
            paths, cases = {}, []
            x = np.random.RandomState(0).standard_normal(
                (1, 3, size, size)).astype(np.float32)
            for m in MULTIPLES:
                model = align_channels(copy.deepcopy(base), m)
                paths[m] = export_static(model, osp.join(
                    tmp, f'x{m}_{size}.onnx'), size)
                cases.append(Case(f'x{m}', lambda r=ort_runner(
                    paths[m], 1): r(x), 1, dict(
                        multiple=m, size=size, threads=1,
                        executed_gmacs=image_complexity(
                            model, size, size)['macs'] / 1e9)))
            timings = measure(cases, opts.rounds, opts.calls, warmup=3)
            unaligned = timings['x1']
            rows += [dict(c.info, **stats(timings[c.name]), speedup=inverse(
                ratio(timings[c.name], unaligned))) for c in cases]
            if size == opts.sizes[0]:
                profiles = {f'x{m}': ort_op_times(
                    paths[m], {'input': x}, 1, 2 if opts.quick else 20)
                    for m in (1, 4)}
    return dict(rows=rows, profile=dict(size=opts.sizes[0], threads=1,
                                        ms_per_op=profiles))


def tables(result: Dict[str, Any]) -> Dict[str, str]:
    lines = ['| multiple | size | executed GMACs | ms [min-max] | CPU ms | '
             'speed-up vs unaligned, CPU clock [min-max] |',
             '|---|---|---|---|---|---|']
    for r in result['rows']:
        s = r['speedup'][clock(r['threads'])]
        lines.append(f'| {r["multiple"]} | {r["size"]} | '
                     f'{r["executed_gmacs"]:.4f} | {r["ms"]:.2f} '
                     f'[{r["ms_min"]:.2f}-{r["ms_max"]:.2f}] | '
                     f'{r["cpu_ms"]:.2f} | {s["median"]:.2f} '
                     f'[{s["min"]:.2f}-{s["max"]:.2f}] |')
    prof = result['profile']['ms_per_op']
    names = list(prof)
    ops = sorted({op for n in names for op in list(prof[n])[:8]},
                 key=lambda op: -max(prof[n].get(op, 0) for n in names))
    top = ['| op (after onnxruntime\'s optimisation) | ' + ' | '.join(
        f'{n} ({sum(prof[n].values()):.2f} ms)' for n in names) + ' |',
        '|---' * (1 + len(names)) + '|']
    top += [f'| {op} | ' + ' | '.join(f'{prof[n].get(op, 0.0):.2f}'
                                      for n in names) + ' |' for op in ops]
    return dict(alignment='\n'.join(lines), alignment_profile='\n'.join(top))
