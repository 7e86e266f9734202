"""Export an mmdet single-stage detector to one self-contained ONNX file.

:func:`export_detector` builds the detector from its config, fills it with
our safe, strict checkpoint route, wraps it in :class:`SingleStageExport`
(normalisation, anchors, decoding, score threshold, per-class NMS and
top-k inside the graph) and exports it with the TorchScript-based exporter
(``dynamo=False``). The file holds everything a client needs in its
``metadata_props`` (:class:`DeployMeta`): stock onnxruntime or OpenVINO
run it with no custom ops and no Python post-processing.
"""
import copy
import io
import math
import os
import warnings
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config

from ...checkpoint import check_coverage, load_checkpoint_file
from ...models.utils import align_for_export
from ...utils.configs import resolve_config
from ...utils.io import atomic_write
from .metadata import DeployMeta
from .resize import rule_from_pipeline
from .single_stage import (OUTPUT_NAMES, SingleStageExport,
                           UnsupportedDetectorError)

#: Default ONNX opset (NonMaxSuppression needs >= 11).
DEFAULT_OPSET = 17
MIN_OPSET = 11
Transform = Callable[[nn.Module], nn.Module]


def load_config(config: Union[str, Config]) -> Config:
    """A config from a path, ``rexnet_det::...`` or ``mmdet::...``."""
    if isinstance(config, Config):
        return config
    return Config.fromfile(resolve_config(config))


def check_exportable_config(cfg: Config, name: str = 'the config') -> None:
    """Refuse configs the export cannot handle, before building anything.

    Raises:
        UnsupportedDetectorError: A two-stage detector (until two-stage
            export exists); the message names its type.
    """
    model = cfg.model
    if 'roi_head' in model or 'rpn_head' in model:
        raise UnsupportedDetectorError(
            f'two-stage export not supported yet: {name} builds '
            f'{model.get("type")!r} (an RPN / RoI-head detector); only '
            'single-stage detectors (SSD, SSDLite, RetinaNet) export')


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
    import mmdet.models  # noqa: F401  registers mmdet's modules
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(copy.deepcopy(cfg.model))
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


def make_meta(cfg: Config, wrapper: SingleStageExport, checkpoint: dict,
              shape: Optional[Sequence[int]], dynamic_batch: bool,
              source: dict) -> DeployMeta:
    """The :class:`DeployMeta` of `wrapper` exported at `shape`."""
    from mmdet.utils import get_test_pipeline_cfg
    detector = wrapper.detector
    pre, head = detector.data_preprocessor, detector.bbox_head
    mean, std = pre.mean.flatten().tolist(), pre.std.flatten().tolist()
    if not pre._channel_conversion:  # the network sees BGR
        mean, std = mean[::-1], std[::-1]
    divisor = math.lcm(network_stride(detector), pre.pad_size_divisor)
    if shape is not None:
        shape = check_shape(shape, divisor)
    pad = [m + pre.pad_value * s for m, s in zip(mean, std)]
    rule = rule_from_pipeline(get_test_pipeline_cfg(cfg), shape, divisor,
                              pad)
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
        source=source)


def export_wrapper(wrapper: nn.Module, meta: DeployMeta, out: str,
                   opset: int = DEFAULT_OPSET) -> str:
    """Trace `wrapper` at ``meta.resize.size`` and write `out` atomically
    with `meta` in its ``metadata_props``."""
    import onnx
    if opset < MIN_OPSET:
        raise ValueError(f'opset must be >= {MIN_OPSET} (NonMaxSuppression), '
                         f'got {opset}')
    height, width = meta.resize.size
    example = torch.rand(1, 3, height, width,
                         generator=torch.Generator().manual_seed(0)) * 255
    axes = None
    if meta.dynamic_batch:
        axes = {n: {0: 'batch'} for n in ('input', ) + OUTPUT_NAMES}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Feature sizes and anchors are fixed by the export shape on
        # purpose; the tracer reports every such Python int.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.simplefilter('ignore', FutureWarning)
        with torch.no_grad():
            torch.onnx.export(wrapper, (example, ), buffer, dynamo=False,
                              opset_version=opset, input_names=['input'],
                              output_names=list(OUTPUT_NAMES),
                              dynamic_axes=axes, do_constant_folding=True)
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
                    align: bool = True) -> DeployMeta:
    """Export a single-stage detector to one self-contained ONNX file.

    Args:
        config (str | Config): Detector config (path, ``rexnet_det::...``
            or ``mmdet::...``).
        checkpoint (str, optional): Its weights (any path, URL or scheme
            :func:`load_checkpoint_file` reads); must cover the model
            exactly. None keeps random weights (for tests and timing).
        out (str | PathLike): ``.onnx`` file to write (atomically).
        shape (Sequence[int], optional): ``(H, W)`` of the graph input, a
            multiple of the model's stride. Default: the config's test
            resize (for keep-ratio configs the landscape canvas).
        dynamic_batch (bool): Let the batch size vary. Default: False.
        opset (int): ONNX opset, >= 11. Default: 17.
        transforms (Sequence[Callable]): Applied in order to the eval-mode
            detector before tracing (``nn.Module -> nn.Module``), e.g. a
            channel alignment that leaves outputs unchanged.
        align (bool): Run :func:`~rexnet_det.models.utils.align_for_export`
            first (pads a ReXNet backbone's internal widths to multiples
            of 4: same outputs, faster in onnxruntime; does nothing to a
            model without a ReXNet and warns for one it cannot pad, e.g.
            with GroupNorm). Default: True.

    Returns:
        DeployMeta: What was written into the file's metadata.

    Raises:
        UnsupportedDetectorError: A two-stage detector, or a head, coder or
            ``test_cfg`` the graph cannot express.
        ValueError: `shape` is not a multiple of the stride, or `opset`
            is too old.
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
    if opset < MIN_OPSET:
        raise ValueError(f'opset must be >= {MIN_OPSET} (NonMaxSuppression), '
                         f'got {opset}')
    detector, loaded = build_detector(cfg, checkpoint)
    aligns = (align_for_export, ) if align else ()
    for transform in aligns + tuple(transforms):
        detector = transform(detector).eval()
    source = dict(config=os.path.basename(str(name)),
                  checkpoint=os.path.basename(str(checkpoint)))
    wrapper = SingleStageExport(detector).eval()
    meta = make_meta(cfg, wrapper, loaded, shape, dynamic_batch, source)
    export_wrapper(wrapper, meta, os.fspath(out), opset)
    return meta
