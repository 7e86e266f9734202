"""INT8 post-training quantization of exported files with onnxruntime.

:func:`quantize_onnx` runs ``onnxruntime.quantization``: ``quant_pre_
process`` (shape inference and graph optimisation), then static
quantization in the QDQ format, calibrated on prepared inputs. Only the
network region is quantized (:mod:`.graph`); the result is one file with
the FP32 file's input, outputs and ``metadata_props`` plus a
``quantization`` entry (JSON of the :class:`QuantizeOptions`), written
atomically. Stock onnxruntime fuses its QDQ pairs into integer kernels;
OpenVINO reads the same pairs as its low-precision markup.

:func:`quantize_detector` calibrates on the config's data set resized as
the deployed file expects; :func:`quantize_classifier` on an image folder
for backbone and classifier files from ``tools/deploy/export_onnx.py``.
The defaults are the measured choice (docs/deployment.md, INT8).
"""
import json
import os
import os.path as osp
import re
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx

from ...utils.io import atomic_output
from ..detector.metadata import DeployMeta
from .calibration import (CalibrationError, detector_calibration,
                          folder_calibration, list_images)
from .graph import name_nodes, quantized_ops, select_nodes

#: Calibration methods of onnxruntime by their option name.
METHODS = ('minmax', 'entropy', 'percentile', 'distribution')
#: Integer types of activations and weights.
TYPES = ('u8', 's8')
#: Op types quantized inside the network region by default: everything
#: onnxruntime has an integer kernel for, so that tensors stay 8-bit from
#: one conv to the next (a float op between two convs costs a
#: dequantize-quantize pair).
NETWORK_OPS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'Add', 'Mul',
               'Sigmoid', 'Concat', 'GlobalAveragePool', 'AveragePool',
               'MaxPool', 'Relu', 'Clip', 'Resize', 'Reshape', 'Flatten',
               'Transpose', 'Squeeze', 'Unsqueeze', 'Split', 'Slice', 'Pad')
#: Key of the entry added to the file's metadata.
META_KEY = 'quantization'


class AlreadyQuantizedError(ValueError):
    """An ONNX file that already holds integer or QDQ ops."""


class NotAnExportError(ValueError):
    """An ONNX file that rexnet_det's exporters did not write."""


@dataclass
class QuantizeOptions:
    """How to quantize (defaults: the measured choice).

    Attributes:
        num_images (int): Calibration images. Default: 32.
        method (str): Calibration method, one of :data:`METHODS`.
            Default: ``'minmax'``.
        per_channel (bool): Per-output-channel weight scales (per-tensor
            scales ruin depthwise convs). Default: True.
        activations (str): ``'u8'`` or ``'s8'``. Default: ``'u8'``
            (onnxruntime's choice for x86 CPUs).
        weights (str): ``'s8'`` or ``'u8'``. Default: ``'s8'``.
        reduce_range (bool): 7-bit weights, for x86 CPUs without VNNI.
            Default: False.
        op_types (tuple[str]): Op types quantized inside the network.
            Default: :data:`NETWORK_OPS`.
        float_ops (tuple[str]): Op types kept float inside the network
            (removed from `op_types`). Default: ().
        float_nodes (str, optional): Regular expression; network nodes
            whose name matches stay float (e.g. ``'/se/'`` for ReXNet's
            squeeze-excitation). Default: None.
        split (str): Detectors: the config's data split to calibrate on.
            Default: ``'train'`` (keeps the evaluation images out).
        extra (dict): More ``extra_options`` of onnxruntime's
            ``quantize_static`` (e.g. ``{'CalibPercentile': 99.99}``).
    """
    num_images: int = 32
    method: str = 'minmax'
    per_channel: bool = True
    activations: str = 'u8'
    weights: str = 's8'
    reduce_range: bool = False
    op_types: Tuple[str, ...] = NETWORK_OPS
    float_ops: Tuple[str, ...] = ()
    float_nodes: Optional[str] = None
    split: str = 'train'
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f'calibration method must be one of {METHODS}, '
                             f'got {self.method!r}')
        for name in ('activations', 'weights'):
            if getattr(self, name) not in TYPES:
                raise ValueError(f'{name} type must be one of {TYPES}, got '
                                 f'{getattr(self, name)!r}')
        if self.float_nodes:
            try:
                re.compile(self.float_nodes)
            except re.error as exc:
                raise ValueError(f'float_nodes {self.float_nodes!r} is not '
                                 f'a regular expression: {exc}') from None
        self.op_types = tuple(self.op_types)
        self.float_ops = tuple(self.float_ops)

    @property
    def quantized_op_types(self) -> List[str]:
        return [t for t in self.op_types if t not in self.float_ops]


