"""Where INT8 error comes from: every quantized tensor against FP32.

:func:`layer_errors` runs the float model and its QDQ form on the same
inputs with every intermediate tensor saved (onnxruntime's
``qdq_loss_debug``) and gives, per quantized activation:

* ``sqnr_db``: signal-to-quantization-noise ratio of the INT8 model's
  tensor against the FP32 model's (error accumulated up to here);
* ``local_sqnr_db``: the same for this tensor's own quantize-dequantize
  step alone (its scale and range);
* ``cosine``: cosine similarity of the INT8 and FP32 tensors.

A tensor whose local SQNR is low has a bad range (outliers, a sigmoid
gate); one whose accumulated SQNR drops without a local cause inherits
the error of the layers before it. onnxruntime folds a quantized ``Relu``
or ``Clip`` into the quantization range of the tensor before it, so for
their outputs the local figure compares the unclipped input with the
clipped result: a low value there is the activation itself, not error.
"""
import math
import os.path as osp
from typing import Any, Dict, List

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flattened tensors (1 when both are 0)."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return 1.0 if norm == 0 else float(a @ b / norm)


def layer_errors(float_path: str, qdq_path: str, reader, work_dir: str
                 ) -> List[Dict[str, Any]]:
    """Per-tensor errors of `qdq_path` against `float_path` (the model it
    was quantized from, same tensor names) on `reader`'s inputs, worst
    accumulated SQNR first.

    Args:
        float_path (str): The float model given to the quantizer.
        qdq_path (str): Its QDQ form.
        reader: Iterable of ``{input name: array}`` (re-iterable).
        work_dir (str): Folder for the two augmented models.

    Returns:
        list[dict]: ``tensor``, ``sqnr_db``, ``local_sqnr_db``, ``cosine``.
    """
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations, compute_signal_to_quantization_noice_ratio,
        create_activation_matching,
        modify_model_output_intermediate_tensors)
    activations = {}
    for name, path in (('float', float_path), ('qdq', qdq_path)):
        augmented = osp.join(work_dir, f'{name}.debug.onnx')
        modify_model_output_intermediate_tensors(path, augmented)
        activations[name] = collect_activations(augmented, reader)
    matched = create_activation_matching(activations['qdq'],
                                         activations['float'])
    sqnr = compute_signal_to_quantization_noice_ratio
    rows = []
    for tensor, match in matched.items():
        if 'float' not in match:
            continue
        ref = np.concatenate([x.ravel() for x in match['float']])
        got = np.concatenate([x.ravel() for x in match['post_qdq']])
        if ref.size != got.size:  # data-dependent shapes differ
            continue
        rows.append(dict(tensor=tensor, sqnr_db=sqnr([ref], [got]),
                         local_sqnr_db=sqnr(match['pre_qdq'],
                                            match['post_qdq']),
                         cosine=cosine(ref, got)))
    rows.sort(key=lambda r: r['sqnr_db'] if math.isfinite(r['sqnr_db'])
              else math.inf)
    return rows


def format_layers(rows: List[Dict[str, Any]], top: int = 10) -> str:
    """The `top` worst tensors and the median as a markdown table."""
    lines = ['| tensor | SQNR dB (vs FP32) | own QDQ SQNR dB | cosine |',
             '|---|---|---|---|']
    for r in rows[:top]:
        lines.append(f'| {r["tensor"]} | {r["sqnr_db"]:.1f} | '
                     f'{r["local_sqnr_db"]:.1f} | {r["cosine"]:.4f} |')
    if rows:
        lines.append(f'| median of {len(rows)} tensors | '
                     f'{np.median([r["sqnr_db"] for r in rows]):.1f} | '
                     f'{np.median([r["local_sqnr_db"] for r in rows]):.1f}'
                     f' | {np.median([r["cosine"] for r in rows]):.4f} |')
    return '\n'.join(lines)
