"""ONNX import (ground side): an ONNX model in, flight's canonical graph out.

This runs on the ground, never on the board, and is the only part of ``flight`` that needs the
``onnx`` package (``pip install 'flight[onnx]'``). It turns whatever opset (9 to current) and
exporter quirks a model comes with into flight's small canonical form, so the flown executor
stays simple:

* every input dimension fixed (symbolic batch -> 1, others from ``input_shapes``),
* everything computable ahead of time folded into constants (Constant, ConstantOfShape, Shape,
  Gather on shapes, Cast, arithmetic on constants, ...), using onnx's reference evaluator,
* every tensor shape static (onnx shape inference after folding), activations float32 (an int32
  / int64 graph input is kept, declared as such, only where it is read as Gather indices: an
  Embedding lookup),
* attributes that later opsets moved to inputs (Unsqueeze axes, Clip min/max, Reshape shape,
  Pad pads, ...) read back into attributes; opset-dependent semantics (Softmax before 13)
  made explicit; ``auto_pad`` resolved to explicit pads,
* Reshape / Flatten / Squeeze / Unsqueeze all become ``Reshape`` to the static output shape,
  Identity and Dropout disappear,
* then flight's own graph rewrites (:mod:`flight.model.rewrite`, no onnx needed): BatchNormalization
  folded into the preceding Conv or Gemm, Relu / LeakyRelu / Clip fused into a preceding Conv or
  Gemm when nothing else reads the pre-activation value, unused nodes and tensors pruned.

Every emitted node is checked against the op registry (:mod:`flight.model.ops`): only canonical
ops, only their attributes.

Anything else is refused with :class:`UnsupportedOpError`, naming the op and the node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flight import errors
from flight.model import onnx_nd, ops, rewrite, shapes
from flight.model.graph import Graph, Node

if TYPE_CHECKING:
    from flight.model.format import Limits

__all__ = [
    "MIN_OPSET",
    "ConversionError",
    "UnsupportedOpError",
    "convert_onnx",
]

MIN_OPSET = 9


class ConversionError(errors.FlightError, ValueError):
    """The ONNX model cannot be converted (invalid, dynamic shapes, unsupported dtype...)."""


class UnsupportedOpError(ConversionError):
    """An op, or an op configuration, that flight does not run; the message names the node."""


def _producer(model: Any, tensor: str) -> Any:
    """The ONNX node that writes ``tensor`` (None for inputs and initializers)."""
    return next((n for n in model.graph.node if tensor in n.output), None)


def _consumer(model: Any, tensor: str) -> Any:
    """The first ONNX node that reads ``tensor``."""
    return next((n for n in model.graph.node if tensor in n.input), None)


_RESHAPE_LIKE = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}
_ALIAS_OPS = {"Identity", "Dropout"}
#: ONNX element types a graph input may have besides float32: Gather indices (TensorProto codes)
_INDEX_DTYPES = {6: "int32", 7: "int64"}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConversionError(
            "ONNX import needs the onnx package: pip install 'flight[onnx]'"
        ) from exc
    return onnx


def _max_opset() -> int:
    return int(_onnx().defs.onnx_opset_version())


# --- loading and fixing inputs ----------------------------------------------------------------
def _load(source: Any) -> Any:
    onnx = _onnx()
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        return model
    try:
        return onnx.load(str(source) if isinstance(source, Path) else source)
    except Exception as exc:
        raise ConversionError(f"cannot read ONNX model {source!r}: {exc}") from exc


def _opset_of(model: Any) -> int:
    version = None
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            version = imp.version
    if version is None:
        raise ConversionError("the model imports no version of the default ONNX domain")
    top = _max_opset()
    if not MIN_OPSET <= version <= top:
        raise ConversionError(f"opset {version} is not supported (supported: {MIN_OPSET}..{top})")
    return int(version)


def _fix_input_shapes(model: Any, input_shapes: dict[str, tuple[int, ...]]) -> None:
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        given = input_shapes.get(value.name)
        if given is not None:
            if len(given) != len(dims):
                raise ConversionError(
                    f"input {value.name!r} has rank {len(dims)}, --input-shape gives {given}"
                )
            for dim, size in zip(dims, given, strict=True):
                if dim.HasField("dim_value") and dim.dim_value not in (0, size):
                    raise ConversionError(
                        f"input {value.name!r}: shape {given} contradicts the model's "
                        f"dimension {dim.dim_value}"
                    )
                dim.dim_value = int(size)
            continue
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if dim.HasField("dim_value"):  # an explicit 0: an empty tensor, not a free batch
                node = _consumer(model, value.name)
                what = f"input {value.name!r} is an empty tensor (dimension {axis} is 0)"
                if node is None:
                    raise ConversionError(what)
                raise UnsupportedOpError(
                    f"op {node.op_type} (node {node.name!r}) is not supported: {what}; "
                    "flight computes on non-empty tensors only"
                )
            if axis == 0:
                dim.dim_value = 1  # a symbolic batch: flight runs one sample per inference
                continue
            label = dim.dim_param or "?"
            raise ConversionError(
                f"input {value.name!r} has a symbolic dimension {label!r} at axis {axis}; "
                f"give a static shape (input_shapes / --input-shape {value.name}=...)"
            )


def _resolve_initializer_inputs(model: Any, keep_inputs: frozenset[str]) -> None:
    """Graph inputs that also have an initializer become constants, except those in
    ``keep_inputs``, which stay inputs the caller feeds (their initializer is dropped).

    IR versions before 4 had to list every initializer as a graph input (most classic model-zoo
    files do), so there such an input is a weight, not something the caller means to feed.
    Later IR versions allow it as an overridable default; flight treats both the same way.
    """
    initializers = {t.name for t in model.graph.initializer}
    both = {v.name for v in model.graph.input if v.name in initializers}
    unknown = sorted(keep_inputs - both)
    if unknown:
        raise ConversionError(
            f"keep_inputs {unknown} are not graph inputs with an initializer "
            f"(those are: {sorted(both)[:10]}{' ...' if len(both) > 10 else ''})"
        )
    kept_inits = [t for t in model.graph.initializer if t.name not in keep_inputs]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept_inits)
    inputs = [v for v in model.graph.input if v.name not in both or v.name in keep_inputs]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    # From IR 4 on, initializers need not be inputs: shape inference then sees the constants
    # (and those folding adds) without listing them as inputs.
    model.ir_version = max(model.ir_version, 4)


# --- constant folding -------------------------------------------------------------------------
def _const_from_attr(node: Any) -> np.ndarray:
    onnx = _onnx()
    from onnx import numpy_helper

    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    raise UnsupportedOpError(
        f"Constant node {node.name!r} has no supported value attribute "
        f"({[a.name for a in node.attribute]}; onnx {onnx.__version__})"
    )


def _evaluate(node: Any, values: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    """Run one node on constant inputs with onnx's reference evaluator."""
    onnx = _onnx()
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    inputs = [i for i in node.input if i]
    graph = helper.make_graph(
        [node],
        "fold",
        [
            helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(values[name].dtype), values[name].shape
            )
            for name in inputs
        ],
        [helper.make_empty_tensor_value_info(name) for name in node.output if name],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        outputs = ReferenceEvaluator(model).run(None, {n: values[n] for n in inputs})
    except Exception as exc:
        raise ConversionError(
            f"could not fold constant node {node.name!r} ({node.op_type}): {exc}"
        ) from exc
    del onnx
    return [np.asarray(o) for o in outputs]