@dataclass
class QuantizeResult:
    """What :func:`quantize_onnx` did.

    Attributes:
        path (str): The INT8 file.
        options (QuantizeOptions): How.
        nodes (int): Network nodes quantized.
        op_counts (dict): Op type -> count of quantized nodes.
        layers (list[dict], optional): The per-tensor report
            (:func:`~.layers.layer_errors`) if asked for.
    """
    path: str
    options: QuantizeOptions
    nodes: int
    op_counts: Dict[str, int]
    layers: Optional[List[Dict[str, Any]]] = None


class _Reader:
    """onnxruntime's calibration reader protocol over prepared inputs."""

    def __init__(self, inputs: Sequence[Union[np.ndarray, Dict[str,
                                                            np.ndarray]]],
                 name: str) -> None:
        self.inputs, self.name, self.index = list(inputs), name, 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.index >= len(self.inputs):
            return None
        self.index += 1
        feed = self.inputs[self.index - 1]
        return feed if isinstance(feed, dict) else {self.name: feed}

    def rewind(self) -> None:
        self.index = 0

    def __iter__(self):  # qdq_loss_debug iterates
        self.rewind()
        return iter(lambda: self.get_next(), None)


def load_float_model(path: str) -> onnx.ModelProto:
    """Load `path`, refusing a missing or already quantized file.

    Raises:
        FileNotFoundError: `path` does not exist.
        AlreadyQuantizedError: It holds QDQ/integer ops or our
            ``quantization`` metadata (the message names the file).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'model file not found: {path}')
    try:
        model = onnx.load(path)
    except Exception as exc:  # noqa: BLE001 protobuf raises its own types
        raise NotAnExportError(f'{path} is not an ONNX file ({exc})') \
            from None
    ops = quantized_ops(model)
    props = {p.key for p in model.metadata_props}
    if ops or META_KEY in props:
        raise AlreadyQuantizedError(
            f'{path} is already quantized (' + (
                f'ops {", ".join(ops)}' if ops else
                f'metadata {META_KEY!r}') + '); quantize the FP32 file')
    return model


def classifier_outputs(model: onnx.ModelProto, path: str) -> List[str]:
    """Output names of a backbone/classifier file from
    ``tools/deploy/export_onnx.py`` (input ``input``, outputs ``tap{i}`` or
    ``logits``).

    Raises:
        NotAnExportError: Other names (the message names the file).
    """
    inputs = [i.name for i in model.graph.input
              if i.name not in {t.name for t in model.graph.initializer}]
    outputs = [o.name for o in model.graph.output]
    taps = outputs and all(re.fullmatch(r'tap\d', o) for o in outputs)
    if inputs != ['input'] or not (taps or outputs == ['logits']):
        raise NotAnExportError(
            f'{path} is not a backbone or classifier exported by rexnet_det '
            f'(inputs {inputs}, outputs {outputs}; expected input "input" '
            f'and outputs tap0..tap5 or "logits"); export it with '
            f'tools/deploy/export_onnx.py')
    return outputs


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType
    return QuantType.QUInt8 if name == 'u8' else QuantType.QInt8


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod
    return dict(minmax=CalibrationMethod.MinMax,
                entropy=CalibrationMethod.Entropy,
                percentile=CalibrationMethod.Percentile,
                distribution=CalibrationMethod.Distribution)[name]


def preprocess(src: str, dst: str) -> onnx.ModelProto:
    """``quant_pre_process`` `src` into `dst` (symbolic shape inference
    first; ONNX shape inference alone where it fails on the detector's
    data-dependent shapes); returns the result with every node named."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    try:
        quant_pre_process(src, dst)
    except Exception:  # noqa: BLE001 symbolic inference is best-effort
        quant_pre_process(src, dst, skip_symbolic_shape=True)
    model = name_nodes(onnx.load(dst))
    onnx.save(model, dst)
    return model


