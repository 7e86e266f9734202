"""ONNX export of ReXNet backbones and classifiers, and an onnxruntime
runner.

torch 2.13 defaults to the torch.export-based exporter, which needs the
``onnxscript`` package; the TorchScript-based exporter (``dynamo=False``)
needs only ``onnx`` and handles these models completely (plain convs,
activations, mean, sigmoid, cat), so it is used here. Batch size, height
and width are dynamic axes.

By default every ReXNet in the model is exported channel-aligned
(:func:`~rexnet_det.models.utils.align_channels`: internal widths
zero-padded to multiples of 4, outputs unchanged), which lets onnxruntime
run all of its convs in the fast NCHWc layout (docs/performance.md).
"""
import copy
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..models import ReXNet
from ..models.utils import align_for_export, is_aligned
from ..utils.io import atomic_output

DEFAULT_OPSET = 17


def output_names(model: nn.Module) -> List[str]:
    """``tap{i}`` for a ReXNet's returned taps, ``logits`` otherwise."""
    if isinstance(model, ReXNet):
        return [f'tap{i}' for i in model.out_indices]
    return ['logits']


def export_onnx(model: nn.Module, path: str,
                input_shape: Sequence[int] = (1, 3, 224, 224),
                names: Optional[List[str]] = None,
                opset: int = DEFAULT_OPSET, dynamic: bool = True,
                align: bool = True) -> str:
    """Export an eval-mode model to ONNX (written atomically).

    `model` itself is not changed: alignment is applied to a copy.

    Args:
        model (nn.Module): Eval-mode model taking one image batch.
        path (str): Output ``.onnx`` file.
        input_shape (Sequence[int]): Shape of the example input used for
            tracing. Default: (1, 3, 224, 224).
        names (list[str], optional): Output names; default from
            :func:`output_names`.
        opset (int): ONNX opset. Default: 17.
        dynamic (bool): Make batch, height and width dynamic. Default: True.
        align (bool): Export every ReXNet inside channel-aligned to
            multiples of 4 (same outputs, faster in onnxruntime).
            Default: True.

    Returns:
        str: `path`.

    Raises:
        RuntimeError: `model` is in training mode.

    Example:
        >>> from rexnet_det import ReXNet
        >>> export_onnx(ReXNet().eval(), 'rexnet.onnx')  # aligned
        'rexnet.onnx'
        >>> export_onnx(ReXNet().eval(), 'plain.onnx', align=False)
        'plain.onnx'
    """
    if model.training:
        raise RuntimeError('export_onnx needs an eval-mode model; call '
                           'model.eval() first')
    if align and not is_aligned(model):
        model = align_for_export(copy.deepcopy(model))
    names = names or output_names(model)
    axes = None
    if dynamic:
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        axes.update({n: {0: 'batch'} for n in names})
    x = torch.zeros(*input_shape)
    with warnings.catch_warnings():
        # The input-size checks in ReXNet.forward are Python control flow
        # that the tracer reports; they hold for any traced shape.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        with torch.no_grad(), atomic_output(path) as tmp:
            torch.onnx.export(model, (x, ), tmp, dynamo=False,
                              opset_version=opset, input_names=['input'],
                              output_names=names, dynamic_axes=axes,
                              do_constant_folding=True)
    return path


def ort_session(path: str, threads: int = 0,
                profile_prefix: Optional[str] = None):
    """An onnxruntime CPU session: `threads` intra-op threads (0 =
    onnxruntime's default), one inter-op thread, and threads that do not
    busy-wait (spinning threads steal the CPU from each other on a shared
    or small machine and buy nothing at these sizes). `profile_prefix`
    turns onnxruntime's profiler on, writing there."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


def openvino_cpu_config(threads: int = 0, **extra) -> dict:
    """OpenVINO CPU plugin settings: float32 inference (its bf16 default on
    AVX-512 CPUs moves boxes) and `threads` threads (0: its default)."""
    config = dict(INFERENCE_PRECISION_HINT='f32', **extra)
    if threads:
        config['INFERENCE_NUM_THREADS'] = threads
    return config


class OrtRunner:
    """An onnxruntime CPU session (:func:`ort_session`) that takes and
    returns torch tensors.

    Args:
        path (str): The ``.onnx`` file.
        threads (int): ``intra_op_num_threads`` (0 = onnxruntime's default).
    """

    def __init__(self, path: str, threads: int = 0) -> None:
        self.session = ort_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name

    def run_numpy(self, x: np.ndarray) -> List[np.ndarray]:
        return self.session.run(None, {self.input_name: x})

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = self.run_numpy(x.detach().cpu().contiguous().numpy())
        return tuple(torch.from_numpy(o) for o in outs)
