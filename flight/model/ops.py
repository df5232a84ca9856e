"""The op registry: every canonical op defined once, with everything flight knows about it.

An :class:`Op` says what the op does (one line), how many inputs it takes and which may be
absent, its attributes (kind, required or not), its shape rule (:mod:`flight.model.shapes`), the
kernel dispatcher the executor calls (a function of :mod:`flight.kernels.dispatch`, named here so
that reading the registry does not import numba) and, for ops that need scratch memory, the
workspace function. Everything that needs op names or attributes reads them from :data:`OPS`:

* the ``.flm`` loader accepts exactly these ops (:mod:`flight.model.io`),
* the executor checks each node with :func:`check_node` and runs :func:`kernel` of its op,
* the ONNX importer emits only these ops and attributes (:mod:`flight.model.onnx_import`),
* the warm-up model that seeds the numba cache holds every one of them (tests check it).

Adding an op means one entry here, a shape rule, a dispatcher and a numpy reference test.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flight.model import shapes
from flight.model.shapes import MAX_RANK, Shape, fail

__all__ = ["OPS", "Attr", "Op", "check_attrs", "check_node", "kernel", "workspace_size"]

_DISPATCH = "flight.kernels.dispatch"
_KINDS = ("int", "ints", "float", "str")


@dataclass(frozen=True)
class Attr:
    """An attribute: ``kind`` is int, ints (a list of ints), float (any number) or str."""

    kind: str
    required: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"attribute kind {self.kind!r} is not one of {_KINDS}")

    def accepts(self, value: Any) -> bool:
        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if self.kind == "int":
            return is_int(value)
        if self.kind == "ints":
            return isinstance(value, list | tuple) and all(is_int(v) for v in value)
        if self.kind == "float":
            return isinstance(value, int | float) and not isinstance(value, bool)
        return isinstance(value, str)


@dataclass(frozen=True)
class Op:
    """One canonical op (see the module docstring)."""

    doc: str
    inputs: tuple[int, int]  #: (min, max) number of inputs
    shape: Callable[..., Any]  #: rule(node, input_shapes, attrs) -> shape or allowed shapes
    kernel: str  #: dispatcher in flight.kernels.dispatch: fn(inputs, outputs, attrs, ws)
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    optional: frozenset[int] = frozenset()  #: input positions that may be absent ("")
    workspace: str = ""  #: workspace function in flight.kernels.dispatch, if any


_I, _IS, _F, _S = Attr("int"), Attr("ints"), Attr("float"), Attr("str")
_REQ_IS = Attr("ints", required=True)
_FUSED = {"activation": _S, "activation_alpha": _F, "activation_beta": _F}
_WINDOW = {"kernel_shape": _REQ_IS, "strides": _REQ_IS, "pads": _REQ_IS}

#: Every canonical op: the one table flight's loader, executor and converter read.
OPS: dict[str, Op] = {
    "Conv": Op(
        "2-D (NCHW) or 3-D (NCDHW) convolution, any group, explicit [begin..., end...] pads, "
        "optional fused activation",
        (2, 3),
        shapes.conv,
        "op_conv",
        {**_WINDOW, "dilations": _REQ_IS, "group": _I, **_FUSED},
        optional=frozenset({2}),
        workspace="workspace_conv",
    ),
    "Gemm": Op(
        "alpha * A' @ B' + beta * C with optional transposes and a fused activation",
        (2, 3),
        shapes.gemm,
        "op_gemm",
        {"alpha": _F, "beta": _F, "transA": _I, "transB": _I, **_FUSED},
        optional=frozenset({2}),
        workspace="workspace_gemm",
    ),
    "MatMul": Op(
        "numpy matmul, batched with broadcasting",
        (2, 2),
        shapes.matmul,
        "op_matmul",
        workspace="workspace_matmul",
    ),
    "MaxPool": Op(
        "2-D or 3-D max pooling with strides, pads and dilations",
        (1, 1),
        shapes.maxpool,
        "op_maxpool",
        {**_WINDOW, "dilations": _REQ_IS},
    ),
    "AveragePool": Op(
        "2-D or 3-D average pooling, padding counted or not (count_include_pad)",
        (1, 1),
        shapes.avgpool,
        "op_avgpool",
        {**_WINDOW, "count_include_pad": _I},
    ),
    "GlobalAveragePool": Op(
        "mean over the spatial dimensions (2-D or 3-D), keeping them as 1s",
        (1, 1),
        shapes.global_avgpool,
        "op_global_avgpool",
    ),
    "BatchNormalization": Op(
        "inference batch norm (scale, bias, mean, var) when it could not be folded",
        (5, 5),
        shapes.batchnorm,
        "op_batchnorm",
        {"epsilon": _F},
    ),
    "Relu": Op("max(x, 0)", (1, 1), shapes.same, "op_relu"),
    "LeakyRelu": Op(
        "x, or alpha * x below 0", (1, 1), shapes.leaky_relu, "op_leaky_relu", {"alpha": _F}
    ),
    "Clip": Op("x clamped to [min, max]", (1, 1), shapes.clip, "op_clip", {"min": _F, "max": _F}),
    "Sigmoid": Op("1 / (1 + exp(-x))", (1, 1), shapes.same, "op_sigmoid"),
    "Tanh": Op("tanh(x)", (1, 1), shapes.same, "op_tanh"),
    "Add": Op("a + b, numpy broadcasting", (2, 2), shapes.broadcast, "op_add"),
    "Sub": Op("a - b, numpy broadcasting", (2, 2), shapes.broadcast, "op_sub"),
    "Mul": Op("a * b, numpy broadcasting", (2, 2), shapes.broadcast, "op_mul"),
    "Div": Op("a / b, numpy broadcasting", (2, 2), shapes.broadcast, "op_div"),
    "Sum": Op("x0 + x1 + ... in input order, broadcasting", (1, 64), shapes.broadcast, "op_sum"),
    "Concat": Op(
        "inputs joined along a non-negative axis",
        (1, 1024),
        shapes.concat,
        "op_concat",
        {"axis": Attr("int", required=True)},
    ),
    "Reshape": Op(
        "the same data in the static output shape (also ONNX Flatten, Squeeze, Unsqueeze)",
        (1, 1),
        shapes.reshape,
        "op_reshape",
        {"shape": _REQ_IS},
    ),
    "Transpose": Op(
        "axes permuted by perm", (1, 1), shapes.transpose, "op_transpose", {"perm": _REQ_IS}
    ),
    "Pad": Op(
        "pads [begin..., end...] added, constant, reflect or edge",
        (1, 1),
        shapes.pad,
        "op_pad",
        {"pads": _REQ_IS, "mode": _S, "value": _F},
    ),
    "Gather": Op(
        "data entries picked along a non-negative axis by run-time indices (exact integers held "
        "as float32: an Embedding lookup on an integer graph input)",
        (2, 2),
        shapes.gather,
        "op_gather",
        {"axis": Attr("int", required=True)},
    ),
    "Softmax": Op(
        "softmax along one non-negative axis (opset >= 13 semantics)",
        (1, 1),
        shapes.softmax,
        "op_softmax",
        {"axis": _I},
    ),
    "LRN": Op(
        "local response normalisation across channels",
        (1, 1),
        shapes.lrn,
        "op_lrn",
        {"size": Attr("int", required=True), "alpha": _F, "beta": _F, "bias": _F},
    ),
}


def _dispatch() -> Any:
    """The dispatcher module, imported on first use (numba is heavy)."""
    return importlib.import_module(_DISPATCH)


def kernel(op: str) -> Callable[..., None]:
    """The dispatcher ``fn(inputs, outputs, attrs, ws)`` the executor calls for ``op``."""
    return getattr(_dispatch(), OPS[op].kernel)


def workspace_size(
    op: str, inputs: Sequence[Any], outputs: Sequence[Any], attrs: Mapping[str, Any]
) -> int:
    """Float32 scratch elements a node of ``op`` needs; ``inputs``/``outputs`` are arrays or
    shapes."""
    name = OPS[op].workspace
    return int(getattr(_dispatch(), name)(inputs, outputs, attrs)) if name else 0


def check_attrs(node: Any) -> None:
    """Raise :class:`~flight.model.shapes.ShapeError` unless ``node``'s attributes are its op's:
    no unknown name, every required one present, each of its kind. (Value ranges are the shape
    rules' business.)"""
    op = OPS.get(node.op)
    if op is None:
        raise fail(node, "not a canonical op")
    schema = op.attrs
    for key, value in node.attrs.items():
        attr = schema.get(key)
        if attr is None:
            raise fail(node, f"unknown attribute {key!r} (the op takes {sorted(schema)})")
        if not attr.accepts(value):
            raise fail(node, f"attribute {key} must be {attr.kind}, got {value!r}")
    for key, attr in schema.items():
        if attr.required and key not in node.attrs:
            raise fail(node, f"missing attribute {key}")


def check_node(node: Any, input_shapes: Sequence[Shape | None], output_shape: Shape) -> None:
    """Raise :class:`~flight.model.shapes.ShapeError` unless ``node`` is well-formed and produces
    ``output_shape``.

    ``input_shapes`` has None for an absent optional input (an empty name).
    """
    op = OPS.get(node.op)
    if op is None:
        raise fail(node, "not a canonical op")
    lo, hi = op.inputs
    if len(node.outputs) != 1:
        raise fail(node, f"expected one output, got {len(node.outputs)}")
    if not lo <= len(input_shapes) <= hi:
        raise fail(node, f"expected {lo}..{hi} inputs, got {len(input_shapes)}")
    if any(s is None for i, s in enumerate(input_shapes) if i not in op.optional):
        raise fail(node, "a required input is absent")
    for shape in [*input_shapes, output_shape]:
        if shape is not None and len(shape) > MAX_RANK:
            raise fail(node, f"rank {len(shape)} is above the kernels' limit of {MAX_RANK}")
    check_attrs(node)
    expected = op.shape(node, list(input_shapes), dict(node.attrs))
    allowed = expected if isinstance(expected, list) else [expected]
    if tuple(output_shape) not in [tuple(s) for s in allowed]:
        raise fail(node, f"declared output shape {tuple(output_shape)}, computed {allowed[0]}")