def quantize_onnx(src: str, out: str, inputs: Sequence[np.ndarray],
                  options: Optional[QuantizeOptions] = None,
                  layer_images: int = 0) -> QuantizeResult:
    """Quantize the float file `src` to `out`, calibrated on `inputs`.

    Args:
        src (str): FP32 ``.onnx`` file (never modified).
        out (str): INT8 file to write (atomically; not `src`).
        inputs (Sequence[np.ndarray | dict]): Calibration batches as the
            graph takes them: arrays for its first input, or feeds naming
            every input (a keep-ratio detector's ``img_shape`` too).
        options (QuantizeOptions, optional): Default: the defaults.
        layer_images (int): Also compute the per-tensor report on the first
            `layer_images` inputs (0: no report).

    Returns:
        QuantizeResult: The file and what was quantized.

    Raises:
        ValueError: `out` is `src`, or `src` is already quantized.
    """
    from onnxruntime.quantization import QuantFormat, quantize_static
    options = options or QuantizeOptions()
    if osp.abspath(out) == osp.abspath(src) or (
            osp.exists(out) and osp.samefile(out, src)):
        raise ValueError(f'--out {out!r} is the input file; the FP32 file is '
                         f'never overwritten: pick another path')
    original = load_float_model(src)
    if not inputs:
        raise CalibrationError('no calibration inputs given')
    input_name = original.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = osp.join(tmp, 'prepared.onnx')
        model = preprocess(src, prepared)
        nodes = select_nodes(model, options.quantized_op_types,
                             options.float_nodes)
        counts: Dict[str, int] = {}
        types = {n.name: n.op_type for n in model.graph.node}
        for name in nodes:
            counts[types[name]] = counts.get(types[name], 0) + 1
        qdq = osp.join(tmp, 'int8.onnx')
        quantize_static(
            prepared, qdq, _Reader(inputs, input_name),
            quant_format=QuantFormat.QDQ,
            # only types the region has: calibration saves every tensor of
            # these types, and mask pasting's MatMuls are large
            op_types_to_quantize=sorted(counts),
            nodes_to_quantize=nodes, per_channel=options.per_channel,
            reduce_range=options.reduce_range,
            activation_type=_quant_type(options.activations),
            weight_type=_quant_type(options.weights),
            calibrate_method=_method(options.method),
            extra_options=dict(options.extra))
        layers = None
        if layer_images:
            from .layers import layer_errors
            layers = layer_errors(prepared, qdq, _Reader(
                inputs[:layer_images], input_name), tmp)
        result = onnx.load(qdq)
        meta = dict(num_images=len(inputs), nodes=len(nodes),
                    **{k: v for k, v in asdict(options).items()
                       if k != 'num_images'})
        del result.metadata_props[:]
        for prop in original.metadata_props:  # the FP32 file's, unchanged
            result.metadata_props.add(key=prop.key, value=prop.value)
        result.metadata_props.add(key=META_KEY, value=json.dumps(meta))
        result.producer_name = original.producer_name
        # the FP32 file's declared input and output types: symbolic shape
        # inference (quant_pre_process) renames their dimensions
        for ours, theirs in ((result.graph.input, original.graph.input),
                             (result.graph.output, original.graph.output)):
            declared = {v.name: v.type for v in theirs}
            for value in ours:
                if value.name in declared:
                    value.type.CopyFrom(declared[value.name])
        with atomic_output(out) as tmp_out:
            onnx.save(result, tmp_out)
    return QuantizeResult(out, options, len(nodes), counts, layers)


def quantize_detector(config, model_path: str, out: str,
                      options: Optional[QuantizeOptions] = None,
                      layer_images: int = 0) -> QuantizeResult:
    """Quantize a detector file from ``tools/deploy/export.py``, calibrated
    on `config`'s data set (``options.split``) resized as the file
    expects.

    Raises:
        NotADeployedDetectorError: The file lacks our detector metadata.
        CalibrationError: The data set or the image count (named).
    """
    from ..detector.export import load_config
    options = options or QuantizeOptions()
    model = load_float_model(model_path)
    meta = DeployMeta.from_props({p.key: p.value
                                  for p in model.metadata_props}, model_path)
    name = config if isinstance(config, str) else 'the config'
    inputs = detector_calibration(load_config(config), meta.resize,
                                  options.num_images, options.split, name,
                                  meta.img_shape_input)
    return quantize_onnx(model_path, out, inputs, options, layer_images)


def _input_size(model: onnx.ModelProto) -> Optional[Tuple[int, int]]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    values = [d.dim_value if d.HasField('dim_value') else 0 for d in dims]
    return tuple(values[2:]) if len(values) == 4 and all(values[2:]) \
        else None


def quantize_classifier(image_dir: str, model_path: str, out: str,
                        options: Optional[QuantizeOptions] = None,
                        layer_images: int = 0) -> QuantizeResult:
    """Quantize a backbone or classifier file from
    ``tools/deploy/export_onnx.py``, calibrated on the images of
    `image_dir` (ImageNet evaluation preprocessing at the file's fixed
    input size, or 224).

    Raises:
        NotAnExportError: Not such a file (a detector file included).
        CalibrationError: The folder or the image count (named).
    """
    options = options or QuantizeOptions()
    list_images(image_dir)  # the folder first: it is the first argument
    model = load_float_model(model_path)
    if any(p.key == 'format' for p in model.metadata_props):
        raise NotAnExportError(f'{model_path} is a detector file: pass its '
                               f'config, not an image folder')
    classifier_outputs(model, model_path)
    inputs = folder_calibration(image_dir, options.num_images,
                                _input_size(model))
    return quantize_onnx(model_path, out, inputs, options, layer_images)


def quantize_file(source: Union[str, os.PathLike], model_path: str,
                  out: str, options: Optional[QuantizeOptions] = None,
                  layer_images: int = 0) -> QuantizeResult:
    """:func:`quantize_classifier` when `source` is a folder, else
    :func:`quantize_detector` with `source` as the config."""
    source = os.fspath(source)
    if osp.isdir(source):
        return quantize_classifier(source, model_path, out, options,
                                   layer_images)
    return quantize_detector(source, model_path, out, options,
                             layer_images)