def _infer(model: Any) -> dict[str, tuple[tuple[int, ...] | None, int]]:
    """Shape and element type of every value onnx shape inference can tell."""
    onnx = _onnx()
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ConversionError(f"ONNX shape inference failed: {exc}") from exc
    out: dict[str, tuple[tuple[int, ...] | None, int]] = {}
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            out[value.name] = (None, tensor_type.elem_type)
            continue
        dims = tensor_type.shape.dim
        static = all(d.HasField("dim_value") for d in dims)
        shape = tuple(int(d.dim_value) for d in dims) if static else None
        out[value.name] = (shape, tensor_type.elem_type)
    return out


def _fold_constants(model: Any, opset: int, consts: dict[str, np.ndarray]) -> None:
    """Fold constant subgraphs (and Shape of static shapes) until nothing changes."""
    from onnx import numpy_helper

    for _ in range(64):  # each round folds at least one node; real graphs converge in a few
        shapes = _infer(model)
        kept = []
        changed = False
        for node in model.graph.node:
            op = node.op_type
            inputs = [i for i in node.input if i]
            folded: list[np.ndarray] | None = None
            if op == "Constant":
                folded = [_const_from_attr(node)]
            elif op == "Shape" and shapes.get(node.input[0], (None, 0))[0] is not None:
                shape = np.array(shapes[node.input[0]][0], dtype=np.int64)
                attrs = {a.name: a.i for a in node.attribute}
                rank = shape.size
                start = attrs.get("start", 0)
                end = attrs.get("end", rank)
                folded = [shape[start:end]]
            elif op == "Size" and shapes.get(node.input[0], (None, 0))[0] is not None:
                folded = [np.array(int(np.prod(shapes[node.input[0]][0])), dtype=np.int64)]
            elif inputs and all(i in consts for i in inputs) and op not in _ALIAS_OPS:
                folded = _evaluate(node, consts, opset)
            if folded is None:
                kept.append(node)
                continue
            for name, value in zip([o for o in node.output if o], folded, strict=False):
                consts[name] = value
            changed = True
        if not changed:
            return
        del model.graph.node[:]
        model.graph.node.extend(kept)
        existing = {t.name for t in model.graph.initializer}
        for name, value in consts.items():
            if name not in existing:
                model.graph.initializer.append(numpy_helper.from_array(value, name))
    raise ConversionError("constant folding did not converge")  # pragma: no cover


