"""Op kinds: the coarse classes the latency models reason about (one efficiency per kind and unit).

Example:
    >>> op_kind("Conv", depthwise=True), op_kind("MatMul"), op_kind("HardSwish"), op_kind("Transpose"), op_kind("Reshape")
    ('depthwise_conv', 'matmul', 'elementwise', 'data_movement', 'view')
"""

from __future__ import annotations

__all__ = ["OP_KINDS", "COMPUTE_KINDS", "op_kind"]

# "view": ops that runtimes execute without copying data (a new shape over the same buffer).
OP_KINDS = ("conv", "depthwise_conv", "matmul", "elementwise", "reduce", "data_movement", "view", "other")
COMPUTE_KINDS = ("conv", "depthwise_conv", "matmul")

_CONV = {"Conv", "ConvTranspose", "QLinearConv", "ConvInteger", "FusedConv", "NhwcConv"}
_MATMUL = {"Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "Attention", "MultiHeadAttention"}
_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "PRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh",
    "Clip", "Erf", "Gelu", "FastGelu", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Cast", "Where", "Equal",
    "Less", "Greater", "Not", "And", "Or", "Min", "Max", "QuantizeLinear", "DequantizeLinear",
    "BatchNormalization", "Softplus", "Reciprocal", "Floor", "Ceil", "Round", "Sin", "Cos",
}
_REDUCE = {
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "GlobalAveragePool",
    "GlobalMaxPool", "AveragePool", "MaxPool", "Softmax", "LogSoftmax", "LayerNormalization",
    "SimplifiedLayerNormalization", "InstanceNormalization", "GroupNormalization", "ArgMax", "TopK", "CumSum",
}
_DATA_MOVEMENT = {
    "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "Resize", "Upsample", "Pad", "Expand",
    "Tile", "ConstantOfShape", "Range", "DepthToSpace", "SpaceToDepth", "ScatterND", "Trilu",
}
_VIEW = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape"}


def op_kind(op_type: str, depthwise: bool = False) -> str:
    """The kind of an ONNX op type; ``depthwise`` marks a convolution whose groups equal its channels."""
    if op_type in _CONV:
        return "depthwise_conv" if depthwise else "conv"
    for kind, members in (("matmul", _MATMUL), ("elementwise", _ELEMENTWISE), ("reduce", _REDUCE),
                          ("data_movement", _DATA_MOVEMENT), ("view", _VIEW)):
        if op_type in members:
            return kind
    return "other"
