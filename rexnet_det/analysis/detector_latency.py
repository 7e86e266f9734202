"""End-to-end latency of a detector: PyTorch predict vs its ONNX export on
onnxruntime and OpenVINO, image in, boxes in image pixels out.

Every row starts from the same decoded BGR image and includes the same
work: resize and normalisation, the network, decoding, NMS and rescaling
to the image. PyTorch runs mmdet's ``inference_detector`` with the
config's test pipeline (built once); the exported rows run
:class:`~rexnet_det.deploy.detector.DeployedDetector`. Models have random
weights made busy (:func:`busy_weights`): every level fills ``nms_pre`` and
every image ``max_per_img``, so post-processing is at its full load.

All rows of one thread count are timed round by round in rotating order
(:func:`~rexnet_det.analysis.timing.measure`); ratios are medians of
per-round ratios. A model is one line of :data:`DEFAULT_MODELS`; a
transformed variant (e.g. channel-aligned) is one more line with its
``transforms``.

:data:`MASK_RCNN_MODELS` is the two-stage suite (Mask R-CNN-ReXNet-1.0x vs
Mask R-CNN-R50, masks pasted in the graph), timed on an image the size of
the test resize (:func:`prepare_two_stage`), so mmdet and the exported
graph see the same pixels; its MACs come from
:func:`~rexnet_det.analysis.complexity.detector_complexity`.
"""
import os
import os.path as osp
import platform
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..deploy.detector import DeployedDetector
from ..deploy.detector.export import export_wrapper, make_meta
from ..deploy.detector.single_stage import SingleStageExport
from ..deploy.detector.two_stage import TwoStageExport
from ..deploy.detector.verify import ready_for_inference, with_test_size
from ..models.utils import align_channels
from .busy_weights import busy_two_stage_weights, busy_weights
from .complexity import detector_complexity
from .detectors import (MBV2_SSDLITE, REXNET_MASK_RCNN, REXNET_SSDLITE,
                        build_detector, load_config)
from .flops import count_complexity
from .goals import DEPLOY_PER_FLOP as TARGET_PER_FLOP
from .goals import DEPLOY_SPEEDUP as TARGET_SPEEDUP
from .ort_profile import ort_op_times
from .timing import Case, measure, paired_ratio

RUNTIME_NAMES = {'pytorch': 'PyTorch', 'ort': 'onnxruntime',
                 'openvino': 'OpenVINO'}
#: Environment for reproducible timings, set before start-up: glibc malloc
#: pinned (eager timings swing up to 30% between processes otherwise) and
#: OpenMP threads that sleep instead of spin-waiting (on a shared machine
#: spinning makes 2-thread PyTorch many times slower; onnxruntime gets
#: ``session.intra_op.allow_spinning=0`` for the same reason).
TIMING_ENV = {'MALLOC_MMAP_THRESHOLD_': str(2**30),
              'MALLOC_TRIM_THRESHOLD_': str(2**31),
              'OMP_WAIT_POLICY': 'PASSIVE'}


def restart_with_timing_env(argv: Optional[List[str]]) -> None:
    """Re-execute this command line with :data:`TIMING_ENV` set, unless it
    already is or the tool was called in-process (`argv` given): glibc and
    OpenMP read these only at start-up."""
    import sys
    if argv is None and any(os.environ.get(k) != v
                            for k, v in TIMING_ENV.items()):
        os.execve(sys.executable, [sys.executable] + sys.argv,
                  dict(os.environ, **TIMING_ENV))


@dataclass
class LatencyModel:
    """One model of the benchmark.

    Attributes:
        label (str): Row name.
        config (str): Its config.
        transforms (tuple): ``nn.Module -> nn.Module`` callables applied to
            the eval-mode detector before timing and export.
        peer (bool): The reference the per-FLOP target compares with.
    """
    label: str
    config: str
    transforms: Tuple[Callable[[nn.Module], nn.Module], ...] = ()
    peer: bool = False


DEFAULT_MODELS = (
    LatencyModel('SSDLite-ReXNet-1.0x', REXNET_SSDLITE),
    LatencyModel('SSDLite-MobileNetV2', MBV2_SSDLITE, peer=True),
    # A transformed row is one line: what export.py writes by default.
    LatencyModel('SSDLite-ReXNet-1.0x aligned', REXNET_SSDLITE,
                 (align_channels, )),
)