# --- canonicalisation -------------------------------------------------------------------------
def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    return value


class _Converter:
    def __init__(self, model: Any, opset: int, consts: dict[str, np.ndarray]) -> None:
        self.model = model
        self.opset = opset
        self.consts = consts
        self.info = _infer(model)
        self.nodes: list[Node] = []
        self.alias: dict[str, str] = {}
        self.used_consts: set[str] = set()
        self.extra_shapes: dict[str, tuple[int, ...]] = {}

    # helpers
    def shape(self, name: str, node: Any) -> tuple[int, ...]:
        name = self.alias.get(name, name)
        if name in self.extra_shapes:
            return self.extra_shapes[name]
        if name in self.consts:
            return tuple(self.consts[name].shape)
        shape = self.info.get(name, (None, 0))[0]
        if shape is None:
            raise ConversionError(
                f"tensor {name!r} (node {node.name!r}, {node.op_type}) has no static shape "
                "after constant folding"
            )
        return shape

    def const(self, name: str, node: Any, what: str) -> np.ndarray:
        if name not in self.consts:
            raise UnsupportedOpError(
                f"node {node.name!r} ({node.op_type}): {what} ({name!r}) must be a constant"
            )
        return self.consts[name]

    def ref(self, name: str) -> str:
        name = self.alias.get(name, name)
        if name in self.consts:
            self.used_consts.add(name)
        return name

    def emit(self, node: Any, op: str, inputs: list[str], attrs: dict[str, Any]) -> None:
        outputs = [o for o in node.output if o][:1]
        self.append(Node(node.name, op, [self.ref(i) if i else "" for i in inputs], outputs, attrs))

    def append(self, node: Node) -> None:
        """Add a canonical node; a name or attribute the registry does not know is a bug here."""
        ops.check_attrs(node)
        self.nodes.append(node)

    def unsupported(self, node: Any, why: str = "") -> UnsupportedOpError:
        detail = f": {why}" if why else ""
        return UnsupportedOpError(
            f"op {node.op_type} (node {node.name!r}) is not supported{detail}. "
            f"Supported ops: {', '.join(sorted(set(ops.OPS) | _RESHAPE_LIKE | _ALIAS_OPS))}"
        )

    def check_outputs_used(self, node: Any, allowed: int) -> None:
        extra = [o for o in list(node.output)[allowed:] if o]
        consumers = {i for n in self.model.graph.node for i in n.input}
        outputs = {o.name for o in self.model.graph.output}
        for name in extra:
            if name in consumers or name in outputs:
                raise self.unsupported(node, f"its output {name!r} is used (training outputs)")

    # per-op conversion
    def run(self) -> None:
        for index, node in enumerate(self.model.graph.node):
            if not node.name:
                node.name = f"{node.op_type}_{index}"
            if node.domain not in ("", "ai.onnx"):
                raise self.unsupported(node, f"custom domain {node.domain!r}")
            handler = onnx_nd.lowering(self, node) or getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                raise self.unsupported(node)
            handler(node)

    def _spatial(self, node: Any, attrs: dict[str, Any], kernel: list[int]) -> dict[str, Any]:
        """strides, dilations and explicit [begin..., end...] pads (auto_pad resolved), for 2-D
        (NCHW) and 3-D (NCDHW) inputs; 1-D ones were lowered to 2-D (:mod:`.onnx_nd`)."""
        in_shape = self.shape(node.input[0], node)
        if len(in_shape) not in (4, 5):
            raise self.unsupported(
                node, f"only 2-D or 3-D spatial (NCHW, NCDHW) inputs, got shape {in_shape}"
            )
        nd = len(in_shape) - 2
        if len(kernel) != nd:
            raise self.unsupported(node, f"kernel_shape {kernel} for a {nd}-D input")
        strides = list(attrs.get("strides", [1] * nd))
        dilations = list(attrs.get("dilations", [1] * nd))
        auto_pad = _decode(attrs.get("auto_pad", "NOTSET"))
        if auto_pad in ("NOTSET", "VALID"):
            pads = list(attrs.get("pads", [0] * 2 * nd)) if auto_pad == "NOTSET" else [0] * 2 * nd
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * 2 * nd
            for axis in range(nd):
                size = in_shape[2 + axis]
                out = -(-size // strides[axis])
                effective = (kernel[axis] - 1) * dilations[axis] + 1
                total = max(0, (out - 1) * strides[axis] + effective - size)
                small, large = total // 2, total - total // 2
                begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
                pads[axis], pads[nd + axis] = begin, end
        else:
            raise self.unsupported(node, f"auto_pad {auto_pad!r}")
        # ONNX pads are [x1_begin, x2_begin, ..., x1_end, x2_end, ...]: 2-D [t, l, b, r]
        return {"strides": strides, "dilations": dilations, "pads": pads}

    def op_Conv(self, node: Any) -> None:
        attrs = _attrs(node)
        weight = self.const(node.input[1], node, "the weight")
        if weight.ndim not in (4, 5):
            raise self.unsupported(node, f"only 2-D or 3-D convolution, weight {weight.shape}")
        kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
        spatial = self._spatial(node, attrs, kernel)
        bias = node.input[2] if len(node.input) > 2 else ""
        self.emit(
            node,
            "Conv",
            [node.input[0], node.input[1], bias],
            {
                "kernel_shape": kernel,
                "group": int(attrs.get("group", 1)),
                **spatial,
                "activation": "",
            },
        )

    def _pool(self, node: Any, op: str) -> None:
        attrs = _attrs(node)
        if attrs.get("storage_order", 0):
            raise self.unsupported(node, "storage_order=1")
        self.check_outputs_used(node, 1)
        kernel = list(attrs["kernel_shape"])
        spatial = self._spatial(node, attrs, kernel)
        out = {"kernel_shape": kernel, **spatial}
        if op == "AveragePool":
            if any(d != 1 for d in spatial["dilations"]):
                raise self.unsupported(node, "dilated AveragePool")
            del out["dilations"]
            out["count_include_pad"] = int(attrs.get("count_include_pad", 0))
        # ceil_mode changes only the output shape, which is static and known to the kernel
        self.emit(node, op, [node.input[0]], out)

    def op_MaxPool(self, node: Any) -> None:
        self._pool(node, "MaxPool")

    def op_AveragePool(self, node: Any) -> None:
        self._pool(node, "AveragePool")

    def op_GlobalAveragePool(self, node: Any) -> None:
        if len(self.shape(node.input[0], node)) not in (4, 5):
            raise self.unsupported(node, "only NCHW and NCDHW inputs")
        self.emit(node, "GlobalAveragePool", [node.input[0]], {})

    def op_BatchNormalization(self, node: Any) -> None:
        attrs = _attrs(node)
        self.check_outputs_used(node, 1)
        if attrs.get("training_mode", 0):
            raise self.unsupported(node, "training_mode=1")
        for i, what in zip(range(1, 5), ("scale", "bias", "mean", "var"), strict=True):
            self.const(node.input[i], node, what)
        self.emit(
            node,
            "BatchNormalization",
            list(node.input[:5]),
            {"epsilon": float(attrs.get("epsilon", 1e-5))},
        )

    def op_Gemm(self, node: Any) -> None:
        attrs = _attrs(node)
        c = node.input[2] if len(node.input) > 2 else ""
        for name in node.input[:2]:
            if len(self.shape(name, node)) != 2:
                raise self.unsupported(node, "Gemm inputs must be 2-D")
        self.emit(
            node,
            "Gemm",
            [node.input[0], node.input[1], c],
            {
                "alpha": float(attrs.get("alpha", 1.0)),
                "beta": float(attrs.get("beta", 1.0)),
                "transA": int(attrs.get("transA", 0)),
                "transB": int(attrs.get("transB", 0)),
                "activation": "",
            },
        )

    def op_MatMul(self, node: Any) -> None:
        self.emit(node, "MatMul", list(node.input[:2]), {})

    def op_Relu(self, node: Any) -> None:
        self.emit(node, "Relu", [node.input[0]], {})

    def op_Sigmoid(self, node: Any) -> None:
        self.emit(node, "Sigmoid", [node.input[0]], {})

    def op_Tanh(self, node: Any) -> None:
        self.emit(node, "Tanh", [node.input[0]], {})

    def op_LeakyRelu(self, node: Any) -> None:
        alpha = float(_attrs(node).get("alpha", 0.01))
        self.emit(node, "LeakyRelu", [node.input[0]], {"alpha": alpha})

    def op_Clip(self, node: Any) -> None:
        attrs = _attrs(node)
        lo, hi = float("-inf"), float("inf")
        if self.opset < 11:
            lo, hi = float(attrs.get("min", lo)), float(attrs.get("max", hi))
        else:
            if len(node.input) > 1 and node.input[1]:
                lo = float(self.const(node.input[1], node, "min"))
            if len(node.input) > 2 and node.input[2]:
                hi = float(self.const(node.input[2], node, "max"))
        self.emit(node, "Clip", [node.input[0]], {"min": lo, "max": hi})

    def _broadcast_check(self, node: Any, names: list[str]) -> None:
        shapes = [self.shape(n, node) for n in names]
        try:
            np.broadcast_shapes(*shapes)
        except ValueError as exc:
            raise ConversionError(f"node {node.name!r}: shapes {shapes} do not broadcast") from exc

    def _binary(self, node: Any) -> None:
        if self.opset < 7 and _attrs(node).get("broadcast"):  # pragma: no cover - opset >= 9
            raise self.unsupported(node, "legacy broadcast attribute")
        self._broadcast_check(node, list(node.input[:2]))
        for name in node.input[:2]:
            if name in self.consts and self.consts[name].dtype != np.float32:
                self.consts[name] = self.consts[name].astype(np.float32)
        self.emit(node, node.op_type, list(node.input[:2]), {})

    op_Add = op_Sub = op_Mul = op_Div = _binary

    def op_Sum(self, node: Any) -> None:
        inputs = [i for i in node.input if i]
        self._broadcast_check(node, inputs)
        if len(inputs) == 1:
            self.alias[node.output[0]] = self.alias.get(inputs[0], inputs[0])
            return
        self.emit(node, "Sum", inputs, {})

    def op_Concat(self, node: Any) -> None:
        rank = len(self.shape(node.input[0], node))
        axis = int(_attrs(node)["axis"])
        self.emit(node, "Concat", [i for i in node.input if i], {"axis": axis % rank})

    def op_Transpose(self, node: Any) -> None:
        rank = len(self.shape(node.input[0], node))
        perm = list(_attrs(node).get("perm", list(range(rank))[::-1]))
        self.emit(node, "Transpose", [node.input[0]], {"perm": perm})

    def _reshape(self, node: Any) -> None:
        out_shape = self.shape(node.output[0], node)
        if node.input[0] in self.consts:  # pragma: no cover - folded earlier
            raise ConversionError(f"node {node.name!r}: reshape of a constant was not folded")
        self.emit(node, "Reshape", [node.input[0]], {"shape": list(out_shape)})

    op_Reshape = op_Flatten = op_Squeeze = op_Unsqueeze = _reshape

    def _alias(self, node: Any) -> None:
        if node.op_type == "Dropout":
            self.check_outputs_used(node, 1)
        source = self.alias.get(node.input[0], node.input[0])
        self.alias[node.output[0]] = source

    op_Identity = op_Dropout = _alias

    def op_Pad(self, node: Any) -> None:
        attrs = _attrs(node)
        rank = len(self.shape(node.input[0], node))
        mode = _decode(attrs.get("mode", "constant"))
        if mode not in ("constant", "reflect", "edge"):
            raise self.unsupported(node, f"mode {mode!r}")
        if self.opset < 11:
            pads = [int(p) for p in attrs["pads"]]
            value = float(attrs.get("value", 0.0))
        else:
            pads = [int(p) for p in self.const(node.input[1], node, "pads")]
            value = 0.0
            if len(node.input) > 2 and node.input[2]:
                value = float(self.const(node.input[2], node, "constant_value"))
            if len(node.input) > 3 and node.input[3]:
                axes = [int(a) % rank for a in self.const(node.input[3], node, "axes")]
                full = [0] * (2 * rank)
                for k, axis in enumerate(axes):
                    full[axis], full[rank + axis] = pads[k], pads[len(axes) + k]
                pads = full
        if len(pads) != 2 * rank or min(pads) < 0:
            raise self.unsupported(node, f"pads {pads} (negative pads are crops)")
        self.emit(node, "Pad", [node.input[0]], {"pads": pads, "mode": mode, "value": value})

    def op_Gather(self, node: Any) -> None:
        """Gather with constant indices, as a MatMul with a constant one-hot selection matrix
        along ``axis`` (moved last and back with Transposes): picking by multiplying with 1 and
        adding 0s is exact for finite values. Indices that come from an integer graph input (an
        Embedding lookup) become the canonical Gather, which the executor range-checks."""
        data, indices = node.input[0], node.input[1]
        if indices not in self.consts:
            self._runtime_gather(node)
            return
        shape = self.shape(data, node)
        rank = len(shape)
        axis = int(_attrs(node).get("axis", 0)) % rank
        size = shape[axis]
        index = np.asarray(self.consts[indices]).astype(np.int64).reshape(-1)
        if index.size and (index.min() < -size or index.max() >= size):
            raise ConversionError(
                f"node {node.name!r} (Gather): indices outside [-{size}, {size}) on axis {axis}"
            )
        select = np.zeros((size, index.size), dtype=np.float32)
        select[index, np.arange(index.size)] = 1.0  # numpy wraps negative indices
        select_name = f"{node.name}.select"
        self.consts[select_name] = select
        source = self.ref(data)
        perm = [a for a in range(rank) if a != axis] + [axis]
        moved_shape = tuple(shape[a] for a in perm)
        if axis != rank - 1:
            moved = f"{node.name}.moved"
            self.extra_shapes[moved] = moved_shape
            self.append(Node(f"{node.name}.move", "Transpose", [source], [moved], {"perm": perm}))
            source = moved
        picked = f"{node.name}.picked"
        picked_shape = (*moved_shape[:-1], index.size)
        self.extra_shapes[picked] = picked_shape
        self.append(Node(node.name, "MatMul", [source, self.ref(select_name)], [picked], {}))
        if axis != rank - 1:
            back = [perm.index(a) for a in range(rank)]
            restored = f"{node.name}.restored"
            self.extra_shapes[restored] = tuple(picked_shape[a] for a in back)
            self.append(
                Node(f"{node.name}.unmove", "Transpose", [picked], [restored], {"perm": back})
            )
            picked = restored
        out_shape = self.shape(node.output[0], node)
        self.append(
            Node(
                f"{node.name}.shape",
                "Reshape",
                [picked],
                [node.output[0]],
                {"shape": list(out_shape)},
            )
        )

    def _runtime_gather(self, node: Any) -> None:
        """A Gather whose indices are an integer graph input, read as they arrive."""
        data, indices = node.input[0], node.input[1]
        graph_inputs = {v.name for v in self.model.graph.input}
        if self.alias.get(indices, indices) not in graph_inputs:
            raise self.unsupported(
                node,
                f"indices {indices!r} computed at run time; flight gathers by constant indices "
                "or by an integer graph input (an Embedding lookup)",
            )
        shape = self.shape(data, node)
        axis = int(_attrs(node).get("axis", 0)) % len(shape)
        if shape[axis] > shapes.MAX_GATHER_ROWS:
            raise self.unsupported(
                node,
                f"a table of {shape[axis]} entries along axis {axis}; indices travel as exact "
                f"float32, so at most {shapes.MAX_GATHER_ROWS} (2**24)",
            )
        self.emit(node, "Gather", [data, indices], {"axis": axis})

    def op_Softmax(self, node: Any) -> None:
        shape = self.shape(node.input[0], node)
        rank = len(shape)
        default = -1 if self.opset >= 13 else 1
        axis = int(_attrs(node).get("axis", default)) % rank
        if self.opset >= 13 or axis == rank - 1:
            self.emit(node, "Softmax", [node.input[0]], {"axis": axis})
            return
        # Before opset 13, Softmax flattens to 2-D at `axis` and normalises over all trailing
        # dimensions: make that explicit so the executor knows one Softmax only.
        rows = int(np.prod(shape[:axis], dtype=np.int64))
        flat_shape = (rows, int(np.prod(shape, dtype=np.int64)) // max(rows, 1))
        flat_in, flat_out = f"{node.name}.flat_in", f"{node.name}.flat_out"
        self.extra_shapes[flat_in] = self.extra_shapes[flat_out] = flat_shape
        source = self.ref(node.input[0])
        self.append(
            Node(
                f"{node.name}.flatten", "Reshape", [source], [flat_in], {"shape": list(flat_shape)}
            )
        )
        self.append(Node(node.name, "Softmax", [flat_in], [flat_out], {"axis": 1}))
        self.append(
            Node(
                f"{node.name}.unflatten",
                "Reshape",
                [flat_out],
                [node.output[0]],
                {"shape": list(shape)},
            )
        )

    def op_LRN(self, node: Any) -> None:
        attrs = _attrs(node)
        self.emit(
            node,
            "LRN",
            [node.input[0]],
            {
                "size": int(attrs["size"]),
                "alpha": float(attrs.get("alpha", 1e-4)),
                "beta": float(attrs.get("beta", 0.75)),
                "bias": float(attrs.get("bias", 1.0)),
            },
        )


def convert_onnx(
    source: Any,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    *,
    fold_batchnorm: bool = True,
    fuse_activations: bool = True,
    keep_inputs: Iterable[str] = (),
    limits: Limits | None = None,
) -> Graph:
    """Convert an ONNX model (path, bytes-like file, or ModelProto) to flight's canonical graph.

    A graph input that also has an initializer (every weight, in IR < 4 files) is a constant,
    unless its name is in ``keep_inputs``: then it stays an input the caller feeds.
    The weights must fit the ``.flm`` ``limits`` (:class:`~flight.model.format.Limits`, default
    ``DEFAULT_LIMITS``), checked here so a too-big model is refused before anything is written
    (``ModelLimitError``).
    """
    from flight.model.format import DEFAULT_LIMITS, check_tensors

    onnx = _onnx()
    model = _load(source)
    # before the checker: an IR 3 file upgraded to a later opset has initializers (Pad's pads,
    # ...) that are not graph inputs, which IR 3 forbids and IR 4 allows
    _resolve_initializer_inputs(model, frozenset(keep_inputs))
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ConversionError(f"invalid ONNX model: {exc}") from exc
    opset = _opset_of(model)
    _fix_input_shapes(model, dict(input_shapes or {}))

    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    _fold_constants(model, opset, consts)
    converter = _Converter(model, opset, consts)
    converter.run()

    initializers = set(consts)
    inputs = [
        (v.name, converter.shape(v.name, v))
        for v in model.graph.input
        if v.name not in initializers
    ]
    outputs = []
    for value in model.graph.output:
        name = converter.alias.get(value.name, value.name)
        if name in consts or name in {n for n, _ in inputs}:
            node = _producer(model, value.name) or (model.graph.node or [None])[0]
            what = f"graph output {value.name!r} is a constant or a graph input; nothing to run"
            if node is None:
                raise ConversionError(what)
            raise converter.unsupported(node, f"{what} (the graph computes nothing)")
        if name != value.name:  # the output came out of an Identity/Dropout: rename producer
            for node in converter.nodes:
                node.outputs = [value.name if o == name else o for o in node.outputs]
                node.inputs = [value.name if i == name else i for i in node.inputs]
        outputs.append((value.name, converter.shape(value.name, value)))

    for name, (shape, elem) in converter.info.items():
        produced = any(name in n.outputs for n in converter.nodes)
        if name not in consts and elem not in (0, 1) and shape is not None and produced:
            what = (
                f"tensor {name!r} has element type {onnx.TensorProto.DataType.Name(elem)}; "
                "flight computes in float32 only"
            )
            node = _producer(model, name)
            raise converter.unsupported(node, what) if node else ConversionError(what)
    input_dtypes = {}
    for name, _ in inputs:
        elem = converter.info.get(name, (None, 1))[1]
        if elem == 1:
            continue
        readers = [n for n in converter.nodes if name in n.inputs]
        if elem in _INDEX_DTYPES and all(
            n.op == "Gather" and n.inputs.index(name) == 1 and n.inputs.count(name) == 1
            for n in readers
        ):
            input_dtypes[name] = _INDEX_DTYPES[elem]
            continue
        what = (
            f"input {name!r} has element type {onnx.TensorProto.DataType.Name(elem)}; flight "
            "takes float32 inputs, and int32 / int64 ones only as Gather indices"
        )
        node = _consumer(model, name)
        raise converter.unsupported(node, what) if node else ConversionError(what)

    tensors = {
        name: np.ascontiguousarray(value.astype(np.float32) if value.dtype == np.float64 else value)
        for name, value in consts.items()
        if name in converter.used_consts
    }
    graph = Graph(
        name=model.graph.name or "model",
        inputs=inputs,
        outputs=outputs,
        nodes=converter.nodes,
        shapes={},
        tensors=tensors,
        input_dtypes=input_dtypes,
        metadata={
            **{p.key: p.value for p in model.metadata_props},
            "onnx_opset": str(opset),
            "onnx_producer": f"{model.producer_name} {model.producer_version}".strip(),
        },
    )
    if fold_batchnorm:
        rewrite.fold_batchnorm(graph)
    if fuse_activations:
        rewrite.fuse_activations(graph)
    rewrite.prune(graph)
    check_tensors(graph.tensors, DEFAULT_LIMITS if limits is None else limits)
    for node in graph.nodes:
        for name in node.inputs:
            if name and name in graph.tensors and graph.tensors[name].dtype != np.float32:
                raise UnsupportedOpError(
                    f"op {node.op} (node {node.name!r}) is not supported: it reads {name!r} of "
                    f"dtype {graph.tensors[name].dtype}; flight computes in float32 only"
                )
    shapes: dict[str, tuple[int, ...]] = dict(inputs)
    for node in graph.nodes:
        fake = _FakeNode(node)
        shapes[node.outputs[0]] = converter.shape(node.outputs[0], fake)
    graph.shapes = shapes
    return graph


@dataclass
class _FakeNode:
    """Adapter so that error messages can name canonical nodes like ONNX ones."""

    node: Node

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def op_type(self) -> str:
        return self.node.op
