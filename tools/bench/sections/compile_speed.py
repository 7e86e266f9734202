"""Compiled execution (issue #22): ReXNet-1.0x, EfficientNet-B0 and
MobileNetV2 (mmdet) to the 1280-channel conv, batch 1, in eager eval, with
``torch.compile`` (inductor) and with inductor's ``freezing``
(:func:`rexnet_det.models.compile_for_inference`, static shapes), and
onnxruntime on the aligned ReXNet-1.0x and the MobileNetV2 exports in the
same run, at each of ``opts.sizes`` and ``opts.threads``.

Each (size, threads) group is compiled under its thread count (inductor
bakes it in); ``compile_s`` (the first call) is reported apart from the
latency. The cases of a group are timed in interleaved rounds; ratios are
medians of per-round ratios on both clocks, taken for the faster compiled
form of each backbone. ``--quick`` compiles with dynamo's ``eager``
backend (graph capture, no code generation) at 64 px and leaves freezing
out: a smoke test of the path, seconds instead of minutes. The section is
skipped with ``--skip compiled``.
"""
import copy
import os
import os.path as osp
import statistics
import tempfile
import time
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from rexnet_det.models import compile_for_inference
from tools.bench.goals import clock
from tools.bench.sections.backbones import (LABELS, build_backbones,
                                            eager_runner, export_static,
                                            inverse, ort_runner, ratio,
                                            stats)
from tools.lib.flops import image_complexity
from tools.lib.timing import Case, Timings, measure

NAME, ORDER = 'compiled', 15
MODELS = ('ReXNet', 'EfficientNet', 'MobileNetV2')
FORMS = ('eager', 'compiled', 'compiled+freezing')
ORT = ('ReXNet', 'MobileNetV2')  # ReXNet aligned (the default export)
ORT_FORM = 'onnxruntime aligned'


def _ratio_of_ratios(a: Timings, b: Timings, c: Timings, d: Timings
                     ) -> Dict[str, Dict[str, float]]:
    """``(a / b) / (c / d)`` per round, median and range, both clocks."""
    out = {}
    for name in ('wall', 'cpu'):
        values = [(ta / tb) / (tc / td) for ta, tb, tc, td in zip(
            *(t.round_medians(name) for t in (a, b, c, d)))]
        out[name] = dict(median=float(statistics.median(values)),
                         min=float(min(values)), max=float(max(values)))
    return out


