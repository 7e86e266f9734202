"""Speed of deployed backbones per image and per FLOP, and of the fused
eager form: the figures behind issue #12 (docs/performance.md).

:func:`deployed_backbone_rows` times ReXNet-1.0x and ReXNet-lite-1.0x
(unaligned and channel-aligned) against mmdet's EfficientNet-B0 (as
exported, and with its "SAME" ``Pad`` nodes folded into the convs by
:func:`~rexnet_det.deploy.onnx_graph.fold_pads`) and mmdet's MobileNetV2
on onnxruntime, OpenVINO and eager PyTorch (eval and fused), with achieved
GFLOP/s against a same-run sgemm peak; :func:`comparison_table` prints it
as one table and :func:`backbone_goals` judges issue #12's goals on it.
Every backbone runs to its 1280-channel conv, batch 1, at a fixed input
size. :func:`alignment_rows` compares alignment multiples,
:func:`eager_fused_rows` the fused eager forms, :func:`ort_op_profile`
and :func:`torch_op_profile` say where the time goes.

All cases of one (size, threads) group are timed in interleaved rounds
(:func:`~rexnet_det.analysis.timing.measure`); ``ms`` is the median over
all calls and ``ms_min``/``ms_max`` the range of the round medians. Ratios
are medians of per-round ratios. Run under
:data:`~rexnet_det.analysis.detector_latency.TIMING_ENV`.
"""
import copy
import os
import os.path as osp
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..deploy.onnx import OrtRunner, export_onnx, openvino_cpu_config
from ..deploy.onnx_graph import constant_fold, count_ops, fold_pads
from ..models import ReXNet
from ..models.utils import align_channels, fuse_model
from .flops import image_complexity
from .goals import BACKBONE_GOALS
from .ort_profile import ort_op_times
from .peak import sgemm_peak_gflops
from .timing import Case, measure, paired_ratio

#: The per-FLOP reference of the tables.
PEER = 'MobileNetV2'


@dataclass
class Deployed:
    """One exported backbone on one runtime."""
    label: str
    path: str
    runtime: str  # 'ort', 'openvino', 'eager' or 'eager fused'
    macs: int
    info: Dict[str, Any] = field(default_factory=dict)
    module: Optional[nn.Module] = None  # the eager rows' model


def build_backbones(seed: int = 0) -> Dict[str, nn.Module]:
    """Eval-mode ReXNet-1.0x, ReXNet-lite-1.0x, EfficientNet-B0 and
    MobileNetV2 (mmdet), each to its 1280-channel conv, random weights."""
    from mmdet.models.backbones import EfficientNet, MobileNetV2
    torch.manual_seed(seed)
    models = dict(ReXNet=ReXNet(width_mult=1.0, out_indices=(5, )),
                  ReXNetLite=ReXNet(arch='lite', out_indices=(5, )),
                  EfficientNet=EfficientNet(arch='b0', out_indices=(6, )),
                  MobileNetV2=MobileNetV2(widen_factor=1.0,
                                          out_indices=(7, )))
    for model in models.values():
        model.eval()  # mmdet's train() may return None: no chaining
    return models


def ort_runner(path: str, threads: int) -> Callable[[np.ndarray], Any]:
    """``x -> outputs`` on onnxruntime (:func:`ort_session`)."""
    return OrtRunner(path, threads).run_numpy


def openvino_runner(path: str, threads: int
                    ) -> Callable[[np.ndarray], Any]:
    """``x -> outputs`` on OpenVINO's CPU plugin in float32, tuned for
    latency."""
    import openvino as ov
    compiled = ov.Core().compile_model(path, 'CPU', openvino_cpu_config(
        threads, PERFORMANCE_HINT='LATENCY'))
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})


