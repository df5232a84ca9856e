"""The executor: a canonical graph made ready to fly, with weights in protected memory.

:class:`Model` prepares once what every inference reuses:

* the **executable weights** (Conv weights pre-packed for the GEMM micro-kernel, everything
  else as stored) laid out in one float32 image, kept in a :class:`~flight.memory.ProtectedRegion`
  with one copy per replica, so the scrubber protects exactly the bytes the kernels read;
* a **static memory plan** (:mod:`flight.model.plan`): every activation has a fixed place in one
  arena, and nothing is allocated per inference;
* the scratch workspace size of the hungriest node.

:meth:`Model.replica` gives a :class:`Replica`: it computes with weight copy ``i`` and owns its
arena and workspace, so replicas share nothing writable. Replicas run the same compiled code
on the same inputs, one thread each, and give bit-identical outputs.

Named activations can be read and written between nodes through ``after`` hooks
(vote points with write-back, fault injection) or :meth:`Replica.buffer`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from flight import errors
from flight.crc import crc32c
from flight.memory import ProtectedRegion
from flight.model import ops
from flight.model.graph import Graph, Node
from flight.model.plan import MemoryPlan, lifetimes, plan
from flight.model.shapes import MAX_GATHER_ROWS

__all__ = ["Model", "ModelError", "ModelInputError", "Replica"]

_ALIGN_ELEMS = 16  # 64 bytes
#: Graph input dtypes besides float32: Gather indices, carried inside as exact float32.
INDEX_DTYPES = ("int32", "int64")


class ModelError(errors.FlightError, ValueError):
    """A graph the executor cannot run (bad shapes, unknown op, unknown tensor names...)."""


class ModelInputError(ModelError):
    """An input the model cannot take: missing, wrong shape or dtype kind, an index out of its
    table. Raised before any node runs."""


def _kernels() -> Any:
    """The kernels; imported on first use (numba is heavy), after the JIT cache is set."""
    from flight import jitcache

    jitcache.configure()
    import flight.kernels as kernels

    return kernels


def _nelems(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


#: 4 MiB: the slice a weight is stored by (and its source released by, when the model owns it)
_STORE_ELEMS = 1 << 20


def _executable(tensor: np.ndarray) -> np.ndarray:
    """A graph tensor as the kernels read it: C-ordered float32 (no copy if it already is)."""
    return np.ascontiguousarray(tensor, dtype=np.float32)


def _kept_tensors(
    graph: Graph, recipes: Mapping[str, tuple[str, int | None]]
) -> Callable[[str], np.ndarray]:
    """The default golden source: the graph's weight arrays themselves, referenced here so that
    replacing an entry of ``graph.tensors`` later does not change what a reload writes."""
    return {source: graph.tensors[source] for source, _ in recipes.values()}.__getitem__


@dataclass
class _Step:
    node: Node
    fn: Callable[..., None]
    inputs: list[str]
    attrs: dict[str, Any]


@dataclass
class WeightLayout:
    """Where each executable weight tensor lives in the weight image (float32 elements)."""

    offsets: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)
    elements: int = 0

    def add(self, name: str, shape: tuple[int, ...]) -> int:
        offset = -(-self.elements // _ALIGN_ELEMS) * _ALIGN_ELEMS
        self.offsets[name] = (offset, shape)
        self.elements = offset + _nelems(shape)
        return offset


class Model:
    """A canonical graph with protected weights, a memory plan and per-replica executors."""

    def __init__(
        self,
        graph: Graph,
        *,
        copies: int = 3,
        block_size: int = 4096,
        pinned: tuple[str, ...] = (),
        allocate: Callable[[int], np.ndarray] | None = None,
        region_name: str | None = None,
        golden: Callable[[str], np.ndarray] | None = None,
        release: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        """``allocate(nbytes) -> uint8 array`` places the weight copies and the replicas'
        arenas (e.g. in memory shared with forked partitions); default: private memory.
        ``region_name`` names the weights' protected region (default ``weights:<graph>``;
        two partitions running the same model need different names).

        ``golden(name)`` returns graph tensor ``name`` as stored, for :meth:`reload_blocks`
        (e.g. read back from the model file); default: the graph's tensor arrays, referenced.
        ``release`` hands the graph's tensors to the model (:func:`flight.model.io.load` does,
        for a graph it built from a file): once a float32 tensor is in protected memory, its
        entry in ``graph.tensors`` becomes a read-only view of weight copy 0 and
        ``release(part)`` is called on each stored part of the old array (which gives the
        memory back), so loading needs about one file size less. It needs ``golden``."""
        if release is not None and golden is None:
            raise ModelError("a model that releases the graph's tensors needs a golden source")
        kernels = _kernels()
        self._allocate = allocate
        self.graph = graph
        self._check(graph)
        self.input_names = [name for name, _ in graph.inputs]
        self.output_names = [name for name, _ in graph.outputs]
        self.shapes = dict(graph.shapes)
        for name, shape in [*graph.inputs, *graph.outputs]:
            self.shapes[name] = tuple(shape)

        # Executable weights: pack Conv weights once; the packed form is what flies. Each
        # executable tensor is made from one graph tensor (``recipes``: name -> (tensor, group
        # when packed)), and goes straight into its place in protected memory.
        self.node_attrs: list[dict[str, Any]] = []
        self.node_inputs: list[list[str]] = []
        recipes: dict[str, tuple[str, int | None]] = {}
        for node in graph.nodes:
            attrs = dict(node.attrs)
            inputs = list(node.inputs)
            if node.op == "Conv" and self._packable(node, graph):
                group = int(attrs.get("group", 1))
                packed_name = f"{inputs[1]}@packed{group}"
                recipes.setdefault(packed_name, (inputs[1], group))
                inputs[1] = packed_name
                attrs["packed"] = True
            for name in inputs:
                if name and name in graph.tensors and name not in recipes:
                    recipes[name] = (name, None)
            self.node_attrs.append(attrs)
            self.node_inputs.append(inputs)
        self._recipes = recipes
        self._golden = golden or _kept_tensors(graph, recipes)

        packed = {
            name: kernels.pack_conv_weights(_executable(graph.tensors[source]), group)
            for name, (source, group) in recipes.items()
            if group is not None
        }
        self.layout = WeightLayout()
        for name, (source, _) in recipes.items():
            shape = packed[name].shape if name in packed else graph.tensors[source].shape
            self.layout.add(name, shape)
        #: The executable weights, one copy per replica, CRC per block: what the scrubber walks.
        self.weights = ProtectedRegion.zeros(
            region_name or f"weights:{graph.name}",
            (max(self.layout.elements, 1),),
            np.float32,
            copies=copies,
            block_size=block_size,
            allocate=allocate,
        )
        for name, (source, group) in recipes.items():
            offset, shape = self.layout.offsets[name]
            if group is not None:
                self._store(offset, packed.pop(name), None)
                continue
            tensor = graph.tensors[source]
            owned = release is not None and tensor.dtype == np.float32
            self._store(offset, _executable(tensor), release if owned else None)
            if owned:  # the same values, now in protected memory: the file's copy can go
                stored = self.weights.copy(0)[offset : offset + tensor.size]
                graph.tensors[source] = stored.reshape(shape)
            del tensor

        # Static memory plan over every activation (graph inputs included).
        sizes = {name: 4 * _nelems(self.shapes[name]) for name in self.shapes}
        weights = self.layout.offsets.keys() | graph.tensors.keys()
        sizes = {k: v for k, v in sizes.items() if k not in weights}
        self.pinned = tuple(dict.fromkeys([*self.output_names, *pinned]))
        for name in self.pinned:
            if name not in sizes:
                raise ModelError(f"cannot pin {name!r}: not an activation of {graph.name!r}")
        order = [
            (inputs, node.outputs)
            for inputs, node in zip(self.node_inputs, graph.nodes, strict=True)
        ]
        self.lives = lifetimes(order, sizes, inputs=self.input_names, pinned=self.pinned)
        self.plan: MemoryPlan = plan(self.lives)

        ws = 0
        for node, inputs, attrs in zip(graph.nodes, self.node_inputs, self.node_attrs, strict=True):
            shapes_in = [self._weight_or_value_shape(name) for name in inputs if name]
            shapes_out = [self.shapes[name] for name in node.outputs]
            ws = max(ws, ops.workspace_size(node.op, shapes_in, shapes_out, attrs))
        self.workspace_elements = ws
        self._replicas: dict[int, Replica] = {}

    @staticmethod
    def _packable(node: Node, graph: Graph) -> bool:
        """Conv weights are packed for the GEMM micro-kernel, except depthwise ones (they have
        their own direct kernel and take plain weights)."""
        weight = graph.tensors.get(node.inputs[1])
        if weight is None or weight.ndim != 4:
            return False
        return not (int(node.attrs.get("group", 1)) > 1 and weight.shape[1] == 1)

    # --- validation -----------------------------------------------------------------------
    @staticmethod
    def _check(graph: Graph) -> None:
        """Every node canonical, every name defined before use, every shape exactly what the
        op computes (ops.check_node): the kernels do not check bounds, this does."""
        shapes: dict[str, tuple[int, ...]] = {n: tuple(s) for n, s in graph.inputs}
        for name, tensor in graph.tensors.items():
            shapes[name] = tuple(tensor.shape)
        for node in graph.nodes:
            if node.op not in ops.OPS:
                raise ModelError(f"node {node.name!r}: op {node.op!r} is not a flight op")
            for name in node.inputs:
                if name and name not in shapes:
                    raise ModelError(f"node {node.name!r} reads {name!r} before anything writes it")
            for name in node.outputs:
                if name in shapes:
                    raise ModelError(f"node {node.name!r} writes {name!r}, already defined")
                if name not in graph.shapes:
                    raise ModelError(f"tensor {name!r} has no static shape")
            declared = tuple(graph.shapes[node.outputs[0]]) if node.outputs else ()
            ops.check_node(node, [shapes[n] if n else None for n in node.inputs], declared)
            for name in node.outputs:
                shapes[name] = tuple(graph.shapes[name])
        Model._check_index_inputs(graph)
        for name, shape in graph.outputs:
            if name not in shapes:
                raise ModelError(f"graph output {name!r} is never computed")
            if tuple(shape) != shapes[name]:
                raise ModelError(f"graph output {name!r}: shape {tuple(shape)} != {shapes[name]}")

    @staticmethod
    def _check_index_inputs(graph: Graph) -> None:
        """A graph input that is not float32 must be int32 / int64 and read only as Gather
        indices: float32 carries its values exactly, and the bound check at the boundary
        (:attr:`index_bounds`) is then all the kernels need."""
        names = {name for name, _ in graph.inputs}
        for name, dtype in graph.input_dtypes.items():
            if name not in names:
                raise ModelError(f"input_dtypes names {name!r}, which is not a graph input")
            if dtype == "float32":
                continue
            if dtype not in INDEX_DTYPES:
                raise ModelError(
                    f"input {name!r} is {dtype}; inputs are float32, or {INDEX_DTYPES} indices"
                )
            for node in graph.nodes:
                as_indices = node.op == "Gather" and node.inputs[1:] == [name]
                if name in node.inputs and (not as_indices or node.inputs[0] == name):
                    raise ModelError(
                        f"input {name!r} ({dtype}) is read by node {node.name!r} ({node.op}); "
                        "an integer input may only be Gather indices"
                    )

    @property
    def input_dtypes(self) -> dict[str, str]:
        """The dtype each input takes: float32, or int32 / int64 for Gather indices."""
        declared = self.graph.input_dtypes
        return {name: declared.get(name, "float32") for name in self.input_names}

    @cached_property
    def index_bounds(self) -> dict[str, int]:
        """For each integer input, the size of the smallest table its Gathers index: a value v
        is valid when -bound <= v < bound (ONNX wraps negatives)."""
        bounds = {}
        for name, dtype in self.input_dtypes.items():
            if dtype == "float32":
                continue
            sizes = [
                self._weight_or_value_shape(node.inputs[0])[int(node.attrs["axis"])]
                for node in self.graph.nodes
                if node.op == "Gather" and node.inputs[1] == name
            ]
            bounds[name] = min(sizes, default=MAX_GATHER_ROWS)
        return bounds

    def _weight_or_value_shape(self, name: str) -> tuple[int, ...]:
        if name in self.layout.offsets:
            return tuple(self.layout.offsets[name][1])
        return tuple(self.shapes[name])

    def _store(
        self,
        offset: int,
        array: np.ndarray,
        release: Callable[[np.ndarray], None] | None,
    ) -> None:
        """Write one executable tensor into every weight copy at element ``offset``, a slice at
        a time, handing each slice's source memory back (``release``) once it is stored."""
        flat = array.reshape(-1)
        for start in range(0, flat.size, _STORE_ELEMS):
            piece = flat[start : start + _STORE_ELEMS]
            self.weights.write(piece, offset=4 * (offset + start))
            if release is not None:
                release(piece)

    def _voted_table(self) -> np.ndarray:
        """The block CRCs the three table copies agree on (0 where no two agree)."""
        t0, t1, t2 = (self.weights.crc_table(i) for i in range(3))
        return np.where((t0 == t1) | (t0 == t2), t0, np.where(t1 == t2, t1, 0))

    def reload_blocks(
        self, blocks: Iterable[int] | None = None, copies: Iterable[int] | None = None
    ) -> tuple[int, int]:
        """Rewrite weight blocks from the golden image; returns (reloaded, refused).

        The golden image is rebuilt block by block from the golden tensors (``golden``: by
        default the graph's arrays, for a model loaded from a path the file, read back tensor
        by tensor and CRC-checked), Conv weights re-packed. Radiation can reach those too, and
        a file can be gone or replaced: a block is only rewritten if its golden bytes match the
        CRC the table copies agree on, and is refused when they cannot be read.
        ``copies=None`` rewrites every copy (and refreshes the CRCs: what clears an unrepairable
        block); a list rewrites just those copies (a replica that keeps losing votes although
        its CRCs check out).
        """
        region = self.weights
        wanted = range(region.nblocks) if blocks is None else sorted(set(blocks))
        expected = self._voted_table()
        targets = None if copies is None else sorted(set(copies))
        image = _GoldenImage(self)
        reloaded = refused = 0
        for block in wanted:
            start, stop = region.block_bytes(block)
            try:
                golden = image.read(start, stop)
            except (OSError, errors.FlightError):  # the source is gone or changed: no proof
                refused += 1
                continue
            if crc32c(golden) != int(expected[block]):
                refused += 1
                continue
            if targets is None:
                region.write(golden, offset=start)
            else:
                for index in targets:
                    region.raw(index)[start:stop] = golden
            reloaded += 1
        return reloaded, refused

    # --- replicas ---------------------------------------------------------------------------
    @property
    def copies(self) -> int:
        return self.weights.copies

    def replica(self, index: int) -> Replica:
        """The executor computing with weight copy ``index`` (created once, then reused)."""
        if not 0 <= index < self.copies:
            raise ModelError(f"model has replicas 0..{self.copies - 1}, not {index}")
        if index not in self._replicas:
            self._replicas[index] = Replica(self, index)
        return self._replicas[index]

    def run(self, x: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """One inference on replica 0, simplex; returns a copy of the (first) output. ``x`` is
        the (first) input's array, or a map of every input's (see :meth:`Replica.run`)."""
        return self.replica(0).run(x)[self.output_names[0]].copy()

    @property
    def arena_bytes(self) -> int:
        return self.plan.arena_bytes

    def summary(self) -> dict[str, Any]:
        graph = self.graph
        return {
            "name": graph.name,
            "nodes": len(graph.nodes),
            "ops": dict(graph.ops()),
            "parameters": graph.parameter_count(),
            "inputs": [(n, list(s)) for n, s in graph.inputs],
            "input_dtypes": self.input_dtypes,
            "outputs": [(n, list(s)) for n, s in graph.outputs],
            "weight_image_bytes": self.weights.nbytes,
            "weight_copies": self.copies,
            "arena_bytes_per_replica": self.plan.arena_bytes,
            "arena_bytes_without_reuse": self.plan.naive_bytes,
            "workspace_bytes_per_replica": 4 * self.workspace_elements,
        }


class _GoldenImage:
    """The weight image's golden bytes, made on demand from the golden tensors: a block's bytes
    come from the executable tensors it overlaps (re-packed if packed; zeros between them), and
    only the tensors the current block touches are kept (blocks are read in order)."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self._entries = sorted(
            (offset, offset + _nelems(shape), name)
            for name, (offset, shape) in model.layout.offsets.items()
        )
        self._starts = [offset for offset, _, _ in self._entries]
        self._ends = {name: end for _, end, name in self._entries}
        self._cache: dict[str, np.ndarray] = {}

    def read(self, start: int, stop: int) -> np.ndarray:
        """Golden bytes [start, stop) of one weight copy, as uint8."""
        out = np.zeros(stop - start, dtype=np.uint8)
        first, last = start // 4, -(-stop // 4)
        for name in [n for n in self._cache if self._ends[n] <= first]:
            del self._cache[name]
        index = max(bisect_right(self._starts, first) - 1, 0)
        for offset, end, name in self._entries[index:]:
            if offset >= last:
                break
            if end <= first:
                continue
            data = self._tensor(name, end - offset)
            lo, hi = max(start, 4 * offset), min(stop, 4 * end)
            out[lo - start : hi - start] = data[lo - 4 * offset : hi - 4 * offset]
        return out

    def _tensor(self, name: str, elements: int) -> np.ndarray:
        if name not in self._cache:
            source, group = self._model._recipes[name]
            tensor = _executable(self._model._golden(source))
            if group is not None:
                tensor = _kernels().pack_conv_weights(tensor, group)
            if tensor.size != elements:
                raise ModelError(f"golden tensor {source!r} has {tensor.size} elements")
            self._cache[name] = tensor.reshape(-1).view(np.uint8)
        return self._cache[name]


class Replica:
    """One replica's executor: weight copy ``index``, its own arena and workspace."""

    def __init__(self, model: Model, index: int) -> None:
        self.model = model
        self.index = index
        arena_elements = max(model.plan.arena_bytes // 4, 1)
        if model._allocate is None:
            self.arena = np.zeros(arena_elements, dtype=np.float32)
        else:
            self.arena = model._allocate(4 * arena_elements).view(np.float32)
        self.workspace = np.zeros(max(model.workspace_elements, 1), dtype=np.float32)
        weights = model.weights.copy(index)  # read-only: a replica never writes its weights
        self._views: dict[str, np.ndarray] = {}
        for name, (offset, shape) in model.layout.offsets.items():
            self._views[name] = weights[offset : offset + _nelems(shape)].reshape(shape)
        for life in model.lives:
            start = model.plan.offsets[life.name] // 4
            shape = model.shapes[life.name]
            self._views[life.name] = self.arena[start : start + _nelems(shape)].reshape(shape)
        self._steps: list[tuple[Node, Callable[..., None], list[Any], list[np.ndarray], dict]] = []
        for node, inputs, attrs in zip(
            model.graph.nodes, model.node_inputs, model.node_attrs, strict=True
        ):
            ins = [self._views[name] if name else None for name in inputs]
            outs = [self._views[name] for name in node.outputs]
            self._steps.append((node, ops.kernel(node.op), ins, outs, attrs))

    def buffer(self, name: str) -> np.ndarray:
        """The live view of an activation (valid until a later node reuses its memory, unless
        it is pinned) or of a weight tensor (read-only)."""
        try:
            return self._views[name]
        except KeyError:
            raise ModelError(f"no tensor {name!r} in {self.model.graph.name!r}") from None

    def run(
        self,
        x: np.ndarray | Mapping[str, np.ndarray] | None,
        *,
        after: Mapping[str, Callable[[np.ndarray], None]] | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Run one inference; returns views of the outputs (pinned, valid until the next run).

        ``x`` is the first input's array or a map of every input's: float arrays for float32
        inputs, integer arrays for integer ones (:attr:`Model.input_dtypes`; indices within
        :attr:`Model.index_bounds`), else :class:`ModelInputError` and nothing runs.
        ``after`` maps activation names to callbacks that get the buffer right after the node
        that writes it (and may modify it: vote-point write-back, fault injection).
        ``start``/``stop`` run only nodes [start, stop) (segments between vote points); the
        inputs are copied in when ``start`` is 0 (``x`` may be None for a later segment).
        """
        if start == 0:
            self._feed(x)
        steps = self._steps[start:stop]
        ws = self.workspace
        if after:
            unknown = set(after) - set(self._views)
            if unknown:
                raise ModelError(f"no such activations for hooks: {sorted(unknown)}")
            for node, fn, ins, outs, attrs in steps:
                fn(ins, outs, attrs, ws)
                for name, out in zip(node.outputs, outs, strict=True):
                    hook = after.get(name)
                    if hook is not None:
                        hook(out)
        else:
            for _node, fn, ins, outs, attrs in steps:
                fn(ins, outs, attrs, ws)
        return {name: self._views[name] for name in self.model.output_names}

    def _feed(self, x: np.ndarray | Mapping[str, np.ndarray] | None) -> None:
        """Check every input (presence, shape, dtype kind, index range), then copy them in: a
        bad input raises :class:`ModelInputError` before anything is written or run."""
        model = self.model
        feeds = x if isinstance(x, Mapping) else {model.input_names[0]: x}
        checked = []
        for name, dtype in model.input_dtypes.items():
            if feeds.get(name) is None:
                raise ModelInputError(f"missing input {name!r}")
            value = np.asarray(feeds[name])
            target = self._views[name]
            if value.shape != target.shape:
                raise ModelInputError(
                    f"input {name!r} has shape {value.shape}, the model takes {target.shape}"
                )
            if dtype == "float32":
                if value.dtype.kind != "f":
                    raise ModelInputError(
                        f"input {name!r} takes float32, got a {value.dtype} array"
                    )
            else:
                _check_indices(name, dtype, value, model.index_bounds[name])
            checked.append((target, value))
        for target, value in checked:
            # indices are below 2**24 in magnitude (checked), so float32 holds them exactly
            np.copyto(target, value, casting="unsafe" if value.dtype.kind in "iu" else "same_kind")

    def node_index(self, tensor: str) -> int:
        """Index of the node that writes ``tensor`` (where a vote point splits the graph)."""
        for index, (node, *_rest) in enumerate(self._steps):
            if tensor in node.outputs:
                return index
        raise ModelError(f"no node of {self.model.graph.name!r} writes {tensor!r}")


def _check_indices(name: str, dtype: str, value: np.ndarray, bound: int) -> None:
    """An integer input's array: integer kind, every value in [-bound, bound)."""
    if value.dtype.kind not in "iu":
        raise ModelInputError(f"input {name!r} takes {dtype} indices, got a {value.dtype} array")
    if not value.size:
        return
    low, high = int(value.min()), int(value.max())
    if low < -bound or high >= bound:
        bad = low if low < -bound else high
        raise ModelInputError(
            f"input {name!r}: index {bad} is outside [-{bound}, {bound}) (the table it indexes "
            f"has {bound} entries)"
        )