MMDET_MASK_RCNN = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
#: The two-stage suite: Mask R-CNN with boxes and masks.
MASK_RCNN_MODELS = (
    LatencyModel('Mask R-CNN-ReXNet-1.0x', REXNET_MASK_RCNN),
    LatencyModel('Mask R-CNN-R50', MMDET_MASK_RCNN, peer=True),
)
#: Image sizes (H, W) of the two-stage suite: the demo's and COCO's.
MASK_RCNN_SIZES = ((128, 128), (800, 1333))


@dataclass
class PreparedModel:
    """A model built, made busy, transformed and exported."""
    spec: LatencyModel
    detector: nn.Module
    pipeline: Any
    onnx_path: str
    macs: int
    params: int


class _Network(nn.Module):
    """Backbone, neck and head up to the raw outputs (what FLOPs count)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x):
        cls_scores, bbox_preds = self.detector.bbox_head(
            self.detector.extract_feat(x))
        return tuple(cls_scores) + tuple(bbox_preds)


def prepare_model(spec: LatencyModel, size: int, out_dir: str,
                  seed: int = 0) -> PreparedModel:
    """Build `spec` at ``size x size`` with busy random weights, apply its
    transforms and export it to ``out_dir``."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    cfg = load_config(spec.config)
    detector = busy_weights(build_detector(cfg), size, size, seed)
    with torch.no_grad():  # own MACs: padding by a transform is no work
        counted = count_complexity(_Network(detector).eval(),
                                   (torch.zeros(1, 3, size, size), ))
    for transform in spec.transforms:
        detector = transform(detector).eval()
    wrapper = SingleStageExport(detector).eval()
    meta = make_meta(cfg, wrapper, {}, (size, size), False,
                     dict(config=spec.config, checkpoint='busy random'))
    path = osp.join(out_dir, f'{spec.label.replace(" ", "_")}.onnx')
    export_wrapper(wrapper, meta, path)
    model = ready_for_inference(detector,
                                with_test_size(cfg, [size, size]))
    steps = get_test_pipeline_cfg(model.cfg.copy())
    steps[0].type = 'mmdet.LoadImageFromNDArray'
    return PreparedModel(spec, model.eval(), Compose(steps), path,
                         counted['macs'], counted['params'])


