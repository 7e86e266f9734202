"""Backbones per image and per FLOP on every runtime, in one table.

ReXNet-1.0x and ReXNet-lite-1.0x (unaligned and channel-aligned) against
mmdet's EfficientNet-B0 (as exported, and with its "SAME" ``Pad`` nodes
folded into the convs by :func:`tools.lib.onnx_graph.fold_pads`, the fair
form) and mmdet's MobileNetV2 on onnxruntime and OpenVINO (float32), and
the same networks in eager PyTorch, eval and fused (BN folded,
channels_last). Every backbone runs to its 1280-channel conv at batch 1
with random weights (speed does not depend on them), at each size and
thread count; achieved GFLOP/s are set against a same-run sgemm peak.

All cases of one (size, threads) group are timed in interleaved rounds
(:func:`tools.lib.timing.measure`); ``ms`` is the median over all calls
and ``ms_min``/``ms_max`` the range of the round medians. Ratios are
medians of per-round ratios on both clocks.
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

from rexnet_det.deploy.onnx import OrtRunner, export_onnx, openvino_cpu_config
from rexnet_det.models import ReXNet
from rexnet_det.models.utils import align_channels, fuse_model
from tools.bench.goals import clock
from tools.lib.flops import image_complexity
from tools.lib.onnx_graph import constant_fold, count_ops, fold_pads
from tools.lib.peak import sgemm_peak_gflops
from tools.lib.timing import Case, Timings, measure, paired_ratio

NAME, ORDER = 'backbones', 10

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
        # the fused eager limit: BN folding alone, and folding + alignment
        rows += [Deployed(LABELS['ReXNet'], '', 'eager fused NCHW',
                          macs['ReXNet'], module=fuse_model(
                              copy.deepcopy(rexnet), channels_last=False)),
                 Deployed(LABELS['ReXNet'], '', 'eager aligned + fused',
                          macs['ReXNet'], executed, module=fuse_model(
                              copy.deepcopy(aligned)))]
    return rows


def stats(t: Timings) -> Dict[str, float]:
    """Wall median over all calls, range of round medians, CPU median."""
    medians = [v * 1e3 for v in t.round_medians()]
    return dict(ms=statistics.median([w * 1e3 for r in t.wall for w in r]),
                ms_min=min(medians), ms_max=max(medians),
                cpu_ms=statistics.median([c * 1e3 for r in t.cpu
                                          for c in r]))


def ratio(a: Timings, b: Timings, scale: float = 1.0) -> Dict[str, Dict]:
    """Time of `a` over time of `b` (median of rounds, with min/max), on
    the wall and the CPU clock, times `scale`."""
    out = {}
    for clock in ('wall', 'cpu'):
        r = paired_ratio(a, b, clock)
        out[clock] = {k: r[k] * scale for k in ('median', 'min', 'max')}
    return out


def inverse(r: Dict[str, Dict]) -> Dict[str, Dict]:
    """The reciprocal of a :func:`ratio` (a speed-up from a time ratio)."""
    return {c: dict(median=1 / v['median'], min=1 / v['max'],
                    max=1 / v['min']) for c, v in r.items()}


def time_deployed(models: Sequence[Deployed], size: int, threads: int,
                  rounds: int, calls: int,
                  timings_out: Optional[Dict[tuple, Timings]] = None
                  ) -> List[Dict[str, Any]]:
    """Time `models` interleaved; one row each, with ``per_flop`` (time
    ratio to :data:`PEER` on the same runtime over the MAC ratio),
    ``speedup_vs_eval`` (eager fused forms: eval time over theirs) and
    ``vs_effnet`` (aligned ReXNet on onnxruntime: its time over the
    pads-folded EfficientNet-B0's). `timings_out`, if given, receives the
    :class:`Timings` by ``(label, runtime)`` for further ratios."""
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
    by_key = {(t.case.info['model'], t.case.info['runtime']): t
              for t in timings.values()}
    if timings_out is not None:
        timings_out.update(by_key)
    macs = {(m.label, m.runtime): m.macs for m in models}
    rows = []
    for m, case in zip(models, cases):
        t = timings[case.name]
        row = dict(case.info, **stats(t), load=os.getloadavg()[0])
        # 2 FLOPs per MAC, the network's own MACs (padding is overhead)
        row.update(gflops=2 * m.macs / 1e9 / (row['ms'] / 1e3),
                   peak_gflops=peak)
        row['of_peak'] = row['gflops'] / peak
        peer = (PEER, m.runtime)
        if peer in by_key:
            row['per_flop'] = ratio(t, by_key[peer], macs[peer] / m.macs)
        if m.runtime.startswith('eager '):
            row['speedup_vs_eval'] = inverse(ratio(t, by_key[(m.label,
                                                              'eager')]))
        effnet = ('EfficientNet-B0 pads folded', 'ort')
        if m.runtime == 'ort' and 'aligned' in m.label and \
                m.label.startswith('ReXNet-1.0x') and effnet in by_key:
            row['vs_effnet'] = ratio(t, by_key[effnet])
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
        ``ms`` (median), ``ms_min``/``ms_max`` (round medians), ``cpu_ms``
        (process CPU time), ``load`` (1-minute load average after the
        group), ``gflops`` (achieved, 2 FLOPs per own MAC),
        ``peak_gflops`` (sgemm on the group's threads, same run),
        ``of_peak`` and the ratios of :func:`time_deployed`.
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


def run(opts) -> Dict[str, Any]:
    """The section: :func:`deployed_backbone_rows` on `opts`."""
    rows = deployed_backbone_rows(opts.threads, opts.sizes, opts.rounds,
                                  opts.calls, opts.openvino)
    return dict(rows=rows, peer=PEER, method=(
        'batch 1, random weights, each backbone to its 1280-channel conv, '
        'static-shape ONNX (opset 17); per FLOP = (time / MobileNetV2 time '
        'on the same runtime, per round) / MAC ratio, own MACs; OpenVINO '
        'INFERENCE_PRECISION_HINT=f32'))


def _cell(r: Optional[dict], clock: str) -> str:
    if r is None:
        return '-'
    per_flop = r.get('per_flop', {}).get(clock)
    return f'{r["ms"]:.2f} / ' + (f'{per_flop["median"]:.2f}' if per_flop
                                  else '-')


def tables(result: Dict[str, Any]) -> Dict[str, str]:
    """``backbones``: a line per (model, runtime); per (size, threads)
    group ``ms / per FLOP vs MobileNetV2``; achieved GFLOP/s and its share
    of the sgemm peak in the first group."""
    rows = result['rows']
    groups = sorted({(r['size'], r['threads']) for r in rows})
    seen: Dict[tuple, Dict[tuple, dict]] = {}
    for r in rows:
        seen.setdefault((r['model'], r['runtime']), {})[
            r['size'], r['threads']] = r
    first = groups[0]
    peak = next(r['peak_gflops'] for r in rows
                if (r['size'], r['threads']) == first)
    head = ' | '.join(f'{s} px {t}t' for s, t in groups)
    lines = [f'| model | runtime | GMACs ({first[0]} px) | {head} | '
             f'GFLOP/s ({first[0]} px {first[1]}t; sgemm peak {peak:.0f}) '
             '|', '|---' * (4 + len(groups)) + '|']
    for (model, runtime), by_group in seen.items():
        r0 = by_group.get(first) or next(iter(by_group.values()))
        cells = [_cell(by_group.get(g), clock(g[1])) for g in groups]
        lines.append(f'| {model} | {runtime} | {r0["gmacs"]:.3f} | '
                     + ' | '.join(cells) + f' | {r0["gflops"]:.1f} '
                     f'({r0["of_peak"]:.0%}) |')
    forms = ['| form | size | ms [min-max] | CPU ms | speed-up vs eval, '
             'CPU clock [min-max] |', '|---|---|---|---|---|']
    for r in rows:
        if r['model'] != LABELS['ReXNet'] or r['threads'] != 1 or \
                not r['runtime'].startswith('eager'):
            continue
        s = r.get('speedup_vs_eval', {}).get('cpu', dict(median=1.0, min=1.0,
                                                         max=1.0))
        forms.append(f'| {r["runtime"]} | {r["size"]} | {r["ms"]:.2f} '
                     f'[{r["ms_min"]:.2f}-{r["ms_max"]:.2f}] | '
                     f'{r["cpu_ms"]:.2f} | {s["median"]:.2f} '
                     f'[{s["min"]:.2f}-{s["max"]:.2f}] |')
    return dict(backbones='\n'.join(lines), eager_forms='\n'.join(forms))
