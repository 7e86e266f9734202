"""Export an mmdet detector to one self-contained ONNX file.

:func:`export_detector` builds the detector from its config, fills it with
our safe, strict checkpoint route, wraps it in :class:`SingleStageExport`
(SSD, SSDLite, RetinaNet) or :class:`TwoStageExport` (Faster / Mask R-CNN:
RPN, RoIAlign, bbox head and mask pasting in the graph) - normalisation,
anchors, decoding, score threshold, per-class NMS and top-k inside the
graph - and exports it with the TorchScript-based exporter
(``dynamo=False``). The file holds everything a client needs in its
``metadata_props`` (:class:`DeployMeta`): stock onnxruntime or OpenVINO
run it with no custom ops and no Python post-processing.
"""
import io
import math
import os
import warnings
from typing import (Callable, Dict, List, Optional, Sequence, Tuple,
                    Union)

import torch
import torch.nn as nn
from mmengine.config import Config

from ...checkpoint import check_coverage, load_checkpoint_file
from ...models.utils import align_for_export
from ...utils.configs import build_model, load_config
from ...utils.io import atomic_write
from .metadata import DeployMeta
from .resize import rule_from_pipeline
from .roi_ops import MIN_OPSET_TWO_STAGE
from .single_stage import (OUTPUT_NAMES, SingleStageExport,
                           UnsupportedDetectorError)
from .two_stage import TwoStageExport

#: Default ONNX opset (NonMaxSuppression needs >= 11).
DEFAULT_OPSET = 17
MIN_OPSET = 11
Transform = Callable[[nn.Module], nn.Module]


#: Two-stage parts the export reproduces (config ``type`` names).
TWO_STAGE_PARTS = dict(rpn_head=('RPNHead', ),
                       roi_head=('StandardRoIHead', ))


def _type_name(part) -> str:
    kind = part.get('type') if hasattr(part, 'get') else None
    return kind.split('.')[-1] if isinstance(kind, str) else repr(kind)


def is_two_stage_config(cfg: Config) -> bool:
    """Whether ``cfg.model`` is an RPN / RoI-head detector."""
    return 'roi_head' in cfg.model or 'rpn_head' in cfg.model


def check_exportable_config(cfg: Config, name: str = 'the config') -> None:
    """Refuse configs the export cannot handle, before building anything.

    Raises:
        UnsupportedDetectorError: A two-stage detector whose RPN or RoI
            head is not one the graph reproduces (cascade, HTC, RPN only,
            ...); the message names the detector and the part's type.
    """
    model = cfg.model
    if not is_two_stage_config(cfg):
        return
    for part, allowed in TWO_STAGE_PARTS.items():
        kind = _type_name(model.get(part) or {})
        if kind not in allowed:
            raise UnsupportedDetectorError(
                f'{name} builds {model.get("type")!r} with {part} {kind!r}; '
                f'two-stage export supports {part} {" / ".join(allowed)} '
                '(Faster R-CNN, Mask R-CNN), not cascade or other RoI heads')


def build_detector(cfg: Config, checkpoint: Optional[Union[str, dict]]
                   ) -> Tuple[nn.Module, dict]:
    """Build ``cfg.model`` in eval mode and fill it from `checkpoint`.

    The checkpoint is read with :func:`load_checkpoint_file` (safe, any
    scheme) and must cover the model exactly (:func:`check_coverage`).

    Returns:
        tuple: ``(model, checkpoint)``; the loaded checkpoint (``{}`` for
        ``checkpoint=None``, which keeps random weights).

    Raises:
        CheckpointMismatchError: The checkpoint does not fit the model.
    """
    model = build_model(cfg)
    loaded = {}
    if checkpoint is not None:
        loaded = checkpoint if isinstance(checkpoint, dict) else \
            load_checkpoint_file(checkpoint)
        check_coverage(model, loaded)
        state = loaded.get('state_dict', loaded)
        model.load_state_dict({k[7:] if k.startswith('module.') else k: v
                               for k, v in state.items()}, strict=True)
    return model.eval(), loaded


