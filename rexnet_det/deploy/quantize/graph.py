"""Which nodes of an exported graph INT8 quantization may touch.

A deployed detector is one graph: the network (backbone, neck, heads, RoI
heads) and around it normalisation, anchors, box decoding, NMS, RoIAlign
and mask pasting. Only the network is quantized: its nodes are the
weighted layers (``Conv``, ``ConvTranspose``, ``Gemm``, ``MatMul`` with a
constant weight) and every node that feeds one of them through float
feature tensors. Box coordinates reach the RoI heads only through
``RoiAlign``'s ``rois`` input, and that edge is not followed, so decoding,
NMS, RoIAlign itself and mask pasting (a ``MatMul`` of two computed
tensors) stay float.
"""
import re
from typing import Dict, Iterable, List, Optional, Set

import onnx

#: Layers with weights: the roots of the network region.
WEIGHTED_OPS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul')
#: ``op type -> input indices`` that carry boxes or indices, not features.
NON_FEATURE_INPUTS = {'RoiAlign': (1, 2), 'ScatterND': (1, ),
                      'Gather': (1, ), 'GatherElements': (1, )}
#: Ops that already hold integer kernels: a file with one is quantized.
QUANTIZED_OPS = ('QuantizeLinear', 'DequantizeLinear', 'QLinearConv',
                 'QLinearMatMul', 'ConvInteger', 'MatMulInteger',
                 'DynamicQuantizeLinear', 'QLinearAdd', 'QLinearMul')
_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
           onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique name (quantization selects nodes
    by name); in place, returns `model`."""
    taken = {n.name for n in model.graph.node}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f'{node.op_type}_{i}'
            while name in taken:
                name += '_'
            node.name = name
            taken.add(name)
    return model


def tensor_types(model: onnx.ModelProto) -> Dict[str, int]:
    """Element type of every tensor whose type is known."""
    graph = model.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for info in list(graph.value_info) + list(graph.input) + \
            list(graph.output):
        if info.type.HasField('tensor_type'):
            types[info.name] = info.type.tensor_type.elem_type
    return types


def network_nodes(model: onnx.ModelProto) -> List[onnx.NodeProto]:
    """The network region of `model` (see the module doc), in graph order.

    Needs tensor types (run shape inference first, as
    ``quant_pre_process`` does); a tensor of unknown type is followed.
    """
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    constants = {t.name for t in graph.initializer}
    constants |= {n.output[0] for n in graph.node if n.op_type == 'Constant'}
    types = tensor_types(model)
    roots = [n for n in graph.node if n.op_type in WEIGHTED_OPS and (
        n.op_type != 'MatMul' or n.input[1] in constants)]
    region: Set[int] = {id(n) for n in roots}
    stack = list(roots)
    while stack:
        node = stack.pop()
        skip = NON_FEATURE_INPUTS.get(node.op_type, ())
        for index, name in enumerate(node.input):
            if index in skip or types.get(name, _FLOATS[0]) not in _FLOATS:
                continue
            producer = producers.get(name)
            if producer is not None and id(producer) not in region:
                region.add(id(producer))
                stack.append(producer)
    return [n for n in graph.node if id(n) in region]


def select_nodes(model: onnx.ModelProto, op_types: Iterable[str],
                 float_nodes: Optional[str] = None) -> List[str]:
    """Names of the network nodes to quantize: those of `op_types`, minus
    those whose name matches the regular expression `float_nodes`."""
    pattern = re.compile(float_nodes) if float_nodes else None
    op_types = set(op_types)
    return [n.name for n in network_nodes(model) if n.op_type in op_types
            and not (pattern and pattern.search(n.name))]


def quantized_ops(model: onnx.ModelProto) -> List[str]:
    """The integer / QDQ op types present in `model` (empty for a float
    model)."""
    return sorted({n.op_type for n in model.graph.node
                   if n.op_type in QUANTIZED_OPS})
