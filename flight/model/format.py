"""The flight model file (``.flm``), format version 1: a writer and a validating loader.

A model file is what a board loads to run inference, and the golden image its protected
weights are reloaded from. It may arrive corrupted (an upset in storage, a broken uplink) or
hostile, so the loader trusts nothing: every field is type- and range-checked, every size is
bounded by :class:`Limits` before anything is allocated, and every failure is a specific
:class:`ModelFormatError` subclass, never a crash, a hang, a ``MemoryError`` or a raw msgpack,
``KeyError`` or ``TypeError``.

Layout
======

The file is **one msgpack document**, a map of four fields, always encoded in this order and in
this exact form (the *envelope*)::

    offset  bytes                          meaning
    0       84                             map of 4 entries
    1       a5 "magic"                     key
    7       ac "FLIGHT-MODEL"              value: the magic string
    20      a7 "version"                   key
    28      01                             value: format version, positive fixint 1
    29      a4 "body"                      key
    34      c6 <u32 big-endian N>          value: bin 32 header, N = body length
    39      <N bytes>                      the body (itself a msgpack document, below)
    39+N    a6 "crc32c"                    key
    46+N    ce <u32 big-endian>            value: uint 32, CRC-32C of the N body bytes

Any msgpack reader decodes it as ``{"magic": "FLIGHT-MODEL", "version": 1, "body": <bin>,
"crc32c": <uint32>}``. A version-1 writer must emit exactly these bytes (the bin 32 and uint 32
forms even for small values), and the loader checks them byte by byte, so the first 20 bytes are
a fixed signature, the envelope is checked in O(1) before the body is parsed, and no single
corrupted byte anywhere in the file can yield a successful load: a changed key, length or type
byte breaks the layout, a changed body or CRC byte breaks the CRC (CRC-32C detects every burst
of up to 32 bits).

Body
----

A msgpack map with exactly these fields (unknown fields are rejected at every level; a new
field means a new format version):

``producer`` (str)
    Free text naming the tool that wrote the file, e.g. ``"flight.onnx 0.1"``.
``graph`` (map)
    The computation, below.
``tensors`` (array of maps)
    The initializers (weights), in file order. Each is a map:

    ``name`` (str, non-empty)  the value name nodes refer to;
    ``dtype`` (str)  one of :data:`DTYPES`: float32, float64, int64, int32, int8, uint8, bool;
    ``shape`` (array of int)  static dims, each ``0 <= d <= Limits.max_dim``, rank <= 8;
    ``data`` (bin)  the raw elements, little-endian, C order, exactly
    ``prod(shape) * itemsize`` bytes (bool: one byte each, 0 or 1);
    ``crc32c`` (uint32)  CRC-32C of ``data``, so a tensor is checked on its own too (the
    scrubber's golden reload reads one tensor).
``metadata`` (map str -> str)
    Free key/value pairs (training data set, accuracy, licence, ...).

Graph
-----

``name`` (str)
    The graph's name.
``inputs``, ``outputs`` (array of maps ``{"name": str, "dtype": str, "shape": [int, ...]}``)
    The graph's inputs and outputs, with fully static shapes (no symbolic dims).
``nodes`` (array of maps)
    Each ``{"name": str, "op": str, "inputs": [str, ...], "outputs": [str, ...],
    "attrs": {str: value}}``. Node names are non-empty and unique. An empty string in
    ``inputs`` means "optional input absent", in ``outputs`` "optional output not produced"
    (the ONNX convention). Nodes need not be in topological order (:func:`topological_order`
    gives one), but the graph must be acyclic.
``value_info`` (map str -> ``{"dtype": str, "shape": [int, ...]}``)
    Static types of values (usually every intermediate value), keyed by value name.

Attribute values are one of: int (int64 range; msgpack bool is *not* an int here), float,
str, bytes, a homogeneous array of int, float or str, or a tensor
``{"dtype": str, "shape": [int, ...], "data": bin}`` (same rules as a tensor record, no CRC of
its own: the envelope CRC covers it).

Every value name (graph input, tensor, non-empty node output) is defined exactly once; every
non-empty node input, graph output and ``value_info`` key names a defined value.

Loaded model
============

:func:`load` returns a :class:`ModelFile`. Tensors (and tensor-valued attributes of 16 bytes or
more) are **read-only** numpy views of one private buffer holding the file: the file is read
once, into that buffer, and nothing is copied out of it (msgpack only ever sees a *skeleton* of
the body in which every bin of 16 bytes or more is replaced by a reference to its bytes), so
peak memory while loading is about the file size. Holding a tensor pins the buffer; copy with
``np.array(t)`` for a writable array or one that owns its memory. :func:`load_file` also says
where each tensor's data lies in the file (:func:`read_tensor` reads one back, CRC-checked:
how a golden reload gets it without keeping the file in memory) and lets an owner that has
copied a tensor elsewhere give its pages back (docs/models.md, "Large models and memory").
"""

from __future__ import annotations

import math
import mmap
import operator
import os
import struct
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from heapq import heapify, heappop, heappush
from typing import Any, BinaryIO, NoReturn

import msgpack
import numpy as np

from flight.atomic import write_atomically
from flight.crc import crc32c
from flight.errors import ConfigError, FlightError

__all__ = [
    "DEFAULT_LIMITS",
    "DTYPES",
    "FORMAT_VERSION",
    "MAGIC",
    "MISSION_KEY",
    "AttrValue",
    "GraphDef",
    "Limits",
    "LoadedFile",
    "ModelChecksumError",
    "ModelCycleError",
    "ModelDanglingError",
    "ModelDuplicateNameError",
    "ModelFile",
    "ModelFormatError",
    "ModelGraphError",
    "ModelLimitError",
    "ModelMagicError",
    "ModelSchemaError",
    "ModelTruncatedError",
    "ModelUnknownOpError",
    "ModelVersionError",
    "NodeDef",
    "TensorLocation",
    "ValueInfo",
    "check_tensors",
    "dumps",
    "info",
    "load",
    "load_file",
    "raise_hint",
    "read_tensor",
    "save",
    "topological_order",
    "validate_graph",
]

