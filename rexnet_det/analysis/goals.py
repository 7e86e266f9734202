"""Every goal the project measures itself against, in one place.

Benchmarks and the demo import their thresholds from here, so a goal is
written once, next to where it came from. A goal is met or missed in a
benchmark run (a script that prints figures, peers measured in the same
run), never in a timed test.

Speed goals are ratios of times measured in the same process, round by
round (:mod:`rexnet_det.analysis.timing`), so a slow machine moves both
sides alike.
"""
from typing import Dict, List

#: Published ImageNet classifier FLOPs at 224 (G multiply-adds): ReXNet-1.0x
#: (the ReXNet paper) and MobileNetV2-1.0 (the MobileNetV2 paper).
PAPER_FLOPS = {'rexnet': 0.40, 'mobilenetv2': 0.30}

#: ``tools/analysis/benchmark.py`` (eager PyTorch, ReXNet-1.0x vs mmdet's
#: MobileNetV2):
#:
#: * ``fused_speedup``: BN-folded channels_last ReXNet at least this many
#:   times the images/s of the eval model;
#: * ``per_flop``: (ReXNet time / MobileNetV2 time) / MAC ratio at most this;
#: * ``train_ratio``: SSDLite-ReXNet s/iter at most this times
#:   SSDLite-MobileNetV2's (the paper's FLOP ratio 0.40 / 0.30);
#: * ``cp_memory_saving``: ``with_cp=True`` saves at least this fraction of
#:   Mask R-CNN-ReXNet's peak training memory.
GOALS = dict(fused_speedup=1.3, per_flop=1.1, train_ratio=4 / 3,
             cp_memory_saving=0.25)

#: ``tools/deploy/benchmark.py`` (SSDLite at 320, batch 1, preprocessing
#: included): the deployed SSDLite-ReXNet at least this many times faster
#: than its own PyTorch predict ...
DEPLOY_SPEEDUP = 2.0
#: ... and its latency at most this times (FLOP ratio x the deployed
#: SSDLite-MobileNetV2's).
DEPLOY_PER_FLOP = 1.1

#: ``tools/analysis/backbone_speed.py`` (issue #12; backbones to the
#: 1280-channel conv, batch 1, the table's own rows):
#:
#: * ``latency_vs_effnet``: aligned ReXNet-1.0x onnxruntime latency at most
#:   this times the pads-folded EfficientNet-B0's (224 px, each thread
#:   count): the paper's latency claim in a deployed runtime;
#: * ``per_flop``: aligned ReXNet-1.0x time per FLOP at most this times
#:   MobileNetV2's (224 px, 1 thread, onnxruntime or OpenVINO);
#: * ``fused_speedup``: eager fused ReXNet-1.0x at least this many times
#:   faster than eager eval (224 px, 1 thread).
BACKBONE_GOALS = dict(latency_vs_effnet=1.0, per_flop=1.15,
                      fused_speedup=1.3)

#: ``make demo``: bbox mAP the briefly trained demo Mask R-CNN must reach
#: on its own synthetic val split.
DEMO_BBOX_MAP = 0.30
#: ``make demo`` and ``tools/deploy/verify.py``: largest allowed difference
#: between the deployed (ONNX) and the PyTorch mAP.
DEPLOY_MAP_TOLERANCE = 0.002
#: INT8 (issue #21): ``make demo`` and ``tools/deploy/int8_speed.py``.
#:
#: * ``map_drop``: INT8 bbox (and segm) mAP at most this far below PyTorch's
#:   (absolute) on the trained demo Mask R-CNN and SSDLite-ReXNet;
#: * ``speedup_vnni``: on a CPU with VNNI or AMX, INT8 SSDLite-ReXNet-1.0x at
#:   least this many times faster than its own FP32 file, same runtime,
#:   1 thread;
#: * ``backbone_vs_effnet``: INT8 ReXNet-1.0x backbone latency at most this
#:   times INT8 EfficientNet-B0's (pads folded);
#: * ``vs_fp32_mbv2``: on VNNI/AMX, INT8 SSDLite-ReXNet latency at most this
#:   times FP32 SSDLite-MobileNetV2's.
INT8_GOALS = dict(map_drop=0.01, speedup_vnni=1.6, backbone_vs_effnet=1.0,
                  vs_fp32_mbv2=1.0)


def _goal(name: str, ratio: dict, limit: float, better: str, where: str,
          clock: str) -> dict:
    """A goal judged on `clock`'s median; the other clock is kept too."""
    value = ratio[clock]['median']
    met = value >= limit if better == 'higher' else value <= limit
    return dict(name=name, value=value, clock=clock, limit=limit,
                better=better, met=bool(met), where=where,
                noise=[ratio[clock]['min'], ratio[clock]['max']],
                wall=ratio['wall']['median'], cpu=ratio['cpu']['median'])


def evaluate_goals(report: Dict) -> List[dict]:
    """The :data:`GOALS` judged on a benchmark report.

    With one thread the process CPU time is the time the computation took
    without the waits for a CPU that other jobs on a shared machine cause,
    so it is the judged clock; with more threads (where idle worker threads
    spin) wall time is.
    """
    clock = 'cpu' if report['meta']['threads'] == 1 else 'wall'
    goals = []
    for r in report.get('backbone', {}).get('ratios', []):
        where = f'{r["device"]} {r["size"]}px batch {r["batch"]}'
        if r['name'] == 'fused_speedup':
            goals.append(_goal('fused_speedup', r, GOALS['fused_speedup'],
                               'higher', where, clock))
        elif r['name'] == 'per_flop_eval':
            goals.append(_goal('per_flop_eval', r, GOALS['per_flop'],
                               'lower', where, clock))
    for r in report.get('train', {}).get('ratios', []):
        if r['name'] == 'ssdlite_train_ratio':
            goals.append(_goal('ssdlite_train_ratio', r,
                               GOALS['train_ratio'], 'lower',
                               f'cpu {r["size"]}px batch {r["batch"]}',
                               clock))
    if 'memory' in report:
        saving = report['memory']['peak_saving']
        goals.append(dict(name='cp_memory_saving', value=saving,
                          clock='memory', limit=GOALS['cp_memory_saving'],
                          better='higher',
                          met=bool(saving >= GOALS['cp_memory_saving']),
                          where='Mask R-CNN training iteration', noise=None))
    return goals
