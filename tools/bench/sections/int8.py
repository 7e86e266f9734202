"""INT8 against FP32 on onnxruntime and OpenVINO, peers in the same run
(issue #21).

* Detectors: SSDLite-ReXNet-1.0x channel-aligned (what
  ``tools/deploy/export.py`` writes) and mmdet's SSDLite-MobileNetV2 at
  ``opts.detector_size``, end to end from a decoded 640x480 image to boxes
  in its pixels (:func:`.detectors.prepare_model`, busy random weights, so
  NMS is fully loaded);
* Backbones: ReXNet-1.0x aligned, EfficientNet-B0 pads folded and
  MobileNetV2 to their 1280-channel conv at the first of ``opts.sizes``
  (the exports of :func:`.backbones.export_deployed`).

Each model runs as its FP32 file and its INT8 file
(:func:`rexnet_det.deploy.quantize.quantize_onnx` with the default
options, calibrated on random inputs prepared as the file expects: speed
does not depend on the values). All rows of one thread count are timed
interleaved; ratios are medians of per-round ratios on both clocks. The
INT8 gain depends on the CPU's integer instruction sets, recorded here
(``isa``, ``vnni``) as well as in the run's ``meta``.
"""
import copy
import dataclasses
import os.path as osp
import tempfile
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from rexnet_det.deploy.detector import DeployedDetector
from rexnet_det.deploy.quantize import quantize_onnx
from tools.bench.goals import clock
from tools.bench.machine import cpu_info
from tools.bench.sections.backbones import (Deployed, export_deployed,
                                            inverse, ratio, stats,
                                            time_deployed)
from tools.bench.sections.detectors import (DEFAULT_MODELS, RUNTIME_NAMES,
                                            PreparedModel, latency_cases,
                                            prepare_model)
from tools.lib.timing import measure

NAME, ORDER = 'int8', 45
#: The detector rows: what export.py writes for ReXNet, and the peer.
DETECTORS = ('SSDLite-ReXNet-1.0x aligned', 'SSDLite-MobileNetV2')
#: The backbone rows of :func:`.backbones.export_deployed`.
BACKBONES = ('ReXNet-1.0x aligned x4', 'EfficientNet-B0 pads folded',
             'MobileNetV2')
#: Flags with integer dot-product instructions (what INT8 speed needs).
INT8_ISA = ('avx512_vnni', 'avx_vnni', 'amx_int8')


def int8_path(path: str) -> str:
    """Where the INT8 file of the FP32 file `path` goes."""
    return osp.splitext(path)[0] + '.int8.onnx'


def _detector_calibration(path: str, count: int) -> List[np.ndarray]:
    """Random images prepared as the detector file expects."""
    detector = DeployedDetector(path)
    gen = np.random.RandomState(0)
    return [detector.prepare(gen.randint(0, 256, (480, 640, 3), np.uint8))
            .input[None] for _ in range(count)]


def detector_rows(size: int, threads: Sequence[int],
                  runtimes: Sequence[str], rounds: int, calls: int,
                  out_dir: str, num_images: int) -> List[Dict[str, Any]]:
    """FP32 and INT8 SSDLites end to end; rows of
    :func:`.backbones.stats` with ``precision``, ``int8_speedup`` (INT8
    rows: the FP32 file's time over theirs) and ``vs_fp32_peer`` (INT8
    ReXNet rows: their time over the FP32 SSDLite-MobileNetV2's)."""
    models: List[PreparedModel] = []
    for spec in (m for m in DEFAULT_MODELS if m.label in DETECTORS):
        fp32 = prepare_model(spec, size, out_dir)
        out = int8_path(fp32.onnx_path)
        quantize_onnx(fp32.onnx_path, out,
                      _detector_calibration(fp32.onnx_path, num_images))
        models += [fp32, dataclasses.replace(
            fp32, onnx_path=out,
            spec=dataclasses.replace(spec, label=f'{spec.label} INT8'))]
    image = np.random.RandomState(0).randint(0, 256, (480, 640, 3),
                                             dtype=np.uint8)
    rows = []
    for count in threads:
        timings = measure(latency_cases(models, runtimes, count, image),
                          rounds, calls, warmup=2)
        by_key = {(t.case.info['model'], t.case.info['runtime']): t
                  for t in timings.values()}
        rows += _int8_rows(by_key, f'{DETECTORS[0]} INT8', DETECTORS[1],
                           dict(size=size))
    return rows


