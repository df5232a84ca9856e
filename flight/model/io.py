"""Between the canonical graph and the ``.flm`` file: save, load, and load-to-run.

:func:`load` is what a board calls: read and fully validate the file (CRCs, limits, schema,
graph; :mod:`flight.model.format`), accept only flight's canonical ops, and build a
:class:`~flight.model.executor.Model` whose weights sit in protected memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from flight.model import format as flm
from flight.model.graph import Graph, Node
from flight.model.ops import OPS

__all__ = ["PRODUCER", "from_model_file", "load", "load_graph", "save", "to_model_file"]

PRODUCER = "flight 0.1"


def to_model_file(graph: Graph, producer: str = PRODUCER) -> flm.ModelFile:
    """The file form of a canonical graph (every activation's static shape in value_info)."""

    def info(name: str, shape: tuple[int, ...]) -> flm.ValueInfo:
        dtype = graph.input_dtypes.get(name, "float32")
        return flm.ValueInfo(name, dtype, tuple(int(d) for d in shape))

    graph_def = flm.GraphDef(
        name=graph.name,
        inputs=tuple(info(n, s) for n, s in graph.inputs),
        outputs=tuple(info(n, s) for n, s in graph.outputs),
        nodes=tuple(
            flm.NodeDef(n.name, n.op, tuple(n.inputs), tuple(n.outputs), dict(n.attrs))
            for n in graph.nodes
        ),
        value_info={name: info(name, shape) for name, shape in graph.shapes.items()},
    )
    return flm.ModelFile(
        graph=graph_def,
        tensors=dict(graph.tensors),
        metadata=dict(graph.metadata),
        producer=producer,
    )


def from_model_file(model: flm.ModelFile) -> Graph:
    """The canonical graph of a loaded file, nodes in execution order."""
    graph_def = model.graph
    order = flm.topological_order(graph_def)
    nodes = [graph_def.nodes[i] for i in order]
    return Graph(
        name=graph_def.name,
        inputs=[(v.name, tuple(v.shape)) for v in graph_def.inputs],
        outputs=[(v.name, tuple(v.shape)) for v in graph_def.outputs],
        nodes=[Node(n.name, n.op, list(n.inputs), list(n.outputs), dict(n.attrs)) for n in nodes],
        shapes={name: tuple(v.shape) for name, v in graph_def.value_info.items()},
        tensors=dict(model.tensors),
        metadata=dict(model.metadata),
        input_dtypes={v.name: v.dtype for v in graph_def.inputs if v.dtype != "float32"},
    )


def save(
    graph: Graph,
    target: str | os.PathLike[str],
    producer: str = PRODUCER,
    *,
    limits: flm.Limits = flm.DEFAULT_LIMITS,
) -> None:
    """Write a canonical graph as a ``.flm`` file (atomically), loadable under ``limits``."""
    flm.save(target, to_model_file(graph, producer), allowed_ops=OPS, limits=limits)


def load_graph(source: Any, *, limits: flm.Limits = flm.DEFAULT_LIMITS) -> Graph:
    """Read and validate a ``.flm`` file; only flight's canonical ops are accepted."""
    return from_model_file(flm.load(source, allowed_ops=OPS, limits=limits))


def load(
    source: Any,
    *,
    copies: int = 3,
    block_size: int = 4096,
    pinned: tuple[str, ...] = (),
    allocate: Any = None,
    region_name: str | None = None,
    limits: flm.Limits = flm.DEFAULT_LIMITS,
):
    """Load a ``.flm`` file into a runnable :class:`~flight.model.executor.Model`
    (``allocate`` places weights and arenas, e.g. in shared memory; see Model). ``limits``
    bounds the file (:class:`~flight.model.format.Limits`; raise them for big models).

    From a path, the model owns what the loader read: each weight goes from the file's buffer
    into protected memory and its pages are given back as it goes, and the golden tensors a
    reload needs are read back from the file when needed (CRC-checked), so loading needs about
    the weights' copies in memory, not the file on top (docs/models.md, "Large models and
    memory"). From bytes or a file object, the model references the graph's tensors."""
    from flight.model.executor import Model

    loaded = flm.load_file(source, allowed_ops=OPS, limits=limits)
    graph = from_model_file(loaded.model)
    golden = release = None
    if isinstance(source, str | os.PathLike):
        golden = _file_golden(os.path.abspath(source), loaded, graph, limits)
        release = loaded.release
    del loaded
    return Model(
        graph,
        copies=copies,
        block_size=block_size,
        pinned=pinned,
        allocate=allocate,
        region_name=region_name,
        golden=golden,
        release=release,
    )


def _file_golden(
    path: str, loaded: flm.LoadedFile, graph: Graph, limits: flm.Limits
) -> Callable[[str], np.ndarray]:
    """Golden tensors read back from the file, one at a time and proven by their CRC; the few
    too small to have a location (under 16 bytes) are kept."""
    locations = loaded.locations
    kept = {name: t for name, t in graph.tensors.items() if name not in locations}

    def golden(name: str) -> np.ndarray:
        if name in kept:
            return kept[name]
        return flm.read_tensor(path, locations[name], limits)

    return golden
