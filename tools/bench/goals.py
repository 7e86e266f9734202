"""Every speed and memory goal of the project, in one table, and the code
that judges them on a results file.

A goal is met or missed in a benchmark run (peers measured in the same
run), never in a timed test. Ratios are medians of per-round ratios
(:mod:`tools.lib.timing`), so a slow phase of a shared machine moves both
sides alike. On one thread the process CPU time is judged (it leaves out
the waits for a CPU that other jobs cause); on more threads, where idle
worker threads wait, the wall clock.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Tuple

#: Published ImageNet classifier FLOPs at 224 (G multiply-adds): ReXNet-1.0x
#: (the ReXNet paper) and MobileNetV2-1.0 (the MobileNetV2 paper).
PAPER_FLOPS = {'rexnet': 0.40, 'mobilenetv2': 0.30}


@dataclass(frozen=True)
class Goal:
    """One goal: `section`'s figure compared with `limit`."""
    section: str
    limit: float
    better: str  # 'higher' or 'lower'
    what: str
    origin: str


GOALS: Dict[str, Goal] = {
    'fused_speedup': Goal(
        'backbones', 1.3, 'higher', 'eager fused (BN folded, channels_last) '
        'ReXNet-1.0x images/s over eager eval, 224 px', 'issue #5'),
    'per_flop_eager': Goal(
        'backbones', 1.1, 'lower', 'eager eval ReXNet-1.0x time / '
        'MobileNetV2 time / MAC ratio, 224 px, 1 thread', 'issue #5'),
    'per_flop_deployed': Goal(
        'backbones', 1.15, 'lower', 'channel-aligned ReXNet-1.0x time / '
        'MobileNetV2 time / MAC ratio on the better of onnxruntime and '
        'OpenVINO, 224 px, 1 thread', 'issue #12'),
    'latency_vs_effnet': Goal(
        'backbones', 1.0, 'lower', 'channel-aligned ReXNet-1.0x onnxruntime '
        'latency / pads-folded EfficientNet-B0 latency, 224 px',
        'issue #12 (the paper\'s latency claim, deployed)'),
    'deploy_speedup': Goal(
        'detectors', 2.0, 'higher', 'deployed SSDLite-ReXNet-1.0x (aligned, '
        'the default export) vs its own PyTorch predict, image to boxes',
        'issue #11'),
    'deploy_per_flop': Goal(
        'detectors', 1.1, 'lower', 'deployed SSDLite-ReXNet-1.0x latency / '
        '(MAC ratio x deployed SSDLite-MobileNetV2 latency)', 'issue #11'),
    'dynamic_slowdown': Goal(
        'detectors', 1.10, 'lower', 'Mask R-CNN-ReXNet-1.0x exported with '
        'a dynamic input size: onnxruntime latency / the fixed-size '
        'export\'s, same padded image', 'issue #23'),
    'int8_speedup': Goal(
        'int8', 1.6, 'higher', 'INT8 SSDLite-ReXNet-1.0x aligned over its '
        'FP32 file on the same runtime, end to end, 1 thread (judged on a '
        'CPU with VNNI or AMX)', 'issue #21'),
    'int8_vs_fp32_mbv2': Goal(
        'int8', 1.0, 'lower', 'INT8 SSDLite-ReXNet-1.0x aligned latency / '
        'FP32 SSDLite-MobileNetV2 latency, same runtime, end to end (judged '
        'on a CPU with VNNI or AMX)', 'issue #21'),
    'int8_backbone_vs_effnet': Goal(
        'int8', 1.0, 'lower', 'INT8 ReXNet-1.0x aligned backbone latency / '
        'INT8 EfficientNet-B0 (pads folded), same runtime', 'issue #21'),
    'compiled_vs_ort': Goal(
        'compiled', 1.25, 'lower', 'best compiled form of ReXNet-1.0x '
        '(torch.compile, with or without freezing) latency / aligned '
        'onnxruntime latency, same run', 'issue #22'),
    'compiled_speedup': Goal(
        'compiled', 1.3, 'higher', 'best compiled ReXNet-1.0x over eager '
        'eval', 'issue #22'),
    'compiled_per_flop': Goal(
        'compiled', 1.0, 'lower', '(compiled ReXNet-1.0x / compiled '
        'MobileNetV2) over (onnxruntime ReXNet-1.0x aligned / onnxruntime '
        'MobileNetV2): per FLOP no worse than deployed', 'issue #22'),
    'train_ratio': Goal(
        'training', 4 / 3, 'lower', 'SSDLite-ReXNet-1.0x s/iter / '
        'SSDLite-MobileNetV2 s/iter (the paper\'s FLOP ratio 0.40 / 0.30)',
        'issue #5'),
    'cp_memory_saving': Goal(
        'memory', 0.25, 'higher', 'share of Mask R-CNN-ReXNet-1.0x peak '
        'training memory that with_cp=True saves', 'issue #5'),
}


def clock(threads: int) -> str:
    """The judged clock of a group run on `threads`."""
    return 'cpu' if threads == 1 else 'wall'