def backbone_rows(size: int, threads: Sequence[int],
                  runtimes: Sequence[str], rounds: int, calls: int,
                  out_dir: str, num_images: int) -> List[Dict[str, Any]]:
    """FP32 and INT8 backbones; rows of :func:`.backbones.time_deployed`
    with ``precision``, ``int8_speedup`` and ``vs_peer`` (INT8
    ReXNet rows: their time over INT8 EfficientNet-B0's)."""
    fp32 = [d for d in export_deployed(size, out_dir, 'openvino' in runtimes,
                                       eager=False)
            if d.label in BACKBONES and d.runtime in runtimes]
    gen = np.random.RandomState(0)
    inputs = [gen.standard_normal((1, 3, size, size)).astype(np.float32)
              for _ in range(num_images)]
    done: Dict[str, str] = {}
    models: List[Deployed] = []
    for d in fp32:
        if d.path not in done:  # one INT8 file for both runtimes
            done[d.path] = quantize_onnx(d.path, int8_path(d.path),
                                         inputs).path
        models += [d, Deployed(f'{d.label} INT8', done[d.path], d.runtime,
                               d.macs, copy.deepcopy(d.info))]
    rows = []
    for count in threads:
        by_key: Dict[tuple, Any] = {}
        timed = time_deployed(models, size, count, rounds, calls, by_key)
        extra = {(r['model'], r['runtime']): r for r in _int8_rows(
            by_key, f'{BACKBONES[0]} INT8', f'{BACKBONES[1]} INT8', {})}
        rows += [dict(r, **extra[r['model'], r['runtime']]) for r in timed]
    return rows


def _int8_rows(by_key: Dict[tuple, Any], ours: str, peer: str,
               info: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Rows of one interleaved group with the INT8 ratios: every INT8 row's
    ``int8_speedup`` over its FP32 file, and `ours`' time over `peer`'s on
    the same runtime (``vs_peer``)."""
    rows = []
    for (model, runtime), t in by_key.items():
        int8 = model.endswith(' INT8')
        row = dict(t.case.info, **info, **stats(t),
                   precision='INT8' if int8 else 'FP32')
        if int8:
            row['int8_speedup'] = inverse(ratio(
                t, by_key[model[:-len(' INT8')], runtime]))
        if model == ours and (peer, runtime) in by_key:
            row['vs_peer'] = dict(ratio(t, by_key[peer, runtime]), peer=peer)
        rows.append(row)
    return rows


def run(opts) -> Dict[str, Any]:
    cpu = cpu_info()
    runtimes = ('ort', ) + (('openvino', ) if opts.openvino else ())
    # quick: 2 calibration images (a smoke test of the path)
    num_images = 2 if opts.quick else 8
    with tempfile.TemporaryDirectory() as tmp:
        detectors = detector_rows(opts.detector_size, opts.threads, runtimes,
                                  opts.rounds, max(1, opts.calls // 2), tmp,
                                  num_images)
        size = opts.sizes[0]
        backbones = backbone_rows(size, opts.threads, runtimes, opts.rounds,
                                  opts.calls, tmp, num_images)
    return dict(isa=cpu['isa'], vnni=any(f in cpu['isa'] for f in INT8_ISA),
                detector_size=opts.detector_size, backbone_size=size,
                detectors=detectors, backbones=backbones,
                torch_threads=torch.get_num_threads(), method=(
                    'INT8: onnxruntime static QDQ (rexnet_det.deploy.'
                    'quantize defaults), calibrated on random inputs; '
                    'detectors end to end from a decoded 640x480 image, '
                    'busy random weights; backbones batch 1 to the '
                    '1280-channel conv'))


def _table(rows: List[Dict[str, Any]], peer_label: str) -> str:
    lines = ['| model | runtime | threads | ms [min-max] | CPU ms | INT8 '
             f'speed-up | vs {peer_label} |', '|---|---|---|---|---|---|---|']
    for r in sorted(rows, key=lambda r: (r['threads'], r['runtime'])):
        c = clock(r['threads'])
        speed = (f'{r["int8_speedup"][c]["median"]:.2f}x'
                 if 'int8_speedup' in r else '-')
        peer = (f'{r["vs_peer"][c]["median"]:.2f}' if 'vs_peer' in r
                else '-')
        lines.append(f'| {r["model"]} | {RUNTIME_NAMES[r["runtime"]]} | '
                     f'{r["threads"]} | {r["ms"]:.2f} [{r["ms_min"]:.2f}-'
                     f'{r["ms_max"]:.2f}] | {r["cpu_ms"]:.2f} | {speed} | '
                     f'{peer} |')
    return '\n'.join(lines)


def tables(result: Dict[str, Any]) -> Dict[str, str]:
    """``int8_detectors`` (vs FP32 SSDLite-MobileNetV2) and
    ``int8_backbones`` (vs INT8 EfficientNet-B0)."""
    return dict(int8_detectors=_table(result['detectors'],
                                      f'FP32 {DETECTORS[1]}'),
                int8_backbones=_table(result['backbones'],
                                      f'INT8 {BACKBONES[1]}'))
