"""Deployed detectors, image in, boxes in image pixels out: PyTorch
predict vs the exported ONNX file on onnxruntime and OpenVINO.

SSDLite-ReXNet-1.0x (unaligned and channel-aligned, the default export)
against mmdet's SSDLite-MobileNetV2 at ``opts.detector_size``, and Mask
R-CNN-ReXNet-1.0x against Mask R-CNN-R50 (masks pasted in the graph) on
images of ``opts.mask_image_sizes``. Every row starts from the same decoded
BGR image and includes the same work: resize and normalisation, the
network, decoding, NMS and rescaling to the image. PyTorch runs mmdet's
``inference_detector`` with the config's test pipeline (built once); the
exported rows run :class:`~rexnet_det.deploy.detector.DeployedDetector`.
Models have random weights made busy (:mod:`tools.lib.busy_weights`):
every level fills ``nms_pre`` and every image ``max_per_img``, so
post-processing is at its full load.

All rows of one thread count are timed round by round in rotating order;
ratios are medians of per-round ratios on both clocks.
"""
import os.path as osp
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from rexnet_det.deploy.detector import DeployedDetector
from rexnet_det.deploy.detector.export import (export_wrapper, make_meta,
                                               network_stride)
from rexnet_det.deploy.detector.single_stage import SingleStageExport
from rexnet_det.deploy.detector.two_stage import TwoStageExport
from rexnet_det.deploy.detector.verify import (ready_for_inference,
                                               with_test_size)
from rexnet_det.models.utils import align_channels
from tools.bench.goals import clock
from tools.bench.sections.backbones import inverse, ratio, stats
from tools.lib.busy_weights import busy_two_stage_weights, busy_weights
from tools.lib.complexity import detector_complexity
from tools.lib.detectors import (MBV2_SSDLITE, REXNET_MASK_RCNN,
                                 REXNET_SSDLITE, build_detector, load_config)
from tools.lib.flops import count_complexity
from tools.lib.timing import Case, measure

NAME, ORDER = 'detectors', 40
RUNTIME_NAMES = {'pytorch': 'PyTorch', 'ort': 'onnxruntime',
                 'openvino': 'OpenVINO'}


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
#: The two-stage suite: Mask R-CNN with boxes and masks; ReXNet as the
#: default export (channel-aligned) writes it.
MASK_RCNN_MODELS = (
    LatencyModel('Mask R-CNN-ReXNet-1.0x aligned', REXNET_MASK_RCNN,
                 (align_channels, )),
    LatencyModel('Mask R-CNN-R50', MMDET_MASK_RCNN, peer=True),
)


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


def prepare_two_stage(spec: LatencyModel, image_size: Tuple[int, int],
                      out_dir: str, seed: int = 0,
                      static_shape: bool = False) -> PreparedModel:
    """Build the two-stage `spec` with busy random weights, its test resize
    set to keep-ratio ``image_size`` (W, H as mmdet's scale) so that an
    image of that size is not resized, apply its transforms and export it:
    with a dynamic input size (the default export) or, if `static_shape`,
    at the fixed canvas (`image_size` rounded up to the stride)."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
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
    wrapper = TwoStageExport(detector).eval()
    meta = make_meta(cfg, wrapper, {}, canvas if static_shape else None,
                     False, dict(config=spec.config, checkpoint='busy random'),
                     static_shape=static_shape)
    kind = 'static' if static_shape else 'dynamic'
    path = osp.join(out_dir,
                    f'{spec.label.replace(" ", "_")}_{kind}_{h}x{w}.onnx')
    export_wrapper(wrapper, meta, path)
    model = ready_for_inference(detector, cfg)
    steps = get_test_pipeline_cfg(model.cfg.copy())
    steps[0].type = 'mmdet.LoadImageFromNDArray'
    steps = [st for st in steps if 'LoadAnnotations' not in st.type]
    counted = detector_complexity(spec.config, canvas)
    return PreparedModel(spec, model, Compose(steps), path, counted['macs'],
                         counted['params'])


def latency_cases(models: Sequence[PreparedModel], runtimes: Sequence[str],
                  threads: int, image: np.ndarray) -> List[Case]:
    """One :class:`Case` per (model, runtime) on `threads`: PyTorch's
    ``inference_detector`` or the deployed file's ``predict`` of `image`."""
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


def run_latency(models: Sequence[PreparedModel], image: np.ndarray,
                threads: Sequence[int], rounds: int, calls: int,
                warmup: int = 2,
                runtimes: Sequence[str] = ('pytorch', 'ort', 'openvino')
                ) -> List[Dict[str, Any]]:
    """Time every model on every runtime, per thread count, interleaved.

    Returns:
        list[dict]: One row per (model, runtime, threads): ``ms``,
        ``ms_min``/``ms_max``, ``cpu_ms``, ``macs``; deployed rows add
        ``vs_pytorch`` (own PyTorch time over this one) and, but for the
        peer, ``per_flop`` (time ratio to the peer on the same runtime over
        the MAC ratio).
    """
    peer = next((m for m in models if m.spec.peer), None)
    rows = []
    previous = torch.get_num_threads()
    for count in threads:
        torch.set_num_threads(count)
        try:
            cases = latency_cases(models, runtimes, count, image)
            timings = measure(cases, rounds, calls, warmup=warmup)
        finally:
            torch.set_num_threads(previous)
        by_key = {(t.case.info['model'], t.case.info['runtime']): t
                  for t in timings.values()}
        for prepared in models:
            label = prepared.spec.label
            for runtime in runtimes:
                t = by_key[(label, runtime)]
                row = dict(t.case.info, **stats(t))
                if runtime != 'pytorch' and 'pytorch' in runtimes:
                    row['vs_pytorch'] = inverse(ratio(
                        t, by_key[(label, 'pytorch')]))
                if peer is not None and prepared is not peer:
                    row['per_flop'] = ratio(t, by_key[(peer.spec.label,
                                                       runtime)],
                                            peer.macs / prepared.macs)
                rows.append(row)
    return rows