def eager_runner(model: nn.Module, channels_last: bool = False
                 ) -> Callable[[np.ndarray], Any]:
    """``x -> outputs`` in eager PyTorch (the caller sets the threads)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x).contiguous(memory_format=fmt))
    return run


def fused_eager(name: str, model: nn.Module) -> nn.Module:
    """The fused eager form: :func:`fuse_model` for a ReXNet (BN folded,
    channels_last inside), mmcv's ``fuse_conv_bn`` + channels_last weights
    for mmdet's backbones (their input is made channels_last by the
    runner)."""
    if name.startswith('ReXNet'):
        return fuse_model(copy.deepcopy(model))
    from mmcv.cnn import fuse_conv_bn
    fused = fuse_conv_bn(copy.deepcopy(model))
    fused.eval()  # mmdet's train() may return None: no chaining
    return fused.to(memory_format=torch.channels_last)


RUNNERS = {'ort': ort_runner, 'openvino': openvino_runner}


def export_static(model: nn.Module, path: str, size: int,
                  align: bool = False) -> str:
    """Export at a fixed ``1 x 3 x size x size`` input."""
    return export_onnx(model, path, input_shape=(1, 3, size, size),
                       dynamic=False, align=align, names=['out'])


def fold_pads_file(src: str, dst: str, size: int) -> Dict[str, int]:
    """Write `src` with its pads folded into its convs to `dst`; return the
    Pad counts before and after."""
    import onnx
    model = onnx.load(src)
    folded = fold_pads(constant_fold(model, [1, 3, size, size]))
    onnx.save(folded, dst)
    return dict(pads_before=count_ops(model).get('Pad', 0),
                pads_after=count_ops(folded).get('Pad', 0))


LABELS = {'ReXNet': 'ReXNet-1.0x', 'ReXNetLite': 'ReXNet-lite-1.0x',
          'EfficientNet': 'EfficientNet-B0', 'MobileNetV2': PEER}


def export_deployed(size: int, out_dir: str, openvino: bool = True,
                    multiple: int = 4, eager: bool = True
                    ) -> List[Deployed]:
    """Export the rows of :func:`deployed_backbone_rows` at `size` (and
    build the eager ones)."""
    models = build_backbones()
    macs = {name: image_complexity(m, size, size)['macs']
            for name, m in models.items()}
    rexnet = models['ReXNet']
    aligned = align_channels(copy.deepcopy(rexnet), multiple)
    macs['ReXNet aligned'] = image_complexity(aligned, size, size)['macs']
    executed = dict(executed_gmacs=macs['ReXNet aligned'] / 1e9)
    lite_aligned = align_channels(copy.deepcopy(models['ReXNetLite']),
                                  multiple)
    lite_executed = dict(executed_gmacs=image_complexity(
        lite_aligned, size, size)['macs'] / 1e9)
    p = lambda name: osp.join(out_dir, f'{name}_{size}.onnx')  # noqa: E731
    export_static(rexnet, p('rexnet'), size)
    export_static(aligned, p('rexnet_aligned'), size)
    export_static(models['ReXNetLite'], p('lite'), size)
    export_static(lite_aligned, p('lite_aligned'), size)
    export_static(models['EfficientNet'], p('effnet'), size)
    folded = fold_pads_file(p('effnet'), p('effnet_folded'), size)
    export_static(models['MobileNetV2'], p('mbv2'), size)
    aligned_x = f'aligned x{multiple}'
    # label -> (file, MACs, extra info). Per-FLOP figures use the network's
    # own MACs: the padded zeros are overhead of the form, not work.
    files = {
        'ReXNet-1.0x unaligned': (p('rexnet'), macs['ReXNet'], {}),
        f'ReXNet-1.0x {aligned_x}': (p('rexnet_aligned'), macs['ReXNet'],
                                     executed),
        'ReXNet-lite-1.0x unaligned': (p('lite'), macs['ReXNetLite'], {}),
        f'ReXNet-lite-1.0x {aligned_x}': (p('lite_aligned'),
                                          macs['ReXNetLite'], lite_executed),
        'EfficientNet-B0 as exported': (
            p('effnet'), macs['EfficientNet'],
            dict(pads=folded['pads_before'])),
        'EfficientNet-B0 pads folded': (
            p('effnet_folded'), macs['EfficientNet'],
            dict(pads=folded['pads_after'])),
        PEER: (p('mbv2'), macs['MobileNetV2'], {}),
    }
    # OpenVINO: the forms that matter there (it fuses Swish, pads nothing)
    on_openvino = [f'ReXNet-1.0x {aligned_x}', 'ReXNet-1.0x unaligned',
                   f'ReXNet-lite-1.0x {aligned_x}',
                   'EfficientNet-B0 pads folded', PEER] if openvino else []
    rows = [Deployed(label, path, runtime, count, info)
            for runtime, labels in (('ort', list(files)),
                                    ('openvino', on_openvino))
            for label in labels
            for path, count, info in [files[label]]]
    if eager:  # PyTorch eval and fused forms of the same networks
        for name, model in models.items():
            rows += [Deployed(LABELS[name], '', 'eager', macs[name],
                              module=model),
                     Deployed(LABELS[name], '', 'eager fused', macs[name],
                              module=fused_eager(name, model))]
    return rows


def _stats(t) -> Dict[str, float]:
    """Wall median over all calls, range of round medians, CPU median."""
    medians = [v * 1e3 for v in t.round_medians()]
    return dict(ms=statistics.median([w * 1e3 for r in t.wall for w in r]),
                ms_min=min(medians), ms_max=max(medians),
                cpu_ms=statistics.median([c * 1e3 for r in t.cpu
                                          for c in r]))


def _speedup_rows(cases: Sequence[Case], rounds: int, calls: int
                  ) -> List[Dict[str, Any]]:
    """Time `cases` interleaved; one row each, with ``speedup`` = the first
    case's time over this one's (median of rounds, wall and CPU clock)."""
    timings = measure(cases, rounds, calls, warmup=3)
    base = timings[cases[0].name]
    rows = []
    for case in cases:
        t = timings[case.name]
        rows.append(dict(case.info, **_stats(t),
                         speedup=paired_ratio(base, t),
                         speedup_cpu=paired_ratio(base, t, 'cpu'),
                         load=os.getloadavg()[0]))
    return rows


def time_deployed(models: Sequence[Deployed], size: int, threads: int,
                  rounds: int, calls: int) -> List[Dict[str, Any]]:
    """Time `models` interleaved; one row each, with per-FLOP ratios to
    :data:`PEER` on the same runtime."""
    x = np.random.RandomState(0).standard_normal(
        (1, 3, size, size)).astype(np.float32)
    cases = []
    for m in models:
        run = (eager_runner(m.module, m.runtime == 'eager fused')
               if m.module is not None else RUNNERS[m.runtime](m.path,
                                                                threads))
        cases.append(Case(f'{m.label} | {m.runtime}', lambda r=run: r(x),
                          1, dict(model=m.label, runtime=m.runtime,
                                  size=size, threads=threads,
                                  gmacs=m.macs / 1e9, **m.info)))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # the eager rows'
    try:
        peak = sgemm_peak_gflops(threads)
        timings = measure(cases, rounds, calls, warmup=3)
    finally:
        torch.set_num_threads(previous)
    by_case = {(t.case.info['model'], t.case.info['runtime']): t
               for t in timings.values()}
    rows = []
    for m, case in zip(models, cases):
        t = timings[case.name]
        row = dict(case.info, **_stats(t), load=os.getloadavg()[0])
        row['ms_per_gflop'] = row['ms'] / (m.macs / 1e9)
        # 2 FLOPs per MAC, the network's own MACs (padding is overhead)
        row.update(gflops=2 * m.macs / 1e9 / (row['ms'] / 1e3),
                   peak_gflops=peak)
        row['of_peak'] = row['gflops'] / peak
        peer = next((p for p in models if p.label == PEER and
                     p.runtime == m.runtime), None)
        if peer is not None:
            ratio = paired_ratio(t, by_case[(PEER, m.runtime)])
            cpu = paired_ratio(t, by_case[(PEER, m.runtime)], 'cpu')
            flops = m.macs / peer.macs
            row.update(per_flop_vs_peer=ratio['median'] / flops,
                       per_flop_min=ratio['min'] / flops,
                       per_flop_max=ratio['max'] / flops,
                       per_flop_cpu=cpu['median'] / flops)
        rows.append(row)
    return rows


def deployed_backbone_rows(threads: Sequence[int] = (1, 2),
                           sizes: Sequence[int] = (224, 320),
                           rounds: int = 7, calls: int = 10,
                           openvino: bool = True,
                           out_dir: Optional[str] = None,
                           eager: bool = True
                           ) -> List[Dict[str, Any]]:
    """Deployed backbones per image and per FLOP (ReXNet-1.0x and
    ReXNet-lite-1.0x unaligned and aligned, EfficientNet-B0 as exported and
    pads-folded, MobileNetV2; eager PyTorch eval and fused forms of each).

    Args:
        threads (Sequence[int]): Thread counts, each its own group.
        sizes (Sequence[int]): Square input sizes.
        rounds, calls (int): Interleaved rounds, timed calls per round.
        openvino (bool): Add OpenVINO (f32) rows. Default: True.
        eager (bool): Add eager PyTorch rows (``'eager'``: eval mode,
            ``'eager fused'``: BN folded, channels_last). Default: True.
        out_dir (str, optional): Keep the ONNX files there. Default: a
            temporary directory.

    Returns:
        list[dict]: One row per (size, threads, model, runtime): ``model``,
        ``runtime``, ``size``, ``threads``, ``gmacs`` (the network's own
        MACs; aligned rows add ``executed_gmacs``, padding included),
        ``ms`` (median),
        ``ms_min``/``ms_max`` (round medians), ``cpu_ms`` (process CPU
        time, the fairer clock on one thread of a shared machine),
        ``ms_per_gflop``, ``per_flop_vs_peer`` (time ratio to MobileNetV2
        on the same runtime over the MAC ratio, median of rounds, with
        ``per_flop_min/max``; ``per_flop_cpu`` on the CPU clock) and
        ``load`` (1-minute load average after the group), ``gflops``
        (achieved, 2 FLOPs per own MAC), ``peak_gflops`` (sgemm on the
        group's threads, same run) and ``of_peak``.

    Example:
        >>> rows = deployed_backbone_rows(threads=(1, ), sizes=(224, ),
        ...                               rounds=3, calls=5)
        >>> sorted({r['model'] for r in rows})[0]
        'EfficientNet-B0 as exported'
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        where = out_dir or tmp
        os.makedirs(where, exist_ok=True)
        for size in sizes:
            models = export_deployed(size, where, openvino, eager=eager)
            for count in threads:
                rows += time_deployed(models, size, count, rounds, calls)
    return rows


def alignment_rows(multiples: Sequence[int] = (1, 4, 8, 16),
                   sizes: Sequence[int] = (224, 320), threads: int = 1,
                   rounds: int = 7, calls: int = 10
                   ) -> List[Dict[str, Any]]:
    """ReXNet-1.0x on onnxruntime aligned to each multiple (1 = off), timed
    interleaved; rows as :func:`time_deployed` plus ``speedup`` (time of
    multiple 1 over this one, median of rounds)."""
    rows = []
    rexnet = build_backbones()['ReXNet']
    multiples = [1] + [m for m in multiples if m != 1]  # 1: the base
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            models = []
            for m in multiples:
                model = align_channels(copy.deepcopy(rexnet), m)
                path = export_static(model, osp.join(tmp, f'{m}.onnx'), size)
                models.append(Deployed(f'x{m}', path, 'ort', image_complexity(
                    model, size, size)['macs'], dict(multiple=m)))
            x = np.random.RandomState(0).standard_normal(
                (1, 3, size, size)).astype(np.float32)
            cases = [Case(d.label, lambda r=ort_runner(d.path, threads): r(x),
                          1, dict(d.info, size=size, threads=threads,
                                  gmacs=d.macs / 1e9)) for d in models]
            rows += _speedup_rows(cases, rounds, calls)
    return rows


def eager_forms(seed: int = 0) -> Dict[str, nn.Module]:
    """ReXNet-1.0x (to the 1280-ch conv) eval, BN-folded NCHW, BN-folded
    channels_last, and aligned + folded channels_last."""
    torch.manual_seed(seed)
    base = ReXNet(out_indices=(5, )).eval()
    return {
        'eval': base,
        'fused NCHW': fuse_model(copy.deepcopy(base), channels_last=False),
        'fused channels_last': fuse_model(copy.deepcopy(base)),
        'aligned + fused channels_last': fuse_model(
            align_channels(copy.deepcopy(base))),
    }


def eager_fused_rows(sizes: Sequence[int] = (224, 320),
                     threads: Sequence[int] = (1, ), rounds: int = 9,
                     calls: int = 10) -> List[Dict[str, Any]]:
    """Eager PyTorch ReXNet-1.0x forms, batch 1, interleaved; ``speedup``
    is eval time over the form's time (median of rounds, with min/max).

    Example:
        >>> rows = eager_fused_rows(sizes=(224, ), rounds=3, calls=5)
        >>> [r['form'] for r in rows][:2]
        ['eval', 'fused NCHW']
    """
    rows = []
    forms = eager_forms()
    previous = torch.get_num_threads()
    try:
        for count in threads:
            torch.set_num_threads(count)
            for size in sizes:
                x = torch.randn(1, 3, size, size)

                def call(model, x=x):
                    with torch.no_grad():
                        return model(x)

                cases = [Case(name, lambda m=m: call(m), 1,
                              dict(form=name, size=size, threads=count))
                         for name, m in forms.items()]
                rows += _speedup_rows(cases, rounds, calls)
    finally:
        torch.set_num_threads(previous)
    return rows


def ort_op_profile(path: str, size: int, threads: int = 1,
                   runs: int = 30) -> Dict[str, float]:
    """onnxruntime's own profile of an exported backbone on a zero image:
    ms per run by op type (:func:`~.ort_profile.ort_op_times`)."""
    return ort_op_times(path, {'input': np.zeros((1, 3, size, size),
                                                 np.float32)}, threads, runs)


def torch_op_profile(model: nn.Module, size: int, runs: int = 10
                     ) -> Dict[str, float]:
    """torch.profiler self CPU ms per run by op of ``model`` at batch 1."""
    from torch.profiler import ProfilerActivity, profile
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(x)
    totals = {e.key: e.self_cpu_time_total / 1e3 / runs
              for e in prof.key_averages()}
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def format_rows(rows: List[Dict[str, Any]]) -> str:
    """A markdown table of deployed or eager rows."""
    if rows and 'form' in rows[0]:
        lines = ['| form | size | threads | ms [min-max] | CPU ms | speed-up '
                 'vs eval [min-max] | speed-up, CPU clock |',
                 '|---|---|---|---|---|---|---|']
        for r in rows:
            s, c = r['speedup'], r['speedup_cpu']
            lines.append(f'| {r["form"]} | {r["size"]} | {r["threads"]} | '
                         f'{r["ms"]:.2f} [{r["ms_min"]:.2f}-'
                         f'{r["ms_max"]:.2f}] | {r["cpu_ms"]:.2f} | '
                         f'{s["median"]:.2f} [{s["min"]:.2f}-{s["max"]:.2f}]'
                         f' | {c["median"]:.2f} [{c["min"]:.2f}-'
                         f'{c["max"]:.2f}] |')
        return '\n'.join(lines)
    lines = ['| model | runtime | size | threads | GMACs | ms [min-max] | '
             f'CPU ms | ms/GMAC | per FLOP vs {PEER} [min-max] | same, CPU '
             'clock |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        per_flop = (f'{r["per_flop_vs_peer"]:.2f} [{r["per_flop_min"]:.2f}-'
                    f'{r["per_flop_max"]:.2f}]'
                    if 'per_flop_vs_peer' in r else '-')
        lines.append(f'| {r["model"]} | {r["runtime"]} | {r["size"]} | '
                     f'{r["threads"]} | {r["gmacs"]:.3f} | {r["ms"]:.2f} '
                     f'[{r["ms_min"]:.2f}-{r["ms_max"]:.2f}] | '
                     f'{r["cpu_ms"]:.2f} | {r["ms_per_gflop"]:.1f} | '
                     f'{per_flop} | '
                     f'{r.get("per_flop_cpu", float("nan")):.2f} |')
    return '\n'.join(lines)


def comparison_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The whole comparison of :func:`deployed_backbone_rows` as one
    markdown table: a line per (model, runtime), per (size, threads) group
    ``ms / per FLOP vs MobileNetV2``, and the achieved GFLOP/s with its
    share of the same-run sgemm peak in the first group."""
    groups = sorted({(r['size'], r['threads']) for r in rows})
    lines, seen = [], {}
    for r in rows:
        seen.setdefault((r['model'], r['runtime']), {})[
            r['size'], r['threads']] = r
    first = groups[0]
    peak = next(r['peak_gflops'] for r in rows
                if (r['size'], r['threads']) == first)
    head = ' | '.join(f'{s} px {t}t: ms / per FLOP' for s, t in groups)
    lines += [f'| model | runtime | GMACs ({first[0]} px) | {head} | '
              f'GFLOP/s ({first[0]} px {first[1]}t; sgemm peak '
              f'{peak:.0f}) |', '|---' * (4 + len(groups)) + '|']
    for (model, runtime), by_group in seen.items():
        cells = []
        for g in groups:
            r = by_group.get(g)
            cells.append('-' if r is None else
                         f'{r["ms"]:.2f} / '
                         f'{r.get("per_flop_vs_peer", float("nan")):.2f}')
        r0 = by_group.get(first) or next(iter(by_group.values()))
        lines.append(f'| {model} | {runtime} | {r0["gmacs"]:.3f} | '
                     + ' | '.join(cells) + f' | {r0["gflops"]:.1f} '
                     f'({r0["of_peak"]:.0%}) |')
    return '\n'.join(lines)


def backbone_goals(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """:data:`~rexnet_det.analysis.goals.BACKBONE_GOALS` judged on the rows
    of :func:`deployed_backbone_rows` at 224 px (a goal whose rows are
    missing is left out). The per-FLOP goal uses the rows' paired
    per-round ratio; the latency and fused goals divide the two rows'
    medians."""
    def find(model, runtime, threads):
        return next((r for r in rows if r['model'].startswith(model) and
                     r['runtime'] == runtime and r['size'] == 224 and
                     r['threads'] == threads), None)
    results = []
    for threads in sorted({r['threads'] for r in rows}):
        ours = find('ReXNet-1.0x aligned', 'ort', threads)
        peer = find('EfficientNet-B0 pads folded', 'ort', threads)
        if ours and peer:
            limit = BACKBONE_GOALS['latency_vs_effnet']
            value = ours['ms'] / peer['ms']
            results.append(dict(
                name=f'ORT latency vs fair EfficientNet-B0, {threads}t',
                value=value, limit=limit, met=value <= limit))
    per_flop = [r['per_flop_vs_peer'] for rt in ('ort', 'openvino')
                if (r := find('ReXNet-1.0x aligned', rt, 1))]
    if per_flop:
        limit = BACKBONE_GOALS['per_flop']
        results.append(dict(name='per FLOP vs MobileNetV2, 1t (best '
                            'runtime)', value=min(per_flop), limit=limit,
                            met=min(per_flop) <= limit))
    plain, fused = find('ReXNet-1.0x', 'eager', 1), find(
        'ReXNet-1.0x', 'eager fused', 1)
    if plain and fused:
        limit = BACKBONE_GOALS['fused_speedup']
        value = plain['ms'] / fused['ms']
        results.append(dict(name='eager fused vs eval, 1t', value=value,
                            limit=limit, met=value >= limit))
    return results