MAGIC = "FLIGHT-MODEL"
FORMAT_VERSION = 1

#: Element types a model may use, by their name in the file; all little-endian.
DTYPES: Mapping[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int8": np.dtype("<i1"),
    "uint8": np.dtype("<u1"),
    "bool": np.dtype("?"),
}

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_U32_MAX = 2**32 - 1
_MIB = 1 << 20


# ---------------------------------------------------------------------------------------------
# Exceptions


class ModelFormatError(FlightError, ValueError):
    """A model file is truncated, corrupted, hostile or not a model file. Never raised directly."""


class ModelTruncatedError(ModelFormatError):
    """The file (or a structure inside the body) ends before its declared end."""


class ModelChecksumError(ModelFormatError):
    """The body's or a tensor's CRC-32C does not match: corrupted bytes."""


class ModelMagicError(ModelFormatError):
    """The file does not start with the flight model signature: not a flight model file."""


class ModelVersionError(ModelFormatError):
    """A flight model file of a format version this reader does not know."""


class ModelSchemaError(ModelFormatError):
    """A field is missing, unknown, of the wrong type or out of range, or the msgpack is invalid."""


class ModelLimitError(ModelFormatError):
    """A declared size (bytes, elements, rank, count, nesting) exceeds the loader's Limits.

    ``limit`` names the :class:`Limits` field; the message says how to raise it."""

    def __init__(self, message: str, limit: str = "") -> None:
        self.limit = limit
        super().__init__(f"{message}. {raise_hint(limit)}" if limit else message)


#: The mission's ``[[partition]]`` key that raises the byte limits (:meth:`Limits.for_model_bytes`).
MISSION_KEY = "max_model_bytes"
_MODEL_BYTES_LIMITS = ("max_file_bytes", "max_tensor_bytes", "max_total_bytes", "max_elements")


def raise_hint(limit: str) -> str:
    """How to go past ``limit``: the caller's option and, for the byte limits, the mission key."""
    hint = (
        f"To accept it, raise {limit} (Limits({limit}=...), passed as limits= to "
        "flight.model.load, flight.model.save or convert_onnx"
    )
    if limit in _MODEL_BYTES_LIMITS:
        hint += (
            f"; in a mission, the partition key {MISSION_KEY} = <bytes>; on the command line, "
            "flight model convert|info|run --max-model-bytes <bytes>"
        )
    return hint + ")"


class ModelGraphError(ModelFormatError):
    """The graph is inconsistent. Never raised directly; see the subclasses."""


class ModelDuplicateNameError(ModelGraphError):
    """A value name is defined twice (input, tensor, node output), or a node name is reused."""


class ModelDanglingError(ModelGraphError):
    """A node input, graph output or value_info entry names a value nothing defines."""


class ModelCycleError(ModelGraphError):
    """The nodes form a cycle: there is no order in which to run them."""


class ModelUnknownOpError(ModelGraphError):
    """A node's op is not in the loader's ``allowed_ops``."""


# ---------------------------------------------------------------------------------------------
# Limits


@dataclass(frozen=True)
class Limits:
    """Upper bounds the loader enforces before allocating, so a hostile file cannot exhaust a
    board's memory or CPU. Defaults suit a Raspberry-Pi-class board; raise them for big models."""

    max_file_bytes: int = 256 * _MIB  #: the whole file
    max_tensor_bytes: int = 128 * _MIB  #: one tensor's data (and any bin in the body)
    max_total_bytes: int = 256 * _MIB  #: all tensor data plus tensor-valued attributes
    max_tensors: int = 65_536  #: initializers
    max_nodes: int = 65_536  #: graph nodes
    max_rank: int = 8  #: dims of any shape
    max_dim: int = 1 << 24  #: any single dim
    max_elements: int = 1 << 28  #: elements of any declared shape (tensor or value)
    max_str_len: int = 65_536  #: bytes of any string (names, attributes, metadata)
    max_container_len: int = 1 << 20  #: entries of any msgpack array or map
    max_depth: int = 16  #: msgpack nesting in the body (version 1 needs 7)
    max_objects: int = 1 << 21  #: msgpack objects in the body (bounds parse time)

    @classmethod
    def for_model_bytes(cls, model_bytes: int) -> Limits:
        """The limits for a model file of up to ``model_bytes``: the file, any one tensor and all
        tensors together may be that big (what the mission's ``max_model_bytes`` sets); the
        structural limits keep their defaults."""
        if type(model_bytes) is not int or model_bytes < 1:
            raise ConfigError(f"model_bytes must be a positive int, got {model_bytes!r}")
        return cls(
            max_file_bytes=model_bytes,
            max_tensor_bytes=model_bytes,
            max_total_bytes=model_bytes,
            max_elements=max(cls.max_elements, model_bytes // 4),
        )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"Limits.{f.name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = Limits()


# ---------------------------------------------------------------------------------------------
# In-memory model

#: An attribute value: int, float, str, bytes, list of int/float/str, or a tensor (ndarray).
AttrValue = int | float | str | bytes | list[int] | list[float] | list[str] | np.ndarray


@dataclass(frozen=True)
class ValueInfo:
    """A named value's static type: a graph input or output, or a ``value_info`` entry."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        # numpy integers are welcome (converters compute shapes with numpy); "N" or 3.0 are not
        object.__setattr__(self, "shape", tuple(operator.index(d) for d in self.shape))


@dataclass(frozen=True)
class NodeDef:
    """One operation. ``""`` among inputs/outputs marks an absent optional one (ONNX style).

    Equality compares ``attrs`` with ``==``, which numpy refuses for tensor-valued attributes;
    compare whole models with :func:`dumps` (the encoding is deterministic) instead."""

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    attrs: dict[str, AttrValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))


@dataclass(frozen=True)
class GraphDef:
    """The computation: inputs, outputs, nodes (any order, acyclic) and value types."""

    name: str
    inputs: tuple[ValueInfo, ...] = ()
    outputs: tuple[ValueInfo, ...] = ()
    nodes: tuple[NodeDef, ...] = ()
    value_info: dict[str, ValueInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("inputs", "outputs", "nodes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True)
class TensorLocation:
    """Where a loaded tensor's data lies in its file, and what it must be: enough to read that
    one tensor back later (:func:`read_tensor`) and prove it unchanged by its own CRC-32C."""

    offset: int  #: byte offset of the data in the file
    nbytes: int
    dtype: str
    shape: tuple[int, ...]
    crc32c: int


@dataclass
class ModelFile:
    """A whole model file: graph, weights (in file order), metadata and producer."""

    graph: GraphDef
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    producer: str = ""


def _keep(array: np.ndarray) -> None:
    """``LoadedFile.release`` when the tensors' memory is not the loader's to give back."""


@dataclass
class LoadedFile:
    """What :func:`load_file` returns: the model, and what an owner of its tensors may use.

    ``locations`` maps a tensor's name to where its data lies in the file (every tensor of 16
    bytes or more). ``release(array)`` frees the memory pages lying wholly inside ``array``'s
    bytes when the file was read from a path into the loader's own buffer, and does nothing
    otherwise. Only an owner that drops every reference to that array (and to any view of it)
    may call it: the pages read as zeros afterwards."""

    model: ModelFile
    locations: dict[str, TensorLocation] = field(default_factory=dict)
    release: Callable[[np.ndarray], None] = _keep


# ---------------------------------------------------------------------------------------------
# Writer

_SIGNATURE = b"\x84\xa5magic\xac" + MAGIC.encode()
_VERSION_KEY = b"\xa7version"
_BODY_KEY = b"\xa4body\xc6"
_CRC_KEY = b"\xa6crc32c\xce"
_HEADER = len(_SIGNATURE) + len(_VERSION_KEY) + 1 + len(_BODY_KEY) + 4  # 39
_TRAILER = len(_CRC_KEY) + 4  # 12


def dumps(
    model: ModelFile,
    *,
    allowed_ops: Collection[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Encode ``model`` as a version-1 file. The result is loaded back before it is returned
    (write-verify), so the writer can never produce a file this loader would refuse."""
    data = _envelope(_pack_body(model))
    load(data, allowed_ops=allowed_ops, limits=limits)
    return data