def run(opts) -> Dict[str, Any]:
    image = np.random.RandomState(0).randint(0, 256, (480, 640, 3),
                                             dtype=np.uint8)
    size = opts.detector_size
    runtimes = ('pytorch', 'ort') + (('openvino', ) if opts.openvino
                                     else ())
    with tempfile.TemporaryDirectory() as tmp:
        models = [prepare_model(m, size, tmp) for m in DEFAULT_MODELS]
        ssdlite = dict(size=size, image=[480, 640], rows=run_latency(
            models, image, opts.threads, opts.rounds, max(1, opts.calls // 2),
            runtimes=runtimes))
    mask_rcnn = []
    for h, w in opts.mask_image_sizes:
        # seconds per call: one thread, PyTorch and onnxruntime, 3 rounds
        image = np.random.RandomState(0).randint(0, 256, (h, w, 3),
                                                 dtype=np.uint8)
        with tempfile.TemporaryDirectory() as tmp:
            models = [prepare_two_stage(m, (h, w), tmp)
                      for m in MASK_RCNN_MODELS]
            mask_rcnn.append(dict(image=[h, w], rows=run_latency(
                models, image, opts.threads[:1], min(opts.rounds, 3), 1,
                warmup=1, runtimes=('pytorch', 'ort'))))
    return dict(ssdlite=ssdlite, mask_rcnn=mask_rcnn,
                dynamic=[dynamic_vs_static(opts, size)
                         for size in opts.mask_image_sizes])


def dynamic_vs_static(opts, image_size: Tuple[int, int]) -> Dict[str, Any]:
    """Issue #23: the same busy Mask R-CNN-ReXNet-1.0x exported with a
    dynamic input size (the default) and at the fixed canvas
    (``--static-shape``), timed on onnxruntime on the same image (which is
    not resized, so both graphs get the same padded input)."""
    h, w = image_size
    image = np.random.RandomState(0).randint(0, 256, (h, w, 3),
                                             dtype=np.uint8)
    spec = MASK_RCNN_MODELS[0]
    with tempfile.TemporaryDirectory() as tmp:
        pair = [prepare_two_stage(
            LatencyModel(f'{spec.label} {kind}', spec.config,
                         spec.transforms, peer=kind == 'static'),
            (h, w), tmp, static_shape=kind == 'static')
            for kind in ('dynamic', 'static')]
        rows = run_latency(pair, image, opts.threads[:1],
                           min(opts.rounds, 3), 1, warmup=1,
                           runtimes=('ort', ))
    return dict(image=[h, w], rows=rows)


def _table(rows: List[Dict[str, Any]], peer: str) -> str:
    lines = ['| model | runtime | threads | GMACs | ms [min-max] | vs own '
             f'PyTorch | per FLOP vs {peer} |', '|---|---|---|---|---|---|---|']
    for r in rows:
        c = clock(r['threads'])
        speed = (f'{r["vs_pytorch"][c]["median"]:.2f}x'
                 if 'vs_pytorch' in r else '-')
        flop = (f'{r["per_flop"][c]["median"]:.2f}' if 'per_flop' in r
                else '-')
        lines.append(f'| {r["model"]} | {RUNTIME_NAMES[r["runtime"]]} | '
                     f'{r["threads"]} | {r["macs"] / 1e9:.3f} | '
                     f'{r["ms"]:.1f} [{r["ms_min"]:.1f}-{r["ms_max"]:.1f}] | '
                     f'{speed} | {flop} |')
    return '\n'.join(lines)


def tables(result: Dict[str, Any]) -> Dict[str, str]:
    out = dict(ssdlite_latency=_table(result['ssdlite']['rows'],
                                      'SSDLite-MobileNetV2'))
    for part in result['mask_rcnn']:
        h, w = part['image']
        out[f'mask_rcnn_latency_{h}x{w}'] = _table(part['rows'],
                                                   'Mask R-CNN-R50')
    lines = ['| image | threads | dynamic ms | fixed ms | dynamic / fixed |',
             '|---|---|---|---|---|']
    for part in result.get('dynamic', []):
        dynamic, static = part['rows']
        c = clock(dynamic['threads'])
        lines.append(f'| {part["image"][0]}x{part["image"][1]} | '
                     f'{dynamic["threads"]} | {dynamic["ms"]:.1f} | '
                     f'{static["ms"]:.1f} | '
                     f'{dynamic["per_flop"][c]["median"]:.3f} |')
    if len(lines) > 2:
        out['dynamic_vs_static'] = '\n'.join(lines)
    return out