def _build_two_stage(spec: LatencyModel, image_size: Tuple[int, int],
                     seed: int) -> Tuple[Any, nn.Module, Tuple[int, int]]:
    """`spec`'s config (test resize keep-ratio at `image_size`), its busy,
    transformed detector and the stride-rounded canvas."""
    from mmdet.utils import get_test_pipeline_cfg

    from ..deploy.detector.export import network_stride
    h, w = image_size
    cfg = load_config(spec.config)
    for step in get_test_pipeline_cfg(cfg):
        if str(step.get('type', '')).endswith('Resize'):
            step['scale'], step['keep_ratio'] = (w, h), True
    detector = build_detector(cfg).eval()
    stride = network_stride(detector)
    canvas = tuple(-(-s // stride) * stride for s in image_size)
    detector = busy_two_stage_weights(detector, *canvas, seed=seed)
    for transform in spec.transforms:
        detector = transform(detector).eval()
    return cfg, detector, canvas


def _export_two_stage(spec: LatencyModel, cfg, detector: nn.Module,
                      canvas: Tuple[int, int], path: str,
                      static_shape: bool = True) -> PreparedModel:
    """Export `detector` at the fixed `canvas` (or with a dynamic input
    size, the default export) to `path`; ready for :func:`run_latency`."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    wrapper = TwoStageExport(detector).eval()
    meta = make_meta(cfg, wrapper, {}, canvas if static_shape else None,
                     False, dict(config=spec.config,
                                 checkpoint='busy random'),
                     static_shape=static_shape)
    export_wrapper(wrapper, meta, path)
    model = ready_for_inference(detector, cfg)
    steps = get_test_pipeline_cfg(model.cfg.copy())
    steps[0].type = 'mmdet.LoadImageFromNDArray'
    steps = [st for st in steps if 'LoadAnnotations' not in st.type]
    counted = detector_complexity(spec.config, canvas)
    return PreparedModel(spec, model, Compose(steps), path, counted['macs'],
                         counted['params'])


def prepare_two_stage(spec: LatencyModel, image_size: Tuple[int, int],
                      out_dir: str, seed: int = 0) -> PreparedModel:
    """Build the two-stage `spec` with busy random weights, its test resize
    set to keep-ratio ``image_size`` (W, H as mmdet's scale) so that an
    image of that size is not resized, apply its transforms and export it
    (canvas: `image_size` rounded up to the stride)."""
    cfg, detector, canvas = _build_two_stage(spec, image_size, seed)
    h, w = image_size
    path = osp.join(out_dir, f'{spec.label.replace(" ", "_")}_{h}x{w}.onnx')
    return _export_two_stage(spec, cfg, detector, canvas, path)


def prepare_dynamic_pair(spec: LatencyModel, image_size: Tuple[int, int],
                         out_dir: str, seed: int = 0
                         ) -> Tuple[PreparedModel, PreparedModel]:
    """One busy two-stage detector (as :func:`prepare_two_stage`) exported
    twice: with a dynamic input size (the default export) and at the fixed
    canvas (``--static-shape``). An image of `image_size` is not resized
    and both graphs get the same padded input."""
    cfg, detector, canvas = _build_two_stage(spec, image_size, seed)
    h, w = image_size
    out = []
    for kind in ('dynamic', 'static'):
        label = f'{spec.label} {kind}'
        path = osp.join(out_dir, f'{label.replace(" ", "_")}_{h}x{w}.onnx')
        out.append(_export_two_stage(
            LatencyModel(label, spec.config, spec.transforms), cfg, detector,
            canvas, path, static_shape=kind == 'static'))
    return out[0], out[1]


def cpu_line() -> str:
    """CPU model, cores and the vector instruction sets figures depend on
    (from ``/proc/cpuinfo``)."""
    model, flags = platform.processor() or 'unknown CPU', set()
    if osp.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name':
                    model = value.strip()
                elif key.strip() == 'flags':
                    flags = set(value.split())
    wanted = ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_int8',
              'amx_bf16')
    return (f'CPU: {model}, {os.cpu_count()} cores; '
            f'{" ".join(f for f in wanted if f in flags) or "no AVX2"}')


def run_dynamic_suite(sizes: Sequence[Tuple[int, int]],
                      threads: Sequence[int] = (1, ), rounds: int = 5,
                      calls: int = 2, warmup: int = 1) -> List[dict]:
    """Time :func:`prepare_dynamic_pair` of Mask R-CNN-ReXNet-1.0x on
    onnxruntime at every image size; print each table, the CPU and the
    load, and the dynamic / fixed latency ratio against
    :data:`~.goals.DYNAMIC_SLOWDOWN` per thread count.

    Returns:
        list[dict]: Per size: ``size``, ``rows`` and ``goals`` (``threads``,
        ``ratio``, ``target``, ``met``).
    """
    import tempfile

    from .goals import DYNAMIC_SLOWDOWN
    print(cpu_line())
    results = []
    for h, w in sizes:
        image = np.random.RandomState(0).randint(0, 256, (h, w, 3),
                                                 dtype=np.uint8)
        with tempfile.TemporaryDirectory() as tmp:
            pair = prepare_dynamic_pair(MASK_RCNN_MODELS[0], (h, w), tmp)
            result = run_latency(pair, image, threads, ['ort'], rounds,
                                 calls, targets=False, warmup=warmup)
        rows = {(r['model'], r['threads']): r for r in result.rows}
        print(f'\nimage {h}x{w}, load average {os.getloadavg()[0]:.1f}:')
        print(format_latency(result))
        goals = []
        for count in threads:
            dynamic, static = (rows[(m.spec.label, count)] for m in pair)
            ratio = dynamic['ms'] / static['ms']
            met = ratio <= DYNAMIC_SLOWDOWN
            goals.append(dict(threads=count, ratio=ratio,
                              target=DYNAMIC_SLOWDOWN, met=met))
            print(f'{count} thread(s): dynamic / static latency = '
                  f'{ratio:.3f}; goal <= {DYNAMIC_SLOWDOWN:g}: '
                  f'{"met" if met else "MISSED"}', flush=True)
        results.append(dict(size=[h, w], rows=result.rows, goals=goals))
    return results


def _cases(models: Sequence[PreparedModel], runtimes: Sequence[str],
           threads: int, image: np.ndarray) -> List[Case]:
    from mmdet.apis import inference_detector
    cases = []
    for prepared in models:
        for runtime in runtimes:
            info = dict(model=prepared.spec.label, runtime=runtime,
                        threads=threads, macs=prepared.macs)
            if runtime == 'pytorch':
                def fn(p=prepared):
                    return inference_detector(p.detector, image,
                                              test_pipeline=p.pipeline)
            else:
                deployed = DeployedDetector(prepared.onnx_path, runtime,
                                            threads)
                fn = (lambda d=deployed: d.predict(image))
            cases.append(Case(f'{prepared.spec.label} | {runtime} | '
                              f'{threads}t', fn, 1, info))
    return cases


@dataclass
class LatencyResult:
    """Timings of one benchmark run."""
    rows: List[Dict[str, Any]] = field(default_factory=list)
    targets: List[Dict[str, Any]] = field(default_factory=list)


def run_latency(models: Sequence[PreparedModel], image: np.ndarray,
                threads: Sequence[int] = (1, 2),
                runtimes: Sequence[str] = ('pytorch', 'ort', 'openvino'),
                rounds: int = 7, calls: int = 5, targets: bool = True,
                warmup: int = 2) -> LatencyResult:
    """Time every model on every runtime, per thread count, interleaved
    (`targets`: also the issue #11 ratios against their targets)."""
    result = LatencyResult()
    peer = next((m for m in models if m.spec.peer), None)
    previous = torch.get_num_threads()
    for count in threads:
        torch.set_num_threads(count)
        try:
            cases = _cases(models, runtimes, count, image)
            timings = measure(cases, rounds, calls, warmup=warmup)
        finally:
            torch.set_num_threads(previous)
        by_key = {(t.case.info['model'], t.case.info['runtime']): t
                  for t in timings.values()}
        for t in timings.values():
            medians = [m * 1e3 for m in t.round_medians()]
            walls = [w * 1e3 for r in t.wall for w in r]
            result.rows.append(dict(t.case.info, ms=statistics.median(walls),
                                    ms_min=min(medians), ms_max=max(medians)))
        for prepared in models if targets else ():
            label = prepared.spec.label
            for runtime in runtimes:
                if runtime == 'pytorch':
                    continue
                mine = by_key[(label, runtime)]
                if 'pytorch' in runtimes:
                    speedup = paired_ratio(by_key[(label, 'pytorch')], mine)
                    result.targets.append(dict(
                        kind='speedup vs own PyTorch predict', model=label,
                        runtime=runtime, threads=count, **speedup,
                        target=TARGET_SPEEDUP,
                        met=speedup['median'] >= TARGET_SPEEDUP))
                if peer is not None and prepared is not peer:
                    ratio = paired_ratio(mine, by_key[(peer.spec.label,
                                                       runtime)])
                    flop_ratio = prepared.macs / peer.macs
                    per_flop = {k: v / flop_ratio for k, v in ratio.items()
                                if k != 'rounds'}
                    result.targets.append(dict(
                        kind=f'latency / (MAC ratio x {peer.spec.label})',
                        model=label, runtime=runtime, threads=count,
                        latency_ratio=ratio['median'],
                        flop_ratio=flop_ratio, **per_flop,
                        target=TARGET_PER_FLOP,
                        met=per_flop['median'] <= TARGET_PER_FLOP))
    return result


def format_latency(result: LatencyResult) -> str:
    """A markdown table of the rows and one line per target."""
    lines = ['| model | runtime | threads | GMACs | latency ms, median '
             '[min-max of round medians] |', '|---|---|---|---|---|']
    for r in result.rows:
        lines.append(f'| {r["model"]} | {RUNTIME_NAMES[r["runtime"]]} | '
                     f'{r["threads"]} | {r["macs"] / 1e9:.3f} | '
                     f'{r["ms"]:.1f} [{r["ms_min"]:.1f}-{r["ms_max"]:.1f}] |')
    lines.append('')
    for t in result.targets:
        op = '>=' if t['kind'].startswith('speedup') else '<='
        extra = (f' (latency ratio {t["latency_ratio"]:.3f}, MAC ratio '
                 f'{t["flop_ratio"]:.3f})' if 'flop_ratio' in t else '')
        lines.append(f'{t["model"]}, {RUNTIME_NAMES[t["runtime"]]}, '
                     f'{t["threads"]} thread(s): {t["kind"]} = '
                     f'{t["median"]:.3f} [{t["min"]:.3f}-{t["max"]:.3f}]'
                     f'{extra}; target {op} {t["target"]:g}: '
                     f'{"met" if t["met"] else "MISSED"}')
    return '\n'.join(lines)


def profile_ort(path: str, image: np.ndarray, threads: int = 1,
                runs: int = 20) -> Dict[str, float]:
    """onnxruntime's own profile of `path` on `image` (preprocessed as the
    runtime does): ms per run by op type
    (:func:`~.ort_profile.ort_op_times`)."""
    detector = DeployedDetector(path, 'ort', threads)
    prepared = detector.prepare(image)
    feed = {'input': prepared.input[None]}
    if detector.meta.img_shape_input:
        feed['img_shape'] = np.asarray([prepared.img_shape], np.float32)
    return ort_op_times(path, feed, threads, runs)
