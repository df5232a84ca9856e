"""ONNX models built with random weights: single ops and whole networks.

Built with onnx.helper (no exporter, no download), in the opset the caller asks for, so the same
network can be checked across opsets 9..current. Shared by the converter tests
(tests/model_exec, through their conftest) and the benchmarks (tools/bench.py); lives in tools/
because tools never import tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """A tiny helper that names tensors, adds initializers and builds an ONNX model."""

    def __init__(self, opset: int, seed: int = 0) -> None:
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, array: np.ndarray, prefix: str = "w") -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, *shape: int, scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        scale = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
        return self.const((self.rng.standard_normal(shape) * scale).astype(np.float32))

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> str:
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(op + "_"), **attrs))
        return outs[0]

    # layers
    def conv(self, x, c_in, c_out, k, stride=1, pad=None, group=1, bias=True, dilation=1):
        pad = k // 2 if pad is None else pad
        inputs = [x, self.weight(c_out, c_in // group, k, k)]
        if bias:
            inputs.append(self.const((self.rng.standard_normal(c_out) * 0.1).astype(np.float32)))
        return self.node(
            "Conv",
            inputs,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            group=group,
            dilations=[dilation, dilation],
        )

    def bn(self, x, c):
        r = self.rng
        params = [
            (r.random(c) + 0.5).astype(np.float32),
            (r.standard_normal(c) * 0.1).astype(np.float32),
            (r.standard_normal(c) * 0.1).astype(np.float32),
            (r.random(c) + 0.5).astype(np.float32),
        ]
        return self.node("BatchNormalization", [x, *map(self.const, params)], epsilon=1e-5)

    def relu(self, x):
        return self.node("Relu", [x])

    def relu6(self, x):
        if self.opset < 11:
            return self.node("Clip", [x], min=0.0, max=6.0)
        lo = self.const(np.array(0.0, np.float32))
        hi = self.const(np.array(6.0, np.float32))
        return self.node("Clip", [x, lo, hi])

    def flatten_via_shape(self, x):
        """The exporter idiom: Reshape(x, Concat(Gather(Shape(x), 0), [-1]))."""
        shape = self.node("Shape", [x])
        n = self.node("Gather", [shape, self.const(np.array(0, np.int64))], axis=0)
        if self.opset >= 13:
            n1 = self.node("Unsqueeze", [n, self.const(np.array([0], np.int64))])
        else:
            n1 = self.node("Unsqueeze", [n], axes=[0])
        target = self.node("Concat", [n1, self.const(np.array([-1], np.int64))], axis=0)
        return self.node("Reshape", [x, target])

    def gemm(self, x, f_in, f_out):
        w = self.weight(f_out, f_in)
        b = self.const((self.rng.standard_normal(f_out) * 0.1).astype(np.float32))
        return self.node("Gemm", [x, w, b], transB=1)

    def build(self, x_shape, out_name, out_shape, input_name="x") -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "test",
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(x_shape))],
            [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(out_shape))],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 7 if self.opset <= 15 else 8
        onnx.checker.check_model(model, full_check=True)
        return model


def resnet18(opset: int = 13, size: int = 224, seed: int = 0) -> onnx.ModelProto:
    """ResNet-18 topology (torchvision layout) with random weights and BN."""
    g = GraphBuilder(opset, seed)
    x = g.relu(g.bn(g.conv("x", 3, 64, 7, stride=2, pad=3, bias=False), 64))
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            y = g.relu(g.bn(g.conv(x, c_in, c_out, 3, stride=s, bias=False), c_out))
            y = g.bn(g.conv(y, c_out, c_out, 3, bias=False), c_out)
            if s != 1 or c_in != c_out:
                x = g.bn(g.conv(x, c_in, c_out, 1, stride=s, pad=0, bias=False), c_out)
            x = g.relu(g.node("Add", [y, x]))
            c_in = c_out
    x = g.node("GlobalAveragePool", [x])
    x = g.flatten_via_shape(x)
    out = g.gemm(x, 512, 1000)
    return g.build([1, 3, size, size], out, [1, 1000])


def mobilenet_v2_like(opset: int = 13, size: int = 224, seed: int = 1) -> onnx.ModelProto:
    """MobileNetV2 inverted residual blocks: 1x1 expand, depthwise 3x3, Relu6, residual Add."""
    g = GraphBuilder(opset, seed)
    x = g.relu6(g.bn(g.conv("x", 3, 32, 3, stride=2, bias=False), 32))
    c_in = 32
    settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 2, 2),
        (6, 96, 1, 1),
        (6, 160, 2, 2),
        (6, 320, 1, 1),
    ]
    for expand, c_out, repeats, stride in settings:
        for i in range(repeats):
            s = stride if i == 0 else 1
            hidden = c_in * expand
            y = x
            if expand != 1:
                y = g.relu6(g.bn(g.conv(y, c_in, hidden, 1, pad=0, bias=False), hidden))
            y = g.relu6(
                g.bn(g.conv(y, hidden, hidden, 3, stride=s, group=hidden, bias=False), hidden)
            )
            y = g.bn(g.conv(y, hidden, c_out, 1, pad=0, bias=False), c_out)
            x = g.node("Add", [x, y]) if s == 1 and c_in == c_out else y
            c_in = c_out
    x = g.relu6(g.bn(g.conv(x, c_in, 1280, 1, pad=0, bias=False), 1280))
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x], axis=1)
    out = g.node("Softmax", [g.gemm(x, 1280, 1000)], axis=1)
    return g.build([1, 3, size, size], out, [1, 1000])


def squeezenet_like(opset: int = 13, size: int = 224, seed: int = 2) -> onnx.ModelProto:
    """SqueezeNet 1.1 fire modules: squeeze 1x1, expand 1x1 and 3x3, Concat; ceil_mode pools."""
    g = GraphBuilder(opset, seed)
    x = g.relu(g.conv("x", 3, 64, 3, stride=2, pad=0))
    pool = {"kernel_shape": [3, 3], "strides": [2, 2]}
    if opset >= 10:
        pool["ceil_mode"] = 1
    x = g.node("MaxPool", [x], **pool)
    c_in = 64
    for i, (sq, ex) in enumerate(
        [(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256)]
    ):
        s = g.relu(g.conv(x, c_in, sq, 1, pad=0))
        e1 = g.relu(g.conv(s, sq, ex, 1, pad=0))
        e3 = g.relu(g.conv(s, sq, ex, 3, pad=1))
        x = g.node("Concat", [e1, e3], axis=1)
        c_in = 2 * ex
        if i in (1, 3):
            x = g.node("MaxPool", [x], **pool)
    x = g.node("Dropout", [x])
    x = g.relu(g.conv(x, c_in, 1000, 1, pad=0))
    x = g.node("GlobalAveragePool", [x])
    out = g.node("Flatten", [x], axis=1)
    return g.build([1, 3, size, size], out, [1, 1000])


def ort_run(model: onnx.ModelProto, feeds: np.ndarray | dict) -> np.ndarray:
    """onnxruntime on the CPU with one thread: the reference the tests compare against."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    if not isinstance(feeds, dict):
        feeds = {session.get_inputs()[0].name: feeds}
    return session.run(None, feeds)[0]


#: The onnx package's light model-zoo networks (IR 3, weights as ConstantOfShape placeholders).
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def light_model(name: str, seed: int = 0) -> onnx.ModelProto:
    """The light model ``name`` with its ConstantOfShape(0.02) weights replaced by seeded random
    initializers (He-scaled; biases and BatchNormalization parameters near 1), each also listed
    as a graph input: the IR 3 layout, with outputs that show a wrong conversion (the shipped
    weights make every logit equal)."""
    model = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    rng = np.random.default_rng(seed)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            kept.append(node)
            continue
        shape = tuple(int(d) for d in inits[node.input[0]])
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        else:
            value = rng.uniform(0.5, 1.5, shape)
        out = node.output[0]
        model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), out))
        model.graph.input.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, shape))
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model
