"""Build flight/data/warmup.flm: one small model that uses every canonical op.

``flight cache build DIR`` runs it (and the demo model) on every replica so that numba compiles,
and caches, each kernel with the exact argument types the executor passes. Regenerate with
``python tools/make_warmup_model.py`` (needs the onnx extra) whenever an op is added; the test
suite checks the shipped file covers every op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from flight.model import io
from flight.model.graph import Graph, Node
from flight.model.onnx_import import convert_onnx

OUT = Path(__file__).resolve().parent.parent / "flight" / "data" / "warmup.flm"


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits: list[onnx.TensorProto] = []

    def const(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
        return name

    def n(op: str, inputs: list[str], out: str, **attrs) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [out], name=out, **attrs)

    var = numpy_helper.from_array((rng.random(8) + 0.5).astype(np.float32), "bn_v")
    inits.append(var)
    nodes = [
        n("Conv", ["x", const("w1", 8, 4, 3, 3), const("b1", 8)], "c1", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], "r1"),  # fused into c1
        n("Conv", ["r1", const("w2", 8, 1, 3, 3)], "c2", pads=[1, 1, 1, 1], group=8),
        n("Conv", ["c2", const("w3", 8, 8, 3, 3)], "c3", pads=[0, 0, 1, 1], strides=[2, 2]),
        n(
            "BatchNormalization",
            ["c3", const("bn_s", 8), const("bn_b", 8), const("bn_m", 8), "bn_v"],
            "bn",
        ),  # folded
        n("Clip", ["bn", "lo", "hi"], "clip"),  # fused
        n("MaxPool", ["clip"], "mp", kernel_shape=[2, 2], strides=[1, 1]),
        n("AveragePool", ["mp"], "ap", kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
        n(
            "BatchNormalization",
            ["ap", const("bn2_s", 8), const("bn2_b", 8), const("bn2_m", 8), "bn_v"],
            "bn2",
        ),  # standalone: AveragePool is not foldable
        n("LeakyRelu", ["bn2"], "lr", alpha=0.1),
        n("Sigmoid", ["lr"], "sg"),
        n("Tanh", ["lr"], "th"),
        n("Add", ["sg", const("k1", 8, 1, 1)], "add"),
        n("Sub", ["add", "th"], "sub"),
        n("Mul", ["sub", const("k2", 1)], "mul"),
        n("Div", ["mul", const("k3", 1, 8, 1, 1)], "div"),
        n("Sum", ["div", "sg", "th"], "sum"),
        n("Relu", ["sum"], "relu"),
        n("Clip", ["relu", "lo", "hi"], "clip2"),
        n("Concat", ["clip2", "sg"], "cat", axis=1),
        n("Transpose", ["cat"], "tr", perm=[0, 1, 3, 2]),
        n("Pad", ["tr", "pads_c"], "pad_c", mode="constant"),
        n("Pad", ["pad_c", "pads_r"], "pad_r", mode="reflect"),
        n("Pad", ["pad_r", "pads_r"], "pad_e", mode="edge"),
        n("LRN", ["pad_e"], "lrn", size=3),
        n("GlobalAveragePool", ["lrn"], "gap"),
        n("Flatten", ["gap"], "flat"),
        n("Gemm", ["flat", const("g", 10, 16), const("gb", 10)], "gemm", transB=1),
        n("Sigmoid", ["gemm"], "gs"),
        n("MatMul", ["gs", const("mm", 10, 10)], "mm_out"),
        n("Softmax", ["mm_out"], "y", axis=-1),
        # 3-D Conv and pooling (their own kernels), on the input seen as a volume
        n("Reshape", ["x", "vol_shape"], "vol"),
        n("Conv", ["vol", const("w3d", 2, 4, 3, 3, 3), const("b3d", 2)], "c3d", pads=[1] * 6),
        n("Relu", ["c3d"], "r3d"),  # fused
        n("MaxPool", ["r3d"], "mp3d", kernel_shape=[2, 2, 2], strides=[1, 1, 1]),
        n("AveragePool", ["mp3d"], "y3d", kernel_shape=[2, 2, 2], pads=[1, 1, 1, 1, 1, 1]),
    ]
    inits.append(numpy_helper.from_array(np.array([1, 4, 4, 4, 4], np.int64), "vol_shape"))
    for name, pads in (("pads_c", [0, 0, 1, 1, 0, 0, 1, 1]), ("pads_r", [0, 0, 1, 1, 0, 0, 0, 1])):
        inits.append(numpy_helper.from_array(np.array(pads, np.int64), name))
    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "lo"))
    inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "hi"))
    graph = helper.make_graph(
        nodes,
        "warmup",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10]),
            helper.make_tensor_value_info("y3d", TensorProto.FLOAT, [1, 2, 4, 4, 4]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    return model


def add_gather(graph: Graph) -> None:
    """Gather by run-time indices, which ONNX only gets from an integer graph input (an
    Embedding). The warm-up feeds one float32 input, so the indices here are an activation
    clipped to exactly 0 (canonical Gather reads any float32 indices): row 0 of a table."""
    table = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    graph.tensors["emb_table"] = table
    graph.nodes += [
        Node("zeros", "Clip", ["gs"], ["zeros"], {"min": 0.0, "max": 0.0}),
        Node("emb", "Gather", ["emb_table", "zeros"], ["emb"], {"axis": 0}),
    ]
    graph.shapes["zeros"] = graph.shapes["gs"]
    graph.shapes["emb"] = (*graph.shapes["gs"], 3)
    graph.outputs.append(("emb", graph.shapes["emb"]))


def main() -> None:
    graph = convert_onnx(build())
    add_gather(graph)
    io.save(graph, OUT, producer="tools/make_warmup_model.py")
    print(f"wrote {OUT} with ops {sorted(graph.ops())}")


if __name__ == "__main__":
    main()
