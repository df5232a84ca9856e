"""flight's own graph rewrites: canonical graph in, smaller canonical graph out (same results).

They run after ONNX translation (:func:`flight.model.onnx_import.convert_onnx`) but know nothing
of ONNX, so they are tested on graphs built directly. Each rewrites the graph in place and keeps
it canonical: the executor checks the result like any other graph.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from flight.model.graph import Graph, Node
from flight.model.shapes import ACTIVATIONS

__all__ = ["FUSABLE", "fold_batchnorm", "fuse_activations", "prune"]

#: Standalone activations a Conv or Gemm can take over (its ``activation`` attribute).
FUSABLE = frozenset(ACTIVATIONS) - {""}


def _consumers(nodes: list[Node]) -> Counter:
    return Counter(i for n in nodes for i in n.inputs if i)


def fold_batchnorm(graph: Graph) -> None:
    """BatchNormalization after a Conv/Gemm whose output only it reads: fold into the weights."""
    graph_outputs = {name for name, _ in graph.outputs}
    while True:
        consumers = _consumers(graph.nodes)
        producer = {n.outputs[0]: n for n in graph.nodes}
        for bn in graph.nodes:
            if bn.op != "BatchNormalization":
                continue
            prev = producer.get(bn.inputs[0])
            if (
                prev is None
                or prev.op not in ("Conv", "Gemm")
                or consumers[prev.outputs[0]] != 1
                or prev.outputs[0] in graph_outputs
                or prev.attrs["activation"]
                or (prev.op == "Gemm" and prev.attrs["transA"])
                or any(i and i not in graph.tensors for i in prev.inputs[1:])
            ):
                continue
            scale, shift, mean, var = (graph.tensors[n].astype(np.float64) for n in bn.inputs[1:5])
            factor = scale / np.sqrt(var + bn.attrs["epsilon"])
            weight = graph.tensors[prev.inputs[1]].astype(np.float64)
            if prev.op == "Conv":
                new_w = weight * factor.reshape(-1, *[1] * (weight.ndim - 1))  # 2-D or 3-D
                out_channels = weight.shape[0]
            else:
                alpha = prev.attrs["alpha"]
                if prev.attrs["transB"]:
                    new_w = weight * factor[:, None]
                else:
                    new_w = weight * factor[None, :]
                out_channels = factor.size
                new_w = new_w * alpha
                prev.attrs["alpha"] = 1.0
            bias_name = prev.inputs[2]
            bias = np.zeros(out_channels) if not bias_name else graph.tensors[bias_name]
            if prev.op == "Gemm":
                bias = np.broadcast_to(
                    bias.astype(np.float64) * prev.attrs["beta"], (out_channels,)
                )
                prev.attrs["beta"] = 1.0
            new_b = (bias.astype(np.float64) - mean) * factor + shift
            w_name, b_name = f"{prev.name}.weight_bn", f"{prev.name}.bias_bn"
            graph.tensors[w_name] = new_w.astype(np.float32)
            graph.tensors[b_name] = new_b.astype(np.float32)
            prev.inputs[1], prev.inputs[2] = w_name, b_name
            prev.outputs[0] = bn.outputs[0]
            graph.nodes.remove(bn)
            break
        else:
            return


def fuse_activations(graph: Graph) -> None:
    """Relu / LeakyRelu / Clip after a Conv/Gemm whose output only it reads: fuse it into the
    Conv/Gemm (the kernels apply it while the tile is in registers)."""
    graph_outputs = {name for name, _ in graph.outputs}
    consumers = _consumers(graph.nodes)
    producer = {n.outputs[0]: n for n in graph.nodes}
    for act in list(graph.nodes):
        if act.op not in FUSABLE:
            continue
        prev = producer.get(act.inputs[0])
        if (
            prev is None
            or prev.op not in ("Conv", "Gemm")
            or prev.attrs["activation"]
            or consumers[prev.outputs[0]] != 1
            or prev.outputs[0] in graph_outputs
        ):
            continue
        prev.attrs["activation"] = act.op
        if act.op == "LeakyRelu":
            prev.attrs["activation_alpha"] = act.attrs["alpha"]
        elif act.op == "Clip":
            prev.attrs["activation_alpha"] = act.attrs["min"]
            prev.attrs["activation_beta"] = act.attrs["max"]
        del producer[prev.outputs[0]]
        prev.outputs[0] = act.outputs[0]
        producer[prev.outputs[0]] = prev
        graph.nodes.remove(act)


def prune(graph: Graph) -> None:
    """Drop nodes nothing needs and tensors no node reads."""
    needed = {name for name, _ in graph.outputs}
    kept: list[Node] = []
    for node in reversed(graph.nodes):
        if node.outputs[0] in needed:
            kept.append(node)
            needed.update(i for i in node.inputs if i)
    graph.nodes = kept[::-1]
    used = {i for n in graph.nodes for i in n.inputs if i}
    graph.tensors = {k: v for k, v in graph.tensors.items() if k in used}