def network_stride(detector: nn.Module, probe: int = 128) -> int:
    """The backbone's largest output stride (32 for ReXNet, MobileNetV2 and
    ResNet taps up to stage 4), measured on a ``probe`` x ``probe`` input."""
    with torch.no_grad():
        feats = detector.backbone(torch.zeros(1, 3, probe, probe))
    return max(probe // f.shape[-1] for f in feats)


def dataset_meta(cfg: Config, checkpoint: dict, num_classes: int
                 ) -> Tuple[List[str], Optional[list]]:
    """Class names and palette: the checkpoint's ``dataset_meta``, else the
    test dataset's ``metainfo``, else its dataset type's ``METAINFO``.

    Raises:
        ValueError: The names found are not `num_classes` many.
    """
    from mmdet.registry import DATASETS
    meta = (checkpoint.get('meta') or {}).get('dataset_meta') or {}
    where = 'the checkpoint\'s dataset_meta'
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    while not meta.get('classes') and dataset:
        if (dataset.get('metainfo') or {}).get('classes'):
            meta, where = dataset['metainfo'], \
                'test_dataloader.dataset.metainfo'
        elif 'type' in dataset and 'dataset' not in dataset:
            meta = getattr(DATASETS.get(dataset['type']), 'METAINFO', {})
            where = f'{dataset["type"]}.METAINFO'
        dataset = dataset.get('dataset') or {}
    classes, palette = meta.get('classes'), meta.get('palette')
    if classes is None or len(classes) != num_classes:
        raise ValueError(
            f'the model has {num_classes} classes but {where} lists '
            f'{None if classes is None else len(classes)}; set '
            'test_dataloader.dataset.metainfo.classes in the config')
    return list(classes), [list(c) for c in palette] if palette else None


def check_shape(shape: Sequence[int], divisor: int) -> Tuple[int, int]:
    """``(H, W)``, both positive multiples of `divisor`.

    Raises:
        ValueError: Otherwise; the message shows the shape and the stride.
    """
    if len(shape) != 2 or any(int(s) != s or s < 1 for s in shape):
        raise ValueError(f'shape must be two positive integers (H, W), got '
                         f'{tuple(shape)}')
    if any(s % divisor for s in shape):
        fit = tuple(max(divisor, round(s / divisor) * divisor)
                    for s in shape)
        raise ValueError(f'shape {tuple(shape)} is not a multiple of the '
                         f'model\'s stride {divisor}; try {fit}')
    return int(shape[0]), int(shape[1])


def make_wrapper(detector: nn.Module, masks: Optional[bool] = None
                 ) -> nn.Module:
    """:class:`TwoStageExport` for an RPN / RoI-head detector, else
    :class:`SingleStageExport` (`masks`: see :func:`export_detector`)."""
    if hasattr(detector, 'roi_head'):
        return TwoStageExport(detector, masks)
    if masks:
        raise UnsupportedDetectorError(
            f'masks requested, but {type(detector).__name__} has no mask '
            'head')
    return SingleStageExport(detector)


def make_meta(cfg: Config, wrapper: nn.Module, checkpoint: dict,
              shape: Optional[Sequence[int]], dynamic_batch: bool,
              source: dict, static_shape: bool = False) -> DeployMeta:
    """The :class:`DeployMeta` of `wrapper` exported at `shape` (None: a
    keep-ratio config takes any padded size unless `static_shape`; see
    :func:`export_detector`)."""
    from mmdet.utils import get_test_pipeline_cfg
    detector = wrapper.detector
    pre, head = detector.data_preprocessor, wrapper.head
    mean, std = pre.mean.flatten().tolist(), pre.std.flatten().tolist()
    if not pre._channel_conversion:  # the network sees BGR
        mean, std = mean[::-1], std[::-1]
    divisor = math.lcm(network_stride(detector), pre.pad_size_divisor)
    if shape is not None:
        shape = check_shape(shape, divisor)
    pad = [m + pre.pad_value * s for m, s in zip(mean, std)]
    rule = rule_from_pipeline(get_test_pipeline_cfg(cfg), shape, divisor,
                              pad, static_shape or shape is not None,
                              max(1, int(pre.pad_size_divisor)))
    wrapper_cfg = wrapper.cfg
    classes, palette = dataset_meta(cfg, checkpoint, head.num_classes)
    return DeployMeta(
        resize=rule,
        classes=classes,
        score_thr=wrapper_cfg['score_thr'],
        iou_threshold=wrapper_cfg['iou_threshold'],
        nms_pre=wrapper_cfg['nms_pre'],
        max_per_img=wrapper_cfg['max_per_img'],
        dynamic_batch=dynamic_batch,
        detector=f'{type(detector).__name__}/{type(head).__name__}',
        mean=mean, std=std, palette=palette,
        source=source,
        masks=bool(getattr(wrapper, 'with_masks', False)),
        mask_thr=float(wrapper_cfg.get('mask_thr', 0.5)),
        img_shape_input=rule.mode != 'stretch')


def trace_shape(wrapper: nn.Module, divisor: int) -> Tuple[int, int]:
    """A small, non-square ``(H, W)`` to trace a dynamic-size export at
    (any size works; a non-square one keeps H and W apart)."""
    step = math.lcm(network_stride(wrapper.detector), divisor)
    return 3 * step, 4 * step


def dynamic_axes(meta: DeployMeta, names: Sequence[str]
                 ) -> Optional[Dict[str, Dict[int, str]]]:
    """The exporter's ``dynamic_axes``: the batch if ``dynamic_batch``,
    H and W of ``input`` (and ``masks``) if the resize is dynamic."""
    axes: Dict[str, Dict[int, str]] = {}
    for name in input_names(meta) + tuple(names):
        axes[name] = {0: 'batch'} if meta.dynamic_batch else {}
        if meta.resize.dynamic and name in ('input', 'masks'):
            axes[name].update({2: 'height', 3: 'width'})
    return {k: v for k, v in axes.items() if v} or None


def input_names(meta: DeployMeta) -> Tuple[str, ...]:
    """The graph's inputs: ``input``, and ``img_shape`` for keep-ratio
    rules (mmdet clamps boxes to the resized image, not its padding)."""
    return ('input', 'img_shape') if meta.img_shape_input else ('input', )


def export_wrapper(wrapper: nn.Module, meta: DeployMeta, out: str,
                   opset: int = DEFAULT_OPSET) -> str:
    """Trace `wrapper` at ``meta.resize.size`` (a dynamic-size rule: at
    :func:`trace_shape`) and write `out` atomically with `meta` in its
    ``metadata_props``."""
    import onnx
    if opset < MIN_OPSET:
        raise ValueError(f'opset must be >= {MIN_OPSET} (NonMaxSuppression), '
                         f'got {opset}')
    names = tuple(getattr(wrapper, 'output_names', OUTPUT_NAMES))
    height, width = meta.resize.size or trace_shape(wrapper,
                                                    meta.resize.divisor)
    example = (torch.rand(1, 3, height, width,
                          generator=torch.Generator().manual_seed(0)) * 255, )
    if meta.img_shape_input:  # an image that does not fill the input
        example += (torch.tensor([[height - 5., width - 7.]]), )
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The tracer reports Python ints taken from shapes (the fixed-size
        # exports' sizes, mmdet's own shape checks).
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.simplefilter('ignore', FutureWarning)
        with torch.no_grad():
            torch.onnx.export(wrapper, example, buffer, dynamo=False,
                              opset_version=opset,
                              input_names=list(input_names(meta)),
                              output_names=list(names),
                              dynamic_axes=dynamic_axes(meta, names),
                              do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in meta.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    data = model.SerializeToString()  # once: the checker takes bytes too
    onnx.checker.check_model(data)
    atomic_write(data, out)
    return out


def export_detector(config: Union[str, Config],
                    checkpoint: Optional[str],
                    out: Union[str, os.PathLike],
                    shape: Optional[Sequence[int]] = None,
                    dynamic_batch: bool = False,
                    opset: int = DEFAULT_OPSET,
                    transforms: Sequence[Transform] = (),
                    masks: Optional[bool] = None,
                    align: bool = True,
                    static_shape: bool = False) -> DeployMeta:
    """Export a detector to one self-contained ONNX file.

    Single-stage detectors (SSD, SSDLite, RetinaNet) become
    :class:`SingleStageExport`, two-stage ones (Faster / Mask R-CNN)
    :class:`TwoStageExport`; both take ``input`` and give ``dets`` and
    ``labels``, Mask R-CNN also ``masks`` (see docs/deployment.md).

    Args:
        config (str | Config): Detector config (path, ``rexnet_det::...``
            or ``mmdet::...``).
        checkpoint (str, optional): Its weights (any path, URL or scheme
            :func:`load_checkpoint_file` reads); must cover the model
            exactly. None keeps random weights (for tests and timing).
        out (str | PathLike): ``.onnx`` file to write (atomically).
        shape (Sequence[int], optional): A fixed ``(H, W)`` of the graph
            input, a multiple of the model's stride. Default: for a
            stretching test resize its size; for a keep-ratio one any H
            and W that are multiples of the preprocessor's
            ``pad_size_divisor`` (resize mode ``keep_ratio_pad_divisor``:
            exactly mmdet's input), or with `static_shape` the landscape
            canvas.
        dynamic_batch (bool): Let the batch size vary. Default: False.
        opset (int): ONNX opset, >= 11 (>= 16 for two-stage: RoiAlign's
            half_pixel mode). Default: 17.
        transforms (Sequence[Callable]): Applied in order to the eval-mode
            detector before tracing (``nn.Module -> nn.Module``), e.g. a
            channel alignment that leaves outputs unchanged.
        masks (bool, optional): Output ``masks``. None: if the detector has
            a mask head. True on a detector without one is an error.
        align (bool): Run :func:`~rexnet_det.models.utils.align_for_export`
            first (pads a ReXNet backbone's internal widths to multiples
            of 4: same outputs, faster in onnxruntime; does nothing to a
            model without a ReXNet and warns for one it cannot pad, e.g.
            with GroupNorm). Default: True.
        static_shape (bool): Export a keep-ratio config at a fixed canvas
            (`shape`, default the config's ``(short, long)`` scale rounded
            up to the stride) for runtimes that need static shapes; images
            are then padded to the whole canvas, so detections differ from
            mmdet's (docs/deployment.md). Default: False.

    Returns:
        DeployMeta: What was written into the file's metadata.

    Raises:
        UnsupportedDetectorError: A detector, head, coder or ``test_cfg``
            the graph cannot express, or masks requested from a detector
            without a mask head.
        ValueError: `shape` is not a multiple of the stride, or `opset` is
            too old.
        CheckpointMismatchError: `checkpoint` does not fit the config.

    Example:
        >>> meta = export_detector(
        ...     'configs/ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py',
        ...     'work_dirs/ssdlite/epoch_600.pth', 'ssdlite.onnx')
        >>> meta.resize.mode, meta.resize.size
        ('stretch', [320, 320])
    """
    name = config if isinstance(config, str) else 'the config'
    cfg = load_config(config)
    check_exportable_config(cfg, name)
    two_stage = is_two_stage_config(cfg)
    if opset < MIN_OPSET:
        raise ValueError(f'opset must be >= {MIN_OPSET} (NonMaxSuppression), '
                         f'got {opset}')
    if two_stage and opset < MIN_OPSET_TWO_STAGE:
        raise ValueError(f'two-stage export needs opset >= '
                         f'{MIN_OPSET_TWO_STAGE} (RoiAlign half_pixel), '
                         f'got {opset}')
    if masks and not (cfg.model.get('roi_head') or {}).get('mask_head'):
        raise UnsupportedDetectorError(
            f'masks requested, but {name} builds {cfg.model.get("type")!r}, '
            'which has no mask head (only Mask R-CNN-style detectors '
            'predict masks)')
    detector, loaded = build_detector(cfg, checkpoint)
    aligns = (align_for_export, ) if align else ()
    for transform in aligns + tuple(transforms):
        detector = transform(detector).eval()
    source = dict(config=os.path.basename(str(name)),
                  checkpoint=os.path.basename(str(checkpoint)))
    wrapper = make_wrapper(detector, masks).eval()
    meta = make_meta(cfg, wrapper, loaded, shape, dynamic_batch, source,
                     static_shape)
    export_wrapper(wrapper, meta, os.fspath(out), opset)
    return meta
