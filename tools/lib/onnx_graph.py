"""Rewrites and checks of exported ONNX graphs (functions over a
``ModelProto``).

* :func:`fold_pads` moves zero ``Pad`` nodes into the ``pads`` attribute of
  the ``Conv`` they feed. mmdet's EfficientNet emulates TensorFlow's "SAME"
  padding with an explicit pad in front of each stride-2 conv; onnxruntime
  runs those as separate ``Pad`` nodes (about a fifth of EfficientNet-B0's
  time on one thread), OpenVINO and onnxruntime do not fold them
  themselves. The pad amounts are computed from the input shape inside the
  graph, so they are constant-folded first (:func:`constant_fold`, with
  onnxruntime's basic, ONNX-only optimisations) at a fixed input shape.
* :func:`conv_channels` lists every conv's channel counts, e.g. to check
  that a channel-aligned export has only multiples of 4.
"""
import os
import tempfile
from collections import Counter
from typing import Dict, List, Optional

import numpy as np


def _initializers(model) -> Dict[str, 'np.ndarray']:
    from onnx import numpy_helper
    values = {t.name: numpy_helper.to_array(t)
              for t in model.graph.initializer}
    for node in model.graph.node:  # Constant nodes hold values too
        if node.op_type == 'Constant':
            for attr in node.attribute:
                if attr.name == 'value':
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _attribute(node, name: str, default=None):
    from onnx import helper
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def constant_fold(model, input_shape: Optional[List[int]] = None):
    """`model` after onnxruntime's basic graph optimisations (constant
    folding, redundant node removal, Conv+BN/Add/Mul fusion; the result has
    only standard ONNX ops).

    Args:
        model (onnx.ModelProto): The graph.
        input_shape (list[int], optional): Fix the first input to this
            shape first, so that shape computations fold to constants.

    Returns:
        onnx.ModelProto: A new, optimised model.
    """
    import onnx
    import onnxruntime as ort
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    if input_shape is not None:
        dims = model_copy.graph.input[0].type.tensor_type.shape.dim
        if len(dims) != len(input_shape):
            raise ValueError(f'input_shape {list(input_shape)} does not fit '
                             f'the graph input of rank {len(dims)}')
        for dim, size in zip(dims, input_shape):
            dim.Clear()
            dim.dim_value = int(size)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, 'in.onnx'), os.path.join(tmp, 'out.onnx')
        onnx.save(model_copy, src)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # not the unused-initializer notes
        options.graph_optimization_level = \
            ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = dst
        ort.InferenceSession(src, options, providers=['CPUExecutionProvider'])
        return onnx.load(dst)


def fold_pads(model):
    """Move every constant zero ``Pad`` that only feeds a ``Conv`` into the
    conv's ``pads`` attribute.

    A ``Pad`` qualifies when its mode is ``constant`` with value 0 (or no
    value), its pad amounts are constants (an initializer or ``Constant``
    output: run :func:`constant_fold` first if they are computed), it pads
    only the spatial axes by amounts >= 0, and its output is used by
    exactly one node, a ``Conv`` without ``auto_pad``. The result computes
    the same function (a conv's own padding is zero padding).

    Args:
        model (onnx.ModelProto): The graph (not modified).

    Returns:
        onnx.ModelProto: A new model with the pads folded (count them with
        :func:`count_ops`).

    Example:
        >>> import onnx
        >>> folded = fold_pads(constant_fold(onnx.load('effnet.onnx'),
        ...                                  [1, 3, 224, 224]))
        >>> sum(n.op_type == 'Pad' for n in folded.graph.node)
        0
    """
    import onnx
    from onnx import helper
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    constants = _initializers(result)
    consumers: Dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    removed = []
    for node in graph.node:
        if node.op_type != 'Pad' or node.output[0] in outputs:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != 'Conv' or \
                users[0].input[0] != node.output[0]:
            continue
        conv = users[0]
        mode = _attribute(node, 'mode', b'constant')
        if isinstance(mode, bytes):
            mode = mode.decode()
        if mode != 'constant' or _attribute(conv, 'auto_pad', b'NOTSET') \
                not in (b'NOTSET', 'NOTSET'):
            continue
        if len(node.input) < 2 or node.input[1] not in constants:
            continue
        if len(node.input) > 2 and node.input[2] and (
                node.input[2] not in constants or
                np.any(constants[node.input[2]] != 0)):
            continue
        if len(node.input) > 3 and node.input[3]:
            continue  # explicit axes: keep it simple, leave the Pad
        pads = [int(p) for p in constants[node.input[1]].ravel()]
        rank = len(pads) // 2
        begin, end = pads[:rank], pads[rank:]
        if rank < 3 or any(begin[:2]) or any(end[:2]) or min(pads) < 0:
            continue
        spatial = rank - 2
        own = list(_attribute(conv, 'pads', [0] * (2 * spatial)))
        new = [own[i] + begin[2 + i] for i in range(spatial)] + \
            [own[spatial + i] + end[2 + i] for i in range(spatial)]
        kept = [a for a in conv.attribute if a.name not in ('pads',
                                                            'auto_pad')]
        del conv.attribute[:]
        conv.attribute.extend(kept + [helper.make_attribute('pads', new)])
        conv.input[0] = node.input[0]
        removed.append(node)
    for node in removed:
        graph.node.remove(node)
    _drop_unused_initializers(graph)
    return result


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)


def count_ops(model) -> Dict[str, int]:
    """Number of nodes per op type, most frequent first."""
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def conv_channels(model) -> List[dict]:
    """Channel counts of every ``Conv`` whose weight is a constant.

    Returns:
        list[dict]: ``name``, ``out_channels``, ``in_channels`` (total, i.e.
        per-group count x groups), ``groups`` and ``graph_input`` (whether
        the conv reads a graph input directly), in graph order.
    """
    constants = _initializers(model)
    inputs = {i.name for i in model.graph.input}
    rows = []
    for node in model.graph.node:
        if node.op_type != 'Conv' or node.input[1] not in constants:
            continue
        weight = constants[node.input[1]]
        groups = int(_attribute(node, 'group', 1))
        rows.append(dict(name=node.name, out_channels=int(weight.shape[0]),
                         in_channels=int(weight.shape[1]) * groups,
                         groups=groups,
                         graph_input=node.input[0] in inputs))
    return rows
