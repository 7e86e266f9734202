"""Compiled execution speed (issue #22) with its peers in the same run:
ReXNet-1.0x, EfficientNet-B0 and MobileNetV2 (mmdet) to the 1280-channel
conv, batch 1: eager eval, ``torch.compile`` (inductor) and with inductor's
``freezing`` (:func:`rexnet_det.models.compile_for_inference`, static
shapes), and onnxruntime on the aligned ReXNet-1.0x / MobileNetV2 exports.
Each (size, threads) group is compiled under its thread count (inductor
bakes it in), timed in interleaved rounds (median ms, [min-max] of round
medians, ratios: median of per-round ratios); ``compile_s`` is the first
call. Goals: ``GOALS``. Example (docs/performance.md)::

    nice -n 10 python tools/analysis/compile_speed.py --json OUT.json
"""
import argparse, copy, json, os, os.path as osp  # noqa: E401
import sys, tempfile, time, warnings  # noqa: E401
from typing import List, Optional

HERE = osp.dirname(osp.abspath(__file__))
sys.path[:0] = [osp.dirname(osp.dirname(HERE)), HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rexnet_det.analysis.backbone_speed import (  # noqa: E402
    LABELS, build_backbones, eager_runner, export_static, ort_runner)
from rexnet_det.analysis.detector_latency import \
    restart_with_timing_env  # noqa: E402
from rexnet_det.analysis.flops import image_complexity  # noqa: E402
from rexnet_det.analysis.timing import Case, measure, paired_ratio  # noqa
from rexnet_det.models import compile_for_inference  # noqa: E402
from rexnet_det.utils.io import atomic_write  # noqa: E402
from run_info import machine  # noqa: E402  (tools/analysis/run_info.py)

#: compiled ReXNet / aligned ORT ReXNet latency (at most); compiled over
#: eager eval speed-up (at least); per FLOP vs MobileNetV2: compiled ratio
#: over the ORT ratio (at most).
GOALS = dict(vs_ort=1.25, speedup=1.3, per_flop_vs_ort=1.0)
FORMS = ('eager', 'compiled', 'compiled+freezing')
MODELS = ('ReXNet', 'EfficientNet', 'MobileNetV2')
ORT = ('ReXNet', 'MobileNetV2')  # aligned export (MobileNetV2: no-op)


def group(models: dict, onnx: dict, size: int, threads: int, rounds: int,
          calls: int) -> List[dict]:
    """Compile (under `threads`) and time every form of one group."""
    torch.set_num_threads(threads)
    x = np.random.RandomState(0).standard_normal(
        (1, 3, size, size)).astype(np.float32)
    cases, compile_s = [], {}
    for name in MODELS:
        for form in FORMS:
            model = models[name] if form == 'eager' else compile_for_inference(
                copy.deepcopy(models[name]), dynamic=False,
                freezing=form.endswith('freezing'))
            run = eager_runner(model)
            start = time.perf_counter()
            run(x)  # compiles
            if form != 'eager':
                compile_s[name, form] = time.perf_counter() - start
            cases.append(Case(f'{name} {form}', lambda r=run: r(x), 1,
                              dict(model=LABELS[name], form=form)))
    for name in ORT:
        run = ort_runner(onnx[name], threads)
        cases.append(Case(f'{name} ort', lambda r=run: r(x), 1, dict(
            model=LABELS[name], form='onnxruntime aligned')))
    timings = measure(cases, rounds, calls, warmup=3)
    eager = {n: timings[f'{n} eager'] for n in MODELS}
    rows = []
    for case in cases:
        t, name = timings[case.name], case.name.split()[0]
        medians = [v * 1e3 for v in t.round_medians()]
        row = dict(case.info, size=size, threads=threads,
                   gmacs=models[name].gmacs, ms=float(np.median(medians)),
                   ms_min=min(medians), ms_max=max(medians),
                   cpu_ms=float(np.median(t.round_medians('cpu'))) * 1e3,
                   load=os.getloadavg()[0], timings=t)
        row['vs_eager'] = paired_ratio(eager[name], t)['median']
        if (name, case.info['form']) in compile_s:
            row['compile_s'] = compile_s[name, case.info['form']]
        rows.append(row)
    return rows


def judge(rows: List[dict]) -> List[dict]:
    """The GOALS on one group's rows (best compiled form per model)."""
    find = {(r['model'], r['form']): r for r in rows}
    best = {m: min((find[LABELS[m], f] for f in FORMS[1:]),
                   key=lambda r: r['ms']) for m in MODELS}
    ort = {m: find[LABELS[m], 'onnxruntime aligned'] for m in ORT}
    rex, mbv2 = best['ReXNet'], best['MobileNetV2']
    ratio = lambda a, b: paired_ratio(a['timings'], b['timings'])['median']
    # per FLOP: the MAC ratio is the same on both runtimes and cancels
    values = dict(vs_ort=ratio(rex, ort['ReXNet']), speedup=rex['vs_eager'],
                  per_flop_vs_ort=ratio(rex, mbv2) / ratio(
                      ort['ReXNet'], ort['MobileNetV2']))
    where = f"{rex['size']} px, {rex['threads']}t, {rex['form']}"
    return [dict(goal=k, where=where, value=v, limit=GOALS[k],
                 met=v >= GOALS[k] if k == 'speedup' else v <= GOALS[k])
            for k, v in values.items()]


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[224, 320])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--calls', type=int, default=10)
    parser.add_argument('--json', metavar='PATH', help='write the figures')
    args = parser.parse_args(argv)
    restart_with_timing_env(argv)
    warnings.filterwarnings('ignore')
    report = dict(machine(), load_start=os.getloadavg(), rows=[], goals=[])
    print({k: v for k, v in report.items() if k != 'rows'}, flush=True)
    models = build_backbones()
    models = {n: models[n] for n in MODELS}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for name, model in models.items():
                model.gmacs = image_complexity(model, size, size)['macs'] / 1e9
            onnx = {n: export_static(models[n], osp.join(tmp, f'{n}.onnx'),
                                     size, align=n == 'ReXNet') for n in ORT}
            for threads in args.threads:
                rows = group(models, onnx, size, threads, args.rounds,
                             args.calls)
                report['goals'] += judge(rows)
                for r in rows:
                    print(f"{size} px {threads}t | {r['model']:<16} | "
                          f"{r['form']:<19} | {r['ms']:7.2f} ms [{r['ms_min']:.2f}"
                          f"-{r['ms_max']:.2f}] CPU {r['cpu_ms']:7.2f} ms | "
                          f"x{r['vs_eager']:.2f} vs eager"
                          f" | compile {r.get('compile_s', 0):5.1f} s | "
                          f"load {r['load']:.2f}", flush=True)
                    report['rows'].append({k: v for k, v in r.items()
                                           if k != 'timings'})
                if args.json:  # after each group: a long run keeps its rows
                    atomic_write(json.dumps(report, indent=1), args.json)
    report['load_end'] = os.getloadavg()
    for g in report['goals']:
        print(f"goal {g['goal']} ({g['where']}): {g['value']:.2f} (limit "
              f"{g['limit']}): {'met' if g['met'] else 'NOT met'}")
    print(f"load average at end: {report['load_end']}")
    if args.json:
        atomic_write(json.dumps(report, indent=1), args.json)
    return report


if __name__ == '__main__':
    main()