def _backbone_figures(result: dict) -> Iterator[Tuple[str, str, Dict]]:
    rows = [r for r in result.get('rows', []) if r['size'] == 224]

    def find(model: str, runtime: str, threads: int):
        return next((r for r in rows if r['model'] == model and
                     r['runtime'] == runtime and r['threads'] == threads),
                    None)
    aligned = next((r['model'] for r in rows
                    if r['model'].startswith('ReXNet-1.0x aligned')), None)
    for threads in sorted({r['threads'] for r in rows}):
        c = clock(threads)
        fused = find('ReXNet-1.0x', 'eager fused', threads)
        if fused and 'speedup_vs_eval' in fused:
            yield 'fused_speedup', f'{threads} thread(s)', \
                fused['speedup_vs_eval'][c]
        ours = find(aligned, 'ort', threads)
        if ours and 'vs_effnet' in ours:
            yield 'latency_vs_effnet', f'{threads} thread(s)', \
                ours['vs_effnet'][c]
        if threads != 1:
            continue
        eager = find('ReXNet-1.0x', 'eager', 1)
        if eager and 'per_flop' in eager:
            yield 'per_flop_eager', '1 thread', eager['per_flop'][c]
        deployed = [(r['per_flop'][c], r['runtime'])
                    for rt in ('ort', 'openvino')
                    if (r := find(aligned, rt, 1)) and 'per_flop' in r]
        if deployed:
            best, runtime = min(deployed, key=lambda v: v[0]['median'])
            yield 'per_flop_deployed', f'1 thread, {runtime}', best


def _detector_figures(result: dict) -> Iterator[Tuple[str, str, Dict]]:
    for r in result.get('ssdlite', {}).get('rows', []):
        if r['model'] != 'SSDLite-ReXNet-1.0x aligned' or \
                r['runtime'] == 'pytorch':
            continue
        c = clock(r['threads'])
        where = f'{r["runtime"]}, {r["threads"]} thread(s)'
        if 'vs_pytorch' in r:
            yield 'deploy_speedup', where, r['vs_pytorch'][c]
        if 'per_flop' in r:
            yield 'deploy_per_flop', where, r['per_flop'][c]
    for part in result.get('dynamic', []):
        # same MACs, so the 'per_flop' ratio to the fixed export is the
        # plain latency ratio
        dynamic = part['rows'][0]
        yield 'dynamic_slowdown', (f'{part["image"][0]}x{part["image"][1]}, '
                                   f'{dynamic["threads"]} thread(s)'), \
            dynamic['per_flop'][clock(dynamic['threads'])]


def _int8_figures(result: dict) -> Iterator[Tuple[str, str, Dict]]:
    vnni = result.get('vnni', False)  # INT8 speed goals need VNNI or AMX
    for r in result.get('detectors', []):
        if not vnni or r['model'] != 'SSDLite-ReXNet-1.0x aligned INT8':
            continue
        c, where = clock(r['threads']), f'{r["runtime"]}, {r["threads"]} ' \
            'thread(s)'
        if r['threads'] == 1:
            yield 'int8_speedup', where, r['int8_speedup'][c]
        yield 'int8_vs_fp32_mbv2', where, r['vs_peer'][c]
    for r in result.get('backbones', []):
        if 'vs_peer' in r:
            yield 'int8_backbone_vs_effnet', (
                f'{r["size"]} px, {r["runtime"]}, {r["threads"]} thread(s)'
            ), r['vs_peer'][clock(r['threads'])]


def _compiled_figures(result: dict) -> Iterator[Tuple[str, str, Dict]]:
    for g in result.get('groups', []):
        where = f'{g["size"]} px, {g["threads"]} thread(s), {g["best_form"]}'
        c = clock(g['threads'])
        yield 'compiled_vs_ort', where, g['vs_ort'][c]
        yield 'compiled_speedup', where, g['speedup'][c]
        yield 'compiled_per_flop', where, g['per_flop_vs_ort'][c]


def _training_figures(result: dict) -> Iterator[Tuple[str, str, Dict]]:
    ratio = result.get('ssdlite_ratio')
    if ratio:
        yield 'train_ratio', (f'batch {result["ssdlite_batch"]}, '
                              f'{result["ssdlite_size"]} px, 1 thread'), \
            ratio['cpu']


def _memory_figures(result: dict) -> Iterator[Tuple[str, str, Dict]]:
    if 'peak_saving' in result:
        value = result['peak_saving']
        yield 'cp_memory_saving', (f'batch {result["batch"]}, '
                                   f'{result["size"]} px'), \
            dict(median=value, min=value, max=value)


FIGURES: Dict[str, Callable[[dict], Iterator[Tuple[str, str, Dict]]]] = {
    'backbones': _backbone_figures, 'detectors': _detector_figures,
    'training': _training_figures, 'memory': _memory_figures,
    'int8': _int8_figures, 'compiled': _compiled_figures}


def judge(sections: Dict[str, dict]) -> List[Dict[str, Any]]:
    """Every goal whose section ran, judged on its median.

    Args:
        sections (dict): Section name -> its result (a results file's
            ``sections``).

    Returns:
        list[dict]: ``name``, ``where``, ``value`` (median), ``min``/``max``
        (over rounds), ``limit``, ``better``, ``met``, ``what``.
    """
    judged = []
    for section, result in sections.items():
        figures = FIGURES.get(section)
        for name, where, ratio in figures(result) if figures else ():
            goal = GOALS[name]
            value = ratio['median']
            met = value >= goal.limit if goal.better == 'higher' \
                else value <= goal.limit
            judged.append(dict(name=name, where=where, value=value,
                               min=ratio['min'], max=ratio['max'],
                               limit=goal.limit, better=goal.better,
                               met=bool(met), what=goal.what,
                               origin=goal.origin))
    return judged
