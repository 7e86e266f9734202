"""INT8 against FP32 speed of deployed detectors and backbones, with peers
measured in the same run (issue #21; ``tools/deploy/int8_speed.py``).

* Detectors (:func:`detector_rows`): SSDLite-ReXNet-1.0x (channel-aligned,
  as ``tools/deploy/export.py`` writes it) and mmdet's SSDLite-MobileNetV2
  at ``size`` px, FP32 and INT8 files, end to end from a decoded image to
  boxes in its pixels, timed interleaved (:mod:`.timing`);
* Backbones (:func:`backbone_rows`): ReXNet-1.0x (aligned),
  EfficientNet-B0 (pads folded) and MobileNetV2, to their 1280-channel
  conv, FP32 and INT8 (:func:`~.backbone_speed.time_deployed`).

Every model has random weights (made busy for detectors, so NMS is fully
loaded); INT8 files come from :func:`~rexnet_det.deploy.quantize.
quantize_onnx` with the default options, calibrated on random images
prepared as the file expects (speed does not depend on the values). The
goals (:data:`~.goals.INT8_GOALS`) are judged on ratios of medians of the
same run (process CPU time on 1 thread, wall time on 2: :func:`_ms`); the
CPU's integer instruction sets come with them
(:func:`cpu_info`), because the INT8 gain depends on them.
"""
import copy
import dataclasses
import os
import os.path as osp
import platform
from typing import Any, Dict, List, Sequence

import numpy as np

from ..deploy.detector import DeployedDetector
from ..deploy.quantize import quantize_onnx
from .backbone_speed import Deployed, _stats, export_deployed, time_deployed
from .detector_latency import DEFAULT_MODELS, PreparedModel, prepare_model
from .goals import INT8_GOALS
from .timing import Case, measure

#: /proc/cpuinfo flags that decide INT8 speed on x86.
INT_FLAGS = ('avx2', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx_vnni',
             'avx512_bf16', 'amx_int8', 'amx_bf16', 'amx_tile')
#: The detector rows: what export.py writes for ReXNet, and the peer.
DETECTORS = ('SSDLite-ReXNet-1.0x aligned', 'SSDLite-MobileNetV2')
#: The backbone rows of :func:`~.backbone_speed.export_deployed`.
BACKBONES = ('ReXNet-1.0x aligned x4', 'EfficientNet-B0 pads folded',
             'MobileNetV2')


def cpu_info() -> Dict[str, Any]:
    """CPU model, logical CPUs and the integer-relevant flags present."""
    model, flags = platform.processor(), set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name':
                    model = value.strip()
                elif key.strip() == 'flags':
                    flags = set(value.split())
    except OSError:  # not Linux: the model name only
        pass
    present = [f for f in INT_FLAGS if f in flags]
    return dict(model=model, cpus=os.cpu_count(), flags=present,
                vnni=any('vnni' in f or f == 'amx_int8' for f in present))


def _calibration(path: str, count: int, seed: int = 0
                 ) -> List[np.ndarray]:
    """Random images prepared as the detector file expects."""
    detector = DeployedDetector(path)
    gen = np.random.RandomState(seed)
    return [detector.prepare(gen.randint(0, 256, (480, 640, 3), np.uint8))
            .input[None] for _ in range(count)]


def int8_path(path: str) -> str:
    return osp.splitext(path)[0] + '.int8.onnx'


def detector_rows(size: int, threads: Sequence[int], runtimes: Sequence[str],
                  rounds: int, calls: int, out_dir: str,
                  num_images: int = 8) -> List[Dict[str, Any]]:
    """FP32 and INT8 SSDLites, end to end
    (:class:`~rexnet_det.deploy.detector.DeployedDetector` ``.predict`` on a
    decoded 640x480 image), all of one thread count timed interleaved;
    rows with wall ``ms`` (median, ``ms_min``/``ms_max`` of the round
    medians), ``cpu_ms`` and ``precision``."""
    specs = [m for m in DEFAULT_MODELS if m.label in DETECTORS]
    models: List[PreparedModel] = []
    for spec in specs:
        fp32 = prepare_model(spec, size, out_dir)
        out = int8_path(fp32.onnx_path)
        quantize_onnx(fp32.onnx_path, out, _calibration(fp32.onnx_path,
                                                        num_images))
        int8 = dataclasses.replace(fp32, onnx_path=out, spec=dataclasses.
                                   replace(spec, label=f'{spec.label} INT8'))
        models += [fp32, int8]
    image = np.random.RandomState(0).randint(0, 256, (480, 640, 3),
                                             dtype=np.uint8)
    rows = []
    for count in threads:  # one interleaved group per thread count
        cases = [Case(f'{m.spec.label} | {rt}', (
            lambda d=DeployedDetector(m.onnx_path, rt, count): d.predict(
                image)), 1, dict(model=m.spec.label, runtime=rt,
                                 threads=count, size=size, macs=m.macs))
            for m in models for rt in runtimes]
        timings = measure(cases, rounds, calls, warmup=2)
        rows += [dict(t.case.info, **_stats(t), load=os.getloadavg()[0])
                 for t in timings.values()]
    for row in rows:
        row['precision'] = 'INT8' if row['model'].endswith('INT8') else 'FP32'
    return rows