def time_group(models: Dict[str, torch.nn.Module], onnx: Dict[str, str],
               size: int, threads: int, rounds: int, calls: int,
               forms: Sequence[str], backend: str) -> Dict[str, Any]:
    """Compile every form under `threads`, time all interleaved.

    Returns:
        dict: ``size``, ``threads``, ``rows`` (one per model and form, with
        ``compile_s`` for compiled forms and ``vs_eager``) and the goal
        ratios of the faster compiled ReXNet form (``best_form``):
        ``vs_ort``, ``speedup`` and ``per_flop_vs_ort``.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = np.random.RandomState(0).standard_normal(
            (1, 3, size, size)).astype(np.float32)
        cases, compile_s = [], {}
        for name in MODELS:
            for form in forms:
                model = models[name] if form == 'eager' else \
                    compile_for_inference(copy.deepcopy(models[name]),
                                          freezing=form.endswith('freezing'),
                                          dynamic=False, backend=backend)
                run = eager_runner(model)
                start = time.perf_counter()
                run(x)  # compiles
                if form != 'eager':
                    compile_s[name, form] = time.perf_counter() - start
                cases.append(Case(f'{name} | {form}', lambda r=run: r(x), 1,
                                  dict(model=LABELS[name], form=form)))
        for name in ORT:
            run = ort_runner(onnx[name], threads)
            cases.append(Case(f'{name} | ort', lambda r=run: r(x), 1,
                              dict(model=LABELS[name], form=ORT_FORM)))
        timings = measure(cases, rounds, calls, warmup=3)
    finally:
        torch.set_num_threads(previous)
    by_key = {(t.case.info['model'], t.case.info['form']): t
              for t in timings.values()}
    rows = []
    for t in timings.values():
        model, form = t.case.info['model'], t.case.info['form']
        name = next(n for n in MODELS if LABELS[n] == model)
        row = dict(t.case.info, size=size, threads=threads,
                   gmacs=models[name].gmacs, **stats(t),
                   load=os.getloadavg()[0])
        if form != 'eager':
            row['vs_eager'] = inverse(ratio(t, by_key[model, 'eager']))
        if (name, form) in compile_s:
            row['compile_s'] = compile_s[name, form]
        rows.append(row)

    def best(name: str) -> str:
        return min(forms[1:], key=lambda f: statistics.median(
            by_key[LABELS[name], f].round_medians(clock(threads))))
    rex, mbv2 = LABELS['ReXNet'], LABELS['MobileNetV2']
    form = best('ReXNet')
    compiled = by_key[rex, form]
    return dict(size=size, threads=threads, rows=rows, best_form=form,
                vs_ort=ratio(compiled, by_key[rex, ORT_FORM]),
                speedup=inverse(ratio(compiled, by_key[rex, 'eager'])),
                # per FLOP: the MAC ratio is the same on both sides, cancels
                per_flop_vs_ort=_ratio_of_ratios(
                    compiled, by_key[mbv2, best('MobileNetV2')],
                    by_key[rex, ORT_FORM], by_key[mbv2, ORT_FORM]))


def run(opts) -> Dict[str, Any]:
    sizes = (64, ) if opts.quick else tuple(opts.sizes)
    forms = FORMS[:2] if opts.quick else FORMS
    backend = 'eager' if opts.quick else 'inductor'
    models = build_backbones()
    models = {n: models[n] for n in MODELS}
    groups = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for model in models.values():
                model.gmacs = image_complexity(model, size, size)['macs'] / 1e9
            onnx = {n: export_static(models[n],
                                     osp.join(tmp, f'{n}_{size}.onnx'), size,
                                     align=n == 'ReXNet') for n in ORT}
            for threads in opts.threads:
                groups.append(time_group(models, onnx, size, threads,
                                         opts.rounds, opts.calls, forms,
                                         backend))
    return dict(groups=groups, backend=backend, torch=torch.__version__,
                method=('batch 1, random weights, to the 1280-channel conv; '
                        'compile_for_inference(dynamic=False), compiled '
                        'under the group\'s thread count; compile_s is the '
                        'first call; ratios: median of per-round ratios'))


def tables(result: Dict[str, Any]) -> Dict[str, str]:
    """``compiled``: a line per (size, threads, model, form) and the goal
    ratios of each group."""
    lines = ['| size | threads | model | form | ms [min-max] | CPU ms | '
             'vs eager | compile s |', '|---|---|---|---|---|---|---|---|']
    for g in result['groups']:
        c = clock(g['threads'])
        for r in g['rows']:
            vs = (f'{r["vs_eager"][c]["median"]:.2f}x' if 'vs_eager' in r
                  else '-')
            comp = f'{r["compile_s"]:.1f}' if 'compile_s' in r else '-'
            lines.append(f'| {g["size"]} | {g["threads"]} | {r["model"]} | '
                         f'{r["form"]} | {r["ms"]:.2f} [{r["ms_min"]:.2f}-'
                         f'{r["ms_max"]:.2f}] | {r["cpu_ms"]:.2f} | {vs} | '
                         f'{comp} |')
    lines += ['', '| size | threads | ReXNet form | compiled / ORT aligned | '
              'speed-up vs eager | per FLOP vs ORT |',
              '|---|---|---|---|---|---|']
    for g in result['groups']:
        c = clock(g['threads'])
        lines.append(f'| {g["size"]} | {g["threads"]} | {g["best_form"]} | '
                     f'{g["vs_ort"][c]["median"]:.2f} | '
                     f'{g["speedup"][c]["median"]:.2f}x | '
                     f'{g["per_flop_vs_ort"][c]["median"]:.2f} |')
    return dict(compiled='\n'.join(lines))