def save(
    target: str | os.PathLike[str] | BinaryIO,
    model: ModelFile,
    *,
    allowed_ops: Collection[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Write ``model`` to a path (atomically: temp file in the same directory, fsync, rename,
    so a crash leaves the old file or the new one, never half of one) or to a binary file."""
    data = dumps(model, allowed_ops=allowed_ops, limits=limits)
    if hasattr(target, "write"):
        target.write(data)
    else:
        write_atomically(target, data, strict_directory_sync=False)


def _envelope(body: bytes) -> bytes:
    if len(body) > _U32_MAX:
        raise ModelLimitError(f"body of {len(body)} bytes does not fit the format (max 4 GiB)")
    return b"".join(
        (
            _SIGNATURE,
            _VERSION_KEY,
            bytes((FORMAT_VERSION,)),
            _BODY_KEY,
            len(body).to_bytes(4, "big"),
            body,
            _CRC_KEY,
            crc32c(body).to_bytes(4, "big"),
        )
    )


def _pack_body(model: ModelFile) -> bytes:
    try:
        doc = {
            "producer": model.producer,
            "graph": _encode_graph(model.graph),
            "tensors": [_encode_tensor(name, t) for name, t in model.tensors.items()],
            "metadata": dict(model.metadata),
        }
        return msgpack.packb(doc, use_bin_type=True)
    except ModelFormatError:
        raise
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise ModelSchemaError(f"model cannot be encoded: {exc}") from exc


def _encode_graph(graph: GraphDef) -> dict[str, Any]:
    value_info = {}
    for key, vi in graph.value_info.items():
        if key != vi.name:
            raise ModelSchemaError(f"value_info key {key!r} holds a ValueInfo named {vi.name!r}")
        value_info[key] = {"dtype": vi.dtype, "shape": list(vi.shape)}
    return {
        "name": graph.name,
        "inputs": [_encode_value(vi) for vi in graph.inputs],
        "outputs": [_encode_value(vi) for vi in graph.outputs],
        "nodes": [_encode_node(node) for node in graph.nodes],
        "value_info": value_info,
    }


def _encode_value(vi: ValueInfo) -> dict[str, Any]:
    return {"name": vi.name, "dtype": vi.dtype, "shape": list(vi.shape)}


def _encode_node(node: NodeDef) -> dict[str, Any]:
    return {
        "name": node.name,
        "op": node.op,
        "inputs": list(node.inputs),
        "outputs": list(node.outputs),
        "attrs": {key: _encode_attr(value) for key, value in node.attrs.items()},
    }


def _encode_attr(value: Any) -> Any:
    """numpy scalars become Python numbers and arrays tensor maps; the rest is kept as is (the
    write-verify load rejects what the format does not allow, e.g. bool or None)."""
    if isinstance(value, np.ndarray):
        name, data = _encode_array(value)
        return {"dtype": name, "shape": list(value.shape), "data": data}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    return value


def _encode_tensor(name: str, tensor: Any) -> dict[str, Any]:
    array = np.asarray(tensor)
    dtype, data = _encode_array(array)
    return {
        "name": name,
        "dtype": dtype,
        "shape": list(array.shape),
        "data": data,
        "crc32c": crc32c(data),
    }


def _encode_array(array: np.ndarray) -> tuple[str, bytes]:
    for name, dtype in DTYPES.items():
        if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize:
            return name, np.asarray(array, dtype=dtype).tobytes(order="C")
    raise ModelSchemaError(f"dtype {array.dtype} is not supported (allowed: {', '.join(DTYPES)})")


# ---------------------------------------------------------------------------------------------
# Loader: source and envelope


def load(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO,
    *,
    allowed_ops: Collection[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ModelFile:
    """Load and fully validate a model from a path, a bytes-like object or a binary file.

    Checks, in order: size, envelope layout and version, body CRC, body structure (depth,
    lengths, object count) before msgpack builds it, then every field, every tensor's size and
    CRC, and the graph (unique names, nothing dangling, ``allowed_ops``, acyclic). Raises a
    specific :class:`ModelFormatError` subclass on the first problem found; I/O errors reading
    a path or file stay ``OSError``."""
    return load_file(source, allowed_ops=allowed_ops, limits=limits).model


def load_file(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO,
    *,
    allowed_ops: Collection[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> LoadedFile:
    """:func:`load`, also returning where each tensor lies in the file and how to give back a
    tensor's memory once it has been copied elsewhere (:class:`LoadedFile`)."""
    data, buffer = _read_source(source, limits)
    body = _open_envelope(data, limits)
    doc = _unpack_body(body, limits)
    model, locations = _decode_body(doc, limits)
    validate_graph(model.graph, model.tensors, allowed_ops=allowed_ops)
    return LoadedFile(model, locations, buffer.release if buffer is not None else _keep)


def read_tensor(
    source: str | os.PathLike[str], location: TensorLocation, limits: Limits = DEFAULT_LIMITS
) -> np.ndarray:
    """Read one tensor back from a model file at ``location`` (from ``ModelFile.locations``)
    and prove it by its own CRC-32C: a golden reload's source, read when needed instead of kept
    in memory. Raises :class:`ModelChecksumError` if the bytes there are not the tensor any
    more (the file was changed or replaced), :class:`ModelTruncatedError` if the file is
    shorter, ``OSError`` if it cannot be read."""
    dtype = DTYPES[location.dtype]
    if location.nbytes > limits.max_tensor_bytes:
        raise ModelLimitError(
            f"tensor of {location.nbytes} bytes exceeds max_tensor_bytes={limits.max_tensor_bytes}",
            "max_tensor_bytes",
        )
    with open(os.fspath(source), "rb", buffering=0) as handle:
        handle.seek(location.offset)
        data = handle.read(location.nbytes)
    if len(data) != location.nbytes:
        raise ModelTruncatedError(
            f"file ends inside the tensor at byte {location.offset} ({location.nbytes} bytes)"
        )
    if crc32c(data) != location.crc32c:
        raise ModelChecksumError(f"tensor at byte {location.offset}: CRC-32C does not match")
    return np.frombuffer(data, dtype=dtype).reshape(location.shape)


class _FileBuffer:
    """The loader's private copy of a file read from a path, in an anonymous mapping, so that an
    owner that has copied a tensor elsewhere can hand that tensor's pages back one by one
    (what keeps a large model's load near one file size of memory)."""

    def __init__(self, size: int) -> None:
        # private: MADV_DONTNEED frees private anonymous pages (a shared mapping would only
        # unmap them from this process, and the memory would stay in use)
        self.map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.base = np.frombuffer(self.map, dtype=np.uint8).ctypes.data

    def release(self, array: np.ndarray) -> None:
        """Free the pages lying wholly inside ``array``'s bytes if they are this buffer's."""
        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or not array.nbytes:
            return
        start = array.ctypes.data - self.base
        stop = start + array.nbytes
        if start < 0 or stop > len(self.map) or not hasattr(mmap, "MADV_DONTNEED"):
            return
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = stop // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            self.map.madvise(mmap.MADV_DONTNEED, first, last - first)


def _read_source(source: Any, limits: Limits) -> tuple[memoryview, _FileBuffer | None]:
    """The file's bytes as a read-only view, without a copy when they can be trusted not to
    change: a path is read once into the loader's own buffer (returned too), ``bytes`` are
    used in place, a mutable buffer (bytearray, writable memoryview, mmap) is copied once."""
    buffer = None
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        if not view.contiguous or not isinstance(view.obj, bytes):
            view = memoryview(view.tobytes())
        data = view.cast("B")
    elif hasattr(source, "read"):
        data = memoryview(_checked_bytes(source.read(limits.max_file_bytes + 1)))
    else:
        with open(os.fspath(source), "rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limits.max_file_bytes:
                _too_big(size, limits)
            data, buffer = _read_into_buffer(handle, size, limits)
    if len(data) > limits.max_file_bytes:
        _too_big(len(data), limits)
    return data, buffer


def _read_into_buffer(
    handle: Any, size: int, limits: Limits
) -> tuple[memoryview, _FileBuffer | None]:
    buffer = _FileBuffer(size) if size else None
    target = memoryview(buffer.map) if buffer is not None else memoryview(b"")
    got = 0
    while got < size:
        count = handle.readinto(target[got:])
        if not count:  # the file shrank since fstat: what was read is checked as it is
            break
        got += count
    rest = handle.read(limits.max_file_bytes + 1 - got)
    if rest:  # the file grew since fstat: rare, read the rest the plain way
        return memoryview(target[:got].tobytes() + rest), None
    return target[:got].toreadonly(), buffer


def _checked_bytes(data: Any) -> bytes:
    if not isinstance(data, bytes):
        raise TypeError(f"load() needs a binary file, read() returned {type(data).__name__}")
    return data


def _too_big(size: int, limits: Limits) -> NoReturn:
    raise ModelLimitError(
        f"file of {size} bytes exceeds max_file_bytes={limits.max_file_bytes}", "max_file_bytes"
    )


def _open_envelope(data: memoryview, limits: Limits) -> memoryview:
    """Check the fixed envelope layout and the body CRC; return the body (a view, no copy)."""
    _expect(data, 0, _SIGNATURE, ModelMagicError, "signature")
    _expect(data, len(_SIGNATURE), _VERSION_KEY, ModelSchemaError, "envelope 'version' key")
    at = len(_SIGNATURE) + len(_VERSION_KEY)
    if len(data) <= at:
        _truncated(data, "envelope version")
    if data[at] != FORMAT_VERSION:
        raise ModelVersionError(
            f"format version byte {data[at]:#04x}; this reader knows version {FORMAT_VERSION}"
        )
    _expect(data, at + 1, _BODY_KEY, ModelSchemaError, "envelope 'body' key")
    size = _u32(data, _HEADER - 4, "body length")
    if _HEADER + size + _TRAILER > limits.max_file_bytes:
        raise ModelLimitError(
            f"declared body of {size} bytes exceeds max_file_bytes={limits.max_file_bytes}",
            "max_file_bytes",
        )
    end = _HEADER + size
    _expect(data, end, _CRC_KEY, ModelSchemaError, "envelope 'crc32c' key")
    stored = _u32(data, end + len(_CRC_KEY), "body CRC")
    if len(data) > end + _TRAILER:
        raise ModelSchemaError(f"{len(data) - end - _TRAILER} stray bytes after the envelope")
    body = data[_HEADER:end]
    actual = crc32c(body)
    if actual != stored:
        raise ModelChecksumError(f"body CRC-32C is {actual:#010x}, the file says {stored:#010x}")
    return body


def _expect(data: memoryview, at: int, expected: bytes, error: type, what: str) -> None:
    chunk = data[at : at + len(expected)].tobytes()
    if chunk != expected[: len(chunk)]:
        raise error(f"bad {what} at byte {at}: {chunk!r}, expected {expected!r}")
    if len(chunk) < len(expected):
        _truncated(data, what)


def _u32(data: memoryview, at: int, what: str) -> int:
    if len(data) < at + 4:
        _truncated(data, what)
    return int.from_bytes(data[at : at + 4], "big")


def _truncated(data: memoryview, what: str) -> NoReturn:
    raise ModelTruncatedError(f"file ends at byte {len(data)}, inside the {what}")


# ---------------------------------------------------------------------------------------------
# Loader: body structure

# Type bytes of msgpack objects with a fixed-size payload, and the payload size.
_FIXED = {
    0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
}  # fmt: skip
# Type bytes followed by a big-endian length: (length size, kind).
_SIZED = {
    0xC4: (1, "bin"), 0xC5: (2, "bin"), 0xC6: (4, "bin"),
    0xD9: (1, "str"), 0xDA: (2, "str"), 0xDB: (4, "str"),
    0xDC: (2, "array"), 0xDD: (4, "array"), 0xDE: (2, "map"), 0xDF: (4, "map"),
}  # fmt: skip
_LENGTH_FORMAT = {1: ">B", 2: ">H", 4: ">I"}


_CAP_NAMES = {
    "bin": "max_tensor_bytes",
    "str": "max_str_len",
    "array": "max_container_len",
    "map": "max_container_len",
}


def check_tensors(tensors: dict[str, np.ndarray], limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse tensors a loader with ``limits`` would refuse, before any file is written (the
    converter calls this, so a big model fails at once and names the limit to raise)."""
    if len(tensors) > limits.max_tensors:
        raise ModelLimitError(
            f"{len(tensors)} tensors exceed max_tensors={limits.max_tensors}", "max_tensors"
        )
    total = 0
    for name, array in tensors.items():
        if array.size > limits.max_elements:
            raise ModelLimitError(
                f"tensor {name!r} {array.shape} exceeds max_elements={limits.max_elements}",
                "max_elements",
            )
        if array.nbytes > limits.max_tensor_bytes:
            raise ModelLimitError(
                f"tensor {name!r} of {array.nbytes} bytes exceeds "
                f"max_tensor_bytes={limits.max_tensor_bytes}",
                "max_tensor_bytes",
            )
        total += array.nbytes
    if total > limits.max_total_bytes:
        raise ModelLimitError(
            f"tensors of {total} bytes exceed max_total_bytes={limits.max_total_bytes}",
            "max_total_bytes",
        )


def _scan(buf: memoryview, limits: Limits) -> list[tuple[int, int, int]]:
    """Walk the body's msgpack structure without building anything, iteratively: truncation,
    nesting depth, string/bin/container lengths and object count are checked against ``limits``
    before msgpack allocates (msgpack would preallocate a declared array length, and its pure
    Python fallback recurses). Returns the bins of at least ``_BY_REFERENCE`` bytes as
    (start of the object, start of its bytes, length), in body order."""
    bins: list[tuple[int, int, int]] = []
    end, pos, todo, objects = len(buf), 0, 1, 0
    stack: list[int] = []
    caps = {
        "bin": limits.max_tensor_bytes,
        "str": limits.max_str_len,
        "array": limits.max_container_len,
        "map": limits.max_container_len,
    }
    while todo or stack:
        if not todo:
            todo = stack.pop()
            continue
        if pos >= end:
            raise ModelTruncatedError(f"body ends at byte {end} inside a msgpack object")
        objects += 1
        if objects > limits.max_objects:
            raise ModelLimitError(
                f"body holds more than max_objects={limits.max_objects}", "max_objects"
            )
        start = pos
        code = buf[pos]
        pos += 1
        todo -= 1
        if code < 0x80 or code >= 0xE0:  # fixint
            continue
        if code < 0x90:
            kind, length = "map", code & 0x0F
        elif code < 0xA0:
            kind, length = "array", code & 0x0F
        elif code < 0xC0:
            kind, length = "str", code & 0x1F
        elif code in _FIXED:
            pos += _FIXED[code]
            continue
        elif code in _SIZED:
            width, kind = _SIZED[code]
            if pos + width > end:
                raise ModelTruncatedError(f"body ends at byte {end} inside a {kind} length")
            (length,) = struct.unpack_from(_LENGTH_FORMAT[width], buf, pos)
            pos += width
        else:
            raise ModelSchemaError(f"msgpack type byte {code:#04x} at body byte {pos - 1}")
        if length > caps[kind]:
            raise ModelLimitError(
                f"msgpack {kind} of declared length {length} exceeds {_CAP_NAMES[kind]}="
                f"{caps[kind]}",
                _CAP_NAMES[kind],
            )
        if kind == "bin" and length >= _BY_REFERENCE:
            bins.append((start, pos, length))
        if kind in ("bin", "str"):
            pos += length
        elif length:
            stack.append(todo)
            todo = length * 2 if kind == "map" else length
            if len(stack) > limits.max_depth:
                raise ModelLimitError(
                    f"body nests deeper than max_depth={limits.max_depth}", "max_depth"
                )
    if pos > end:
        raise ModelTruncatedError(f"body ends at byte {end}, a msgpack object needs {pos}")
    if pos < end:
        raise ModelSchemaError(f"{end - pos} stray bytes after the body document")
    return bins


#: Bins of at least this many bytes reach the decoder by reference (:class:`_Bin`), not copied.
_BY_REFERENCE = 16
#: The msgpack ext type that stands for a bin by reference in the skeleton (a real body has no
#: ext objects: :func:`_scan` refuses them, so an ext in the skeleton is always one of ours).
_REFERENCE_EXT = 1
_REFERENCE = struct.Struct(">BbQQ")  # fixext 16: 0xd8, type, body offset, length


class _Bin:
    """A bin of the body by reference: a read-only view of its bytes and their body offset."""

    __slots__ = ("data", "offset")

    def __init__(self, data: memoryview, offset: int) -> None:
        self.data = data
        self.offset = offset

    def __repr__(self) -> str:
        return f"<bin of {len(self.data)} bytes>"


def _unpack_body(body: memoryview, limits: Limits) -> Any:
    """Parse the body with msgpack under the same limits (a second guard behind :func:`_scan`);
    maps must have unique str keys.

    msgpack copies every bin it decodes into a new ``bytes``; to keep the tensors where they
    are, msgpack parses a *skeleton* instead: the body with each bin of ``_BY_REFERENCE`` bytes
    or more replaced by a fixed-size ext object naming its place, which decodes to a
    :class:`_Bin` view of the body. The skeleton is no larger than the body and has the same
    objects, nesting and order."""
    bins = _scan(body, limits)

    def reference(code: int, payload: bytes) -> _Bin:
        _, _, offset, length = _REFERENCE.unpack(b"\xd8\x00" + payload)
        if code != _REFERENCE_EXT or offset + length > len(body):  # cannot happen: see above
            raise ModelSchemaError(f"msgpack ext type {code} in the body")
        return _Bin(body[offset : offset + length], offset)

    try:
        return msgpack.unpackb(
            _skeleton(body, bins),
            raw=False,
            strict_map_key=True,
            use_list=True,
            object_pairs_hook=_unique_map,
            ext_hook=reference,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_tensor_bytes,
            max_array_len=limits.max_container_len,
            max_map_len=limits.max_container_len,
            max_ext_len=_REFERENCE.size - 2,
        )
    except ModelFormatError:
        raise
    except RecursionError as exc:
        raise ModelLimitError("body nests too deeply", "max_depth") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise ModelSchemaError(f"body is not valid msgpack: {exc}") from exc


def _skeleton(body: memoryview, bins: list[tuple[int, int, int]]) -> bytes | memoryview:
    if not bins:
        return body
    parts: list[Any] = []
    done = 0
    for start, offset, length in bins:
        parts.append(body[done:start])
        parts.append(_REFERENCE.pack(0xD8, _REFERENCE_EXT, offset, length))
        done = offset + length
    parts.append(body[done:])
    return b"".join(parts)


def _unique_map(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """msgpack keeps the last of repeated keys; a repeated key could hide a second value, so it
    is an error. Keys must be str (msgpack's strict_map_key still lets bin keys through)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[Any] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ModelSchemaError(f"map key {_short(repeated)} appears twice")
    for key in result:
        if type(key) is not str:
            raise ModelSchemaError(f"map key of type {_type(key)}; keys must be str")
    return result


# ---------------------------------------------------------------------------------------------
# Loader: schema


class _Budget:
    """Running total of tensor bytes against ``max_total_bytes``."""

    def __init__(self, limits: Limits) -> None:
        self.left = self.total = limits.max_total_bytes

    def take(self, nbytes: int, where: str) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise ModelLimitError(
                f"{where}: tensors exceed max_total_bytes={self.total}", "max_total_bytes"
            )


def _decode_body(doc: Any, limits: Limits) -> tuple[ModelFile, dict[str, TensorLocation]]:
    body = _fields(doc, "body", ("producer", "graph", "tensors", "metadata"))
    budget = _Budget(limits)
    records = _list(body["tensors"], "body.tensors")
    if len(records) > limits.max_tensors:
        raise ModelLimitError(
            f"{len(records)} tensors exceed max_tensors={limits.max_tensors}", "max_tensors"
        )
    tensors: dict[str, np.ndarray] = {}
    locations: dict[str, TensorLocation] = {}
    for i, record in enumerate(records):
        name, array, location = _decode_tensor(record, f"tensors[{i}]", limits, budget)
        if name in tensors:
            raise ModelDuplicateNameError(f"tensors[{i}]: tensor {_short(name)} defined twice")
        tensors[name] = array
        if location is not None:
            locations[name] = location
    metadata = _map_of(body["metadata"], "body.metadata", _str)
    model = ModelFile(
        graph=_decode_graph(body["graph"], limits, budget),
        tensors=tensors,
        metadata=metadata,
        producer=_str(body["producer"], "body.producer"),
    )
    return model, locations


def _decode_graph(obj: Any, limits: Limits, budget: _Budget) -> GraphDef:
    graph = _fields(obj, "graph", ("name", "inputs", "outputs", "nodes", "value_info"))
    nodes = _list(graph["nodes"], "graph.nodes")
    if len(nodes) > limits.max_nodes:
        raise ModelLimitError(
            f"{len(nodes)} nodes exceed max_nodes={limits.max_nodes}", "max_nodes"
        )
    value_info = {}
    for name, spec in _map_of(graph["value_info"], "graph.value_info", _identity).items():
        where = f"graph.value_info[{_short(name)}]"
        spec = _fields(spec, where, ("dtype", "shape"))
        dtype = _dtype(spec["dtype"], f"{where}.dtype")
        value_info[name] = ValueInfo(name, dtype, _shape(spec["shape"], f"{where}.shape", limits))
    return GraphDef(
        name=_str(graph["name"], "graph.name"),
        inputs=_decode_values(graph["inputs"], "graph.inputs", limits),
        outputs=_decode_values(graph["outputs"], "graph.outputs", limits),
        nodes=tuple(
            _decode_node(node, f"graph.nodes[{i}]", limits, budget) for i, node in enumerate(nodes)
        ),
        value_info=value_info,
    )


def _decode_values(obj: Any, where: str, limits: Limits) -> tuple[ValueInfo, ...]:
    values = []
    for i, item in enumerate(_list(obj, where)):
        here = f"{where}[{i}]"
        item = _fields(item, here, ("name", "dtype", "shape"))
        name = _name(item["name"], f"{here}.name")
        dtype = _dtype(item["dtype"], f"{here}.dtype")
        values.append(ValueInfo(name, dtype, _shape(item["shape"], f"{here}.shape", limits)))
    return tuple(values)


def _decode_node(obj: Any, where: str, limits: Limits, budget: _Budget) -> NodeDef:
    node = _fields(obj, where, ("name", "op", "inputs", "outputs", "attrs"))
    attrs = {
        key: _decode_attr(value, f"{where}.attrs[{_short(key)}]", limits, budget)
        for key, value in _map_of(node["attrs"], f"{where}.attrs", _identity).items()
    }
    return NodeDef(
        name=_name(node["name"], f"{where}.name"),
        op=_name(node["op"], f"{where}.op"),
        inputs=tuple(_str(v, f"{where}.inputs") for v in _list(node["inputs"], f"{where}.inputs")),
        outputs=tuple(
            _str(v, f"{where}.outputs") for v in _list(node["outputs"], f"{where}.outputs")
        ),
        attrs=attrs,
    )


def _decode_attr(value: Any, where: str, limits: Limits, budget: _Budget) -> AttrValue:
    kind = type(value)
    if kind is int:
        return _int64(value, where)
    if kind in (float, str, bytes):
        return value
    if kind is _Bin:
        return value.data.tobytes()
    if kind is list:
        kinds = {type(item) for item in value}
        if len(kinds) > 1 or not kinds <= {int, float, str}:
            names = sorted(k.__name__ for k in kinds)
            raise ModelSchemaError(f"{where}: list attribute mixes or holds {names}")
        for item in value if kinds == {int} else ():
            _int64(item, where)
        return value
    if kind is dict:
        spec = _fields(value, where, ("dtype", "shape", "data"))
        return _decode_array(spec, where, limits, budget)
    raise ModelSchemaError(f"{where}: attribute of type {kind.__name__} is not allowed")


def _decode_tensor(
    obj: Any, where: str, limits: Limits, budget: _Budget
) -> tuple[str, np.ndarray, TensorLocation | None]:
    record = _fields(obj, where, ("name", "dtype", "shape", "data", "crc32c"))
    name = _name(record["name"], f"{where}.name")
    where = f"{where} ({_short(name)})"
    stored = _int(record["crc32c"], f"{where}.crc32c", 0, _U32_MAX)
    data = record["data"]
    raw = data.data if type(data) is _Bin else data
    if type(raw) in (bytes, memoryview) and crc32c(raw) != stored:
        raise ModelChecksumError(f"{where}: data CRC-32C does not match")
    array = _decode_array(record, where, limits, budget)
    location = None
    if type(data) is _Bin:
        location = TensorLocation(
            _HEADER + data.offset, array.nbytes, record["dtype"], array.shape, stored
        )
    return name, array, location


def _decode_array(spec: dict, where: str, limits: Limits, budget: _Budget) -> np.ndarray:
    dtype = DTYPES[_dtype(spec["dtype"], f"{where}.dtype")]
    shape = _shape(spec["shape"], f"{where}.shape", limits)
    data = spec["data"]
    if type(data) is _Bin:
        data = data.data
    elif type(data) is not bytes:
        raise ModelSchemaError(f"{where}.data: expected bin, got {_type(data)}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limits.max_tensor_bytes:
        raise ModelLimitError(
            f"{where}: {nbytes} bytes exceed max_tensor_bytes={limits.max_tensor_bytes}",
            "max_tensor_bytes",
        )
    if len(data) != nbytes:
        raise ModelSchemaError(f"{where}: {len(data)} data bytes, shape {shape} needs {nbytes}")
    budget.take(nbytes, where)
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype.kind == "b" and nbytes and np.frombuffer(data, np.uint8).max() > 1:
        raise ModelSchemaError(f"{where}: bool data holds bytes other than 0 and 1")
    return array


# Field-level checks. Each names where it looked, so an error message points into the file.


def _fields(obj: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if type(obj) is not dict:
        raise ModelSchemaError(f"{where}: expected a map, got {_type(obj)}")
    if obj.keys() != set(keys):
        missing = [k for k in keys if k not in obj]
        unknown = [_short(k) for k in obj if k not in keys][:5]
        raise ModelSchemaError(f"{where}: missing fields {missing}, unknown fields {unknown}")
    return obj


def _map_of(obj: Any, where: str, check: Any) -> dict[str, Any]:
    if type(obj) is not dict:
        raise ModelSchemaError(f"{where}: expected a map, got {_type(obj)}")
    return {key: check(value, f"{where}[{_short(key)}]") for key, value in obj.items()}


def _list(obj: Any, where: str) -> list:
    if type(obj) is not list:
        raise ModelSchemaError(f"{where}: expected an array, got {_type(obj)}")
    return obj


def _str(obj: Any, where: str) -> str:
    if type(obj) is not str:
        raise ModelSchemaError(f"{where}: expected a str, got {_type(obj)}")
    return obj


def _name(obj: Any, where: str) -> str:
    if not _str(obj, where):
        raise ModelSchemaError(f"{where}: must not be empty")
    return obj


def _int(obj: Any, where: str, low: int, high: int) -> int:
    if type(obj) is not int:  # bool is a subclass of int: excluded on purpose
        raise ModelSchemaError(f"{where}: expected an int, got {_type(obj)}")
    if not low <= obj <= high:
        raise ModelSchemaError(f"{where}: {obj} is outside [{low}, {high}]")
    return obj


def _int64(obj: Any, where: str) -> int:
    return _int(obj, where, _INT64_MIN, _INT64_MAX)


def _dtype(obj: Any, where: str) -> str:
    if _str(obj, where) not in DTYPES:
        raise ModelSchemaError(f"{where}: unknown dtype {_short(obj)}")
    return obj


def _shape(obj: Any, where: str, limits: Limits) -> tuple[int, ...]:
    dims = _list(obj, where)
    if len(dims) > limits.max_rank:
        raise ModelLimitError(
            f"{where}: rank {len(dims)} exceeds max_rank={limits.max_rank}", "max_rank"
        )
    shape = tuple(_int64(d, where) for d in dims)
    for d in shape:
        if d < 0:
            raise ModelSchemaError(f"{where}: negative dim {d}")
        if d > limits.max_dim:
            raise ModelLimitError(f"{where}: dim {d} exceeds max_dim={limits.max_dim}", "max_dim")
    if math.prod(shape) > limits.max_elements:
        raise ModelLimitError(
            f"{where}: {shape} exceeds max_elements={limits.max_elements}", "max_elements"
        )
    return shape


def _identity(obj: Any, where: str) -> Any:
    return obj


def _type(obj: Any) -> str:
    return "bytes" if type(obj) is _Bin else type(obj).__name__


def _short(text: Any, width: int = 60) -> str:
    shown = repr(text)
    return shown if len(shown) <= width else shown[: width - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Graph checks


def validate_graph(
    graph: GraphDef,
    tensor_names: Iterable[str] = (),
    *,
    allowed_ops: Collection[str] | None = None,
) -> list[int]:
    """Check names and structure of a (type-correct) graph; return a topological order.

    Every value is defined once (graph input, tensor, node output), node names are unique,
    every reference resolves, ops are in ``allowed_ops`` (if given), and there is no cycle."""
    defined: dict[str, str] = {}

    def define(name: str, what: str) -> None:
        if name in defined:
            raise ModelDuplicateNameError(f"{_short(name)} is {defined[name]} and {what}")
        defined[name] = what

    for vi in graph.inputs:
        define(vi.name, "a graph input")
    for name in tensor_names:
        define(name, "a tensor")
    node_names: set[str] = set()
    for node in graph.nodes:
        if node.name in node_names:
            raise ModelDuplicateNameError(f"node name {_short(node.name)} is used twice")
        node_names.add(node.name)
        if allowed_ops is not None and node.op not in allowed_ops:
            raise ModelUnknownOpError(f"node {_short(node.name)}: unknown op {_short(node.op)}")
        for out in node.outputs:
            if out:
                define(out, f"an output of node {_short(node.name)}")
    for node in graph.nodes:
        for name in node.inputs:
            if name and name not in defined:
                raise ModelDanglingError(
                    f"node {_short(node.name)}: input {_short(name)} is defined nowhere"
                )
    _check_references(graph, defined)
    return topological_order(graph)


def _check_references(graph: GraphDef, defined: Mapping[str, str]) -> None:
    seen: set[str] = set()
    for vi in graph.outputs:
        if vi.name not in defined:
            raise ModelDanglingError(f"graph output {_short(vi.name)} is produced by nothing")
        if vi.name in seen:
            raise ModelDuplicateNameError(f"graph output {_short(vi.name)} is listed twice")
        seen.add(vi.name)
    for name in graph.value_info:
        if name not in defined:
            raise ModelDanglingError(f"value_info names {_short(name)}, which nothing defines")


def topological_order(graph: GraphDef) -> list[int]:
    """Node indices in an order where every node runs after the nodes it reads from (Kahn's
    algorithm). Among ready nodes the earliest in the file goes first, so a file that is already
    sorted keeps its order. Raises :class:`ModelCycleError` if there is none."""
    nodes = graph.nodes
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for out in node.outputs:
            if out:
                if out in producer:
                    raise ModelDuplicateNameError(f"value {_short(out)} is produced twice")
                producer[out] = i
    readers: list[list[int]] = [[] for _ in nodes]
    waiting = [0] * len(nodes)
    for j, node in enumerate(nodes):
        for name in node.inputs:
            i = producer.get(name) if name else None
            if i is not None:
                readers[i].append(j)
                waiting[j] += 1
    ready = [j for j, count in enumerate(waiting) if count == 0]
    heapify(ready)
    order: list[int] = []
    while ready:
        i = heappop(ready)
        order.append(i)
        for j in readers[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heappush(ready, j)
    if len(order) < len(nodes):
        stuck = [_short(nodes[j].name) for j, count in enumerate(waiting) if count][:5]
        raise ModelCycleError(f"nodes form a cycle; among them: {', '.join(stuck)}")
    return order


# ---------------------------------------------------------------------------------------------
# Summary


def info(model: ModelFile) -> dict[str, Any]:
    """A JSON-ready summary for ``flight model info``: what the model is and what it costs.
    Parameters are the initializers (``tensors``); tensor-valued attributes are not counted."""
    graph = model.graph
    ops = Counter(node.op for node in graph.nodes)
    return {
        "producer": model.producer,
        "graph": graph.name,
        "nodes": len(graph.nodes),
        "ops": dict(sorted(ops.items(), key=lambda item: (-item[1], item[0]))),
        "tensors": len(model.tensors),
        "parameters": sum(int(t.size) for t in model.tensors.values()),
        "parameter_bytes": sum(int(t.nbytes) for t in model.tensors.values()),
        "inputs": [_value_summary(vi) for vi in graph.inputs],
        "outputs": [_value_summary(vi) for vi in graph.outputs],
        "metadata": dict(model.metadata),
    }


def _value_summary(vi: ValueInfo) -> dict[str, Any]:
    return {"name": vi.name, "dtype": vi.dtype, "shape": list(vi.shape)}