def backbone_rows(size: int, threads: Sequence[int], runtimes: Sequence[str],
                  rounds: int, calls: int, out_dir: str,
                  num_images: int = 8) -> List[Dict[str, Any]]:
    """FP32 and INT8 backbones; rows of
    :func:`~.backbone_speed.time_deployed` with ``precision``."""
    rows = [d for d in export_deployed(size, out_dir, 'openvino' in runtimes,
                                       eager=False)
            if d.label in BACKBONES and d.runtime in runtimes]
    gen = np.random.RandomState(0)
    inputs = [gen.standard_normal((1, 3, size, size)).astype(np.float32)
              for _ in range(num_images)]
    done: Dict[str, str] = {}
    models: List[Deployed] = []
    for d in rows:
        if d.path not in done:
            done[d.path] = quantize_onnx(d.path, int8_path(d.path),
                                         inputs).path
        models += [d, Deployed(f'{d.label} INT8', done[d.path], d.runtime,
                               d.macs, copy.deepcopy(d.info))]
    out = []
    for count in threads:
        out += time_deployed(models, size, count, rounds, calls)
    for row in out:
        row['precision'] = 'INT8' if row['model'].endswith('INT8') else 'FP32'
    return out


def _ms(rows, model: str, runtime: str, threads: int):
    """Median ms of a row: process CPU time on 1 thread (what the work
    took, without waiting for a CPU on a shared machine), wall time on
    more threads (where waiting threads count)."""
    row = next((r for r in rows if r['model'] == model and
                r['runtime'] == runtime and r['threads'] == threads), None)
    return None if row is None else row['cpu_ms' if threads == 1 else 'ms']


def int8_goals(detectors: List[Dict[str, Any]],
               backbones: List[Dict[str, Any]], vnni: bool
               ) -> List[Dict[str, Any]]:
    """:data:`~.goals.INT8_GOALS` judged on the rows (ratios of medians,
    :func:`_ms`'s clock; the VNNI goals only count as goals on a CPU with
    VNNI or AMX)."""
    ours, peer = DETECTORS
    goals = []

    def add(name, value, limit, higher, applies=True):
        if value is not None:
            goals.append(dict(name=name, value=value, limit=limit,
                              met=value >= limit if higher else
                              value <= limit, applies=applies))

    runtimes = sorted({r['runtime'] for r in detectors + backbones})
    threads = sorted({r['threads'] for r in detectors + backbones})
    for rt in runtimes:
        fp32, int8 = (_ms(detectors, m, rt, 1)
                      for m in (ours, f'{ours} INT8'))
        if fp32 and int8:
            add(f'INT8 vs FP32 SSDLite-ReXNet speed-up, {rt}, 1t',
                fp32 / int8, INT8_GOALS['speedup_vnni'], True, vnni)
        for t in threads:
            int8, mbv2 = _ms(detectors, f'{ours} INT8', rt, t), _ms(
                detectors, peer, rt, t)
            if int8 and mbv2:
                add(f'INT8 SSDLite-ReXNet / FP32 SSDLite-MobileNetV2, {rt},'
                    f' {t}t', int8 / mbv2, INT8_GOALS['vs_fp32_mbv2'],
                    False, vnni)
            rex, eff = (_ms(backbones, f'{m} INT8', rt, t)
                        for m in BACKBONES[:2])
            if rex and eff:
                add(f'INT8 ReXNet-1.0x / INT8 EfficientNet-B0 backbone, '
                    f'{rt}, {t}t', rex / eff,
                    INT8_GOALS['backbone_vs_effnet'], False)
    return goals


def format_rows(rows: List[Dict[str, Any]]) -> str:
    """One markdown table: a line per model and runtime, wall and CPU ms
    per thread count, and the INT8 speed-up over the same model's FP32
    (:func:`_ms`'s clock)."""
    threads = sorted({r['threads'] for r in rows})
    lines = ['| model | runtime | ' + ' | '.join(
        f'{t}t wall ms [min-max] | {t}t CPU ms | {t}t FP32/INT8'
        for t in threads) + ' |', '|---|---|' + '---|---|---|' * len(threads)]
    keys = dict.fromkeys((r['model'], r['runtime']) for r in rows)
    for model, runtime in keys:
        cells = []
        for t in threads:
            r = next((r for r in rows if r['model'] == model and
                      r['runtime'] == runtime and r['threads'] == t), None)
            base = _ms(rows, model[:-len(' INT8')], runtime, t) \
                if model.endswith(' INT8') else None
            mine = _ms(rows, model, runtime, t)
            cells += ['-', '-', '-'] if r is None else [
                f'{r["ms"]:.2f} [{r["ms_min"]:.2f}-{r["ms_max"]:.2f}]',
                f'{r["cpu_ms"]:.2f}', f'{base / mine:.2f}x' if base else '']
        lines.append(f'| {model} | {runtime} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
