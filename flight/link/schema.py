"""Wire types, fields, packet and command declarations: declare once, encode and decode from it.

A telemetry point or a command argument is declared once (name, type, unit, range, one-line
description) in :mod:`flight.link.catalog`; the encoder, the decoder, the JSON and XTCE
dictionaries and docs/icd.md all read that one declaration, so they cannot disagree.

Everything is big-endian. Runs of fixed-size fields are packed and unpacked with one
precompiled :class:`struct.Struct`, so a housekeeping packet costs a few struct calls, not one
per field.

Decoders meet hostile bytes. :meth:`PacketDef.decode` raises only :class:`PacketError`
(``MALFORMED``), :meth:`CommandDef.decode_args` only :class:`CommandError` (``MALFORMED`` for
the structure: short or trailing bytes, bad UTF-8; ``INVALID_ARGUMENT`` for a value: out of
range, unknown enum value, a boolean byte other than 0 or 1, a string longer than declared).
Encoding a telemetry packet with a missing or bad value is a bug (``ValueError``); encoding a
command with one is the ground's mistake (``CommandError(INVALID_ARGUMENT)``).
"""

from __future__ import annotations

import enum
import numbers
import operator
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flight.errors import CommandError, PacketError
from flight.link.codes import FailureCode

__all__ = [
    "BOOL",
    "F32",
    "F64",
    "I16",
    "I32",
    "U8",
    "U16",
    "U32",
    "U64",
    "Blob",
    "Bytes",
    "CommandDef",
    "Enum",
    "Field",
    "PacketDef",
    "Str",
    "WireType",
]


class _Malformed(Exception):
    """The bytes cannot be parsed: short, trailing, bad UTF-8 (internal, translated)."""


class _Invalid(Exception):
    """A value parses but is not allowed: range, enum, boolean, length (internal, translated)."""


# --------------------------------------------------------------------------------------------
# Wire types
# --------------------------------------------------------------------------------------------
class WireType:
    """How one value travels. ``size`` and ``code`` are set for fixed-size types (``code`` is
    the :mod:`struct` format of the value); variable-size types set ``prefix`` (the bytes of
    their length prefix) and ``max_len`` and implement :meth:`unpack`. ``bounds`` arguments
    are a field's declared range (None: the type's own)."""

    name: str = ""
    kind: str = ""  #: integer, float, bool, enum, string, blob, bytes
    size: int | None = None
    code: str | None = None
    prefix: int = 0
    max_len: int = 0
    bounds: tuple[Any, Any] | None = None  #: the natural range of a numeric type

    def to_wire(self, value: Any, bounds: tuple[Any, Any] | None) -> Any:
        """``value`` as struct packs it (fixed types) or its encoded bytes (variable types)."""
        raise NotImplementedError

    def checker(self, bounds: tuple[Any, Any] | None) -> Callable[[Any], Any] | None:
        """A function from the unpacked value to the decoded one that raises :class:`_Invalid`,
        or None when every unpacked value is valid as it is (saves a call per field)."""
        return None

    def unpack(self, data: Any, offset: int) -> tuple[Any, int]:
        """Variable-size types: (value, offset after it)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


def _check_bounds(value: Any, bounds: tuple[Any, Any] | None) -> Any:
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise _Invalid(f"{value!r} outside {bounds[0]}..{bounds[1]}")
    return value


class _Integer(WireType):
    kind = "integer"

    def __init__(self, name: str, code: str, size: int, signed: bool) -> None:
        self.name, self.code, self.size, self.signed = name, code, size, signed
        bits = 8 * size
        half = 1 << (bits - 1)
        self.bounds = (-half, half - 1) if signed else (0, (1 << bits) - 1)

    def to_wire(self, value: Any, bounds: tuple[Any, Any] | None) -> int:
        try:
            number = operator.index(value)  # int, IntEnum, numpy integers; not float or str
        except TypeError:
            raise _Invalid(f"{value!r} is not an integer") from None
        return _check_bounds(number, bounds or self.bounds)

    def checker(self, bounds: tuple[Any, Any] | None) -> Callable[[Any], Any] | None:
        if bounds is None or bounds == self.bounds:
            return None
        low, high = bounds

        def check(value: int) -> int:
            if not low <= value <= high:
                raise _Invalid(f"{value} outside {low}..{high}")
            return value

        return check


class _Float(WireType):
    kind = "float"

    def __init__(self, name: str, code: str, size: int) -> None:
        self.name, self.code, self.size = name, code, size
        self._struct = struct.Struct(">" + code)

    def to_wire(self, value: Any, bounds: tuple[Any, Any] | None) -> float:
        if not isinstance(value, numbers.Real):  # int, float, numpy scalars; not str
            raise _Invalid(f"{value!r} is not a number")
        number = float(value)
        if bounds is not None and not bounds[0] <= number <= bounds[1]:  # NaN fails too
            raise _Invalid(f"{number!r} outside {bounds[0]}..{bounds[1]}")
        try:
            self._struct.pack(number)
        except OverflowError:
            raise _Invalid(f"{number!r} does not fit {self.name}") from None
        return number

    def checker(self, bounds: tuple[Any, Any] | None) -> Callable[[Any], Any] | None:
        if bounds is None:
            return None
        low, high = bounds

        def check(value: float) -> float:
            if not low <= value <= high:
                raise _Invalid(f"{value!r} outside {low}..{high}")
            return value

        return check


class _Bool(WireType):
    name, kind, size, code = "BOOL", "bool", 1, "B"

    def to_wire(self, value: Any, bounds: tuple[Any, Any] | None) -> int:
        if isinstance(value, (str, bytes)) or value not in (0, 1):
            raise _Invalid(f"{value!r} is not a boolean")
        return 1 if value else 0

    def checker(self, bounds: tuple[Any, Any] | None) -> Callable[[Any], Any]:
        return _decode_bool


def _decode_bool(value: int) -> bool:
    if value == 1:
        return True
    if value == 0:
        return False
    raise _Invalid(f"boolean byte {value} is neither 0 nor 1")


U8 = _Integer("U8", "B", 1, signed=False)
U16 = _Integer("U16", "H", 2, signed=False)
U32 = _Integer("U32", "I", 4, signed=False)
U64 = _Integer("U64", "Q", 8, signed=False)
I16 = _Integer("I16", "h", 2, signed=True)
I32 = _Integer("I32", "i", 4, signed=True)
F32 = _Float("F32", "f", 4)
F64 = _Float("F64", "d", 8)
BOOL = _Bool()


class Enum(WireType):
    """A u8 on the wire, a label (str) in Python. Encoding takes the label or its number (so an
    IntEnum member works as it is, and a StrEnum member is its label)."""

    kind, size, code = "enum", 1, "B"

    def __init__(self, name: str, labels: Mapping[str, int]) -> None:
        self.name = name
        self.labels: dict[str, int] = dict(labels)
        self.values: dict[int, str] = {v: k for k, v in self.labels.items()}
        if not self.labels or len(self.values) != len(self.labels):
            raise ValueError(f"enum {name}: needs labels with distinct values")
        for label, value in self.labels.items():
            if not isinstance(label, str) or not label or type(value) is not int:
                raise ValueError(f"enum {name}: {label!r}={value!r} is not str=int")
            if not 0 <= value <= 255:
                raise ValueError(f"enum {name}: {label}={value} does not fit a u8")

    @classmethod
    def of(cls, enum_type: type[enum.Enum], name: str | None = None) -> Enum:
        """From a Python enum: an IntEnum keeps its names and numbers; any other (a StrEnum)
        sends its values, numbered in declaration order (append only: never reorder)."""
        members = list(enum_type)
        if issubclass(enum_type, enum.IntEnum):
            labels = {m.name: int(m.value) for m in members}
        else:
            labels = {str(m.value): i for i, m in enumerate(members)}
        return cls(name or enum_type.__name__, labels)

    @classmethod
    def named(cls, name: str, labels: Iterable[str]) -> Enum:
        """Labels numbered 0, 1, ... in order."""
        return cls(name, {label: i for i, label in enumerate(labels)})

    def to_wire(self, value: Any, bounds: tuple[Any, Any] | None) -> int:
        if isinstance(value, str):
            number = self.labels.get(value)
            if number is None:
                raise _Invalid(f"{value!r} is not one of {sorted(self.labels)}")
            return number
        try:
            number = operator.index(value)
        except TypeError:
            raise _Invalid(f"{value!r} is not a label of {self.name}") from None
        if number not in self.values:
            raise _Invalid(f"{number} is not a value of {self.name}")
        return number

    def checker(self, bounds: tuple[Any, Any] | None) -> Callable[[Any], Any]:
        values = self.values

        def check(value: int) -> str:
            label = values.get(value)
            if label is None:
                raise _Invalid(f"{value} is not a value of {self.name}")
            return label

        return check

    def __repr__(self) -> str:
        return f"Enum({self.name})"


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        raise _Invalid("a str where bytes are expected")
    try:
        return bytes(memoryview(value).cast("B"))
    except TypeError:
        raise _Invalid(f"{type(value).__name__} is not bytes-like") from None


class Bytes(WireType):
    """Exactly ``n`` bytes (a MAC, a digest)."""

    kind = "bytes"

    def __init__(self, n: int) -> None:
        if not 1 <= n <= 65535:
            raise ValueError(f"Bytes({n}): n must be 1..65535")
        self.n = self.size = n
        self.name, self.code = f"Bytes({n})", f"{n}s"

    def to_wire(self, value: Any, bounds: tuple[Any, Any] | None) -> bytes:
        data = _as_bytes(value)
        if len(data) != self.n:
            raise _Invalid(f"{len(data)} bytes, expected exactly {self.n}")
        return data


class _Sized(WireType):
    """A length prefix (``prefix`` bytes, unsigned) then up to ``max_len`` bytes."""

    def __init__(self, max_len: int) -> None:
        limit = (1 << (8 * self.prefix)) - 1
        if not 1 <= max_len <= limit:
            raise ValueError(f"{type(self).__name__}({max_len}): max_len must be 1..{limit}")
        self.max_len = max_len
        self.name = f"{type(self).__name__}({max_len})"

    def _frame(self, data: bytes) -> bytes:
        if len(data) > self.max_len:
            raise _Invalid(f"{len(data)} bytes, at most {self.max_len}")
        return len(data).to_bytes(self.prefix, "big") + data

    def _span(self, data: Any, offset: int) -> tuple[int, int]:
        start = offset + self.prefix
        if start > len(data):
            raise _Malformed(f"ends inside the {self.prefix}-byte length of a {self.name}")
        length = int.from_bytes(data[offset:start], "big")
        end = start + length
        if end > len(data):
            raise _Malformed(f"length {length} runs past the end ({len(data) - start} left)")
        if length > self.max_len:
            raise _Invalid(f"length {length} exceeds the declared {self.max_len}")
        return start, end


class Str(_Sized):
    """u8 length, then that many bytes of UTF-8 (``max_len`` counts bytes, at most 255)."""

    kind, prefix = "string", 1

    def to_wire(self, value: Any, bounds: tuple[Any, Any] | None) -> bytes:
        if not isinstance(value, str):
            raise _Invalid(f"{value!r} is not a str")
        try:
            return self._frame(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise _Invalid(f"{value!r} cannot be encoded as UTF-8") from None

    def unpack(self, data: Any, offset: int) -> tuple[str, int]:
        start, end = self._span(data, offset)
        try:
            return str(data[start:end], "utf-8"), end
        except UnicodeDecodeError as exc:
            raise _Malformed(f"bad UTF-8: {exc.reason}") from None

    def fit(self, text: str) -> str:
        """``text`` cut to fit, on a character boundary, ending in "..." when cut (senders of
        free text such as event arguments and reset reasons use this: it never raises)."""
        data = text.encode("utf-8", "replace")
        if len(data) <= self.max_len:
            return data.decode("utf-8")
        return data[: max(self.max_len - 3, 0)].decode("utf-8", "ignore") + "..."[: self.max_len]


class Blob(_Sized):
    """u16 length, then that many bytes (``max_len`` at most 65535)."""

    kind, prefix = "blob", 2

    def to_wire(self, value: Any, bounds: tuple[Any, Any] | None) -> bytes:
        return self._frame(_as_bytes(value))

    def unpack(self, data: Any, offset: int) -> tuple[bytes, int]:
        start, end = self._span(data, offset)
        return bytes(data[start:end]), end


# --------------------------------------------------------------------------------------------
# Fields and layouts
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One telemetry point or command argument. ``range`` (inclusive, numeric types only)
    narrows the type's natural range; :attr:`bounds` is the range that applies."""

    name: str
    type: WireType
    unit: str = ""
    range: tuple[float, float] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"field name {self.name!r} is not an identifier")
        if self.range is None:
            return
        if self.type.kind not in ("integer", "float"):
            raise ValueError(f"field {self.name}: a range needs a numeric type, not {self.type}")
        low, high = self.range
        natural = self.type.bounds
        if not low <= high or (natural and not natural[0] <= low <= high <= natural[1]):
            raise ValueError(f"field {self.name}: range {self.range} does not fit {self.type}")

    @property
    def bounds(self) -> tuple[Any, Any] | None:
        return self.range if self.range is not None else self.type.bounds


class _Run:
    """Consecutive fixed-size fields, packed and unpacked by one struct."""

    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields
        self.names = tuple(f.name for f in fields)
        self.struct = struct.Struct(">" + "".join(f.type.code or "" for f in fields))
        self.checks = [
            (f.name, check) for f in fields if (check := f.type.checker(f.range)) is not None
        ]


class _Layout:
    """The compiled form of a field list: runs of fixed fields and single variable ones."""

    def __init__(self, owner: str, fields: Iterable[Field]) -> None:
        self.owner = owner
        self.fields = tuple(fields)
        self.names = frozenset(f.name for f in self.fields)
        if len(self.names) != len(self.fields):
            raise ValueError(f"{owner}: duplicate field names")
        steps: list[_Run | Field] = []
        run: list[Field] = []
        for f in self.fields:
            if f.type.size is not None:
                run.append(f)
                continue
            if run:
                steps.append(_Run(run))
                run = []
            steps.append(f)
        if run:
            steps.append(_Run(run))
        self.steps = steps
        self.min_size = sum(f.type.size or f.type.prefix for f in self.fields)
        self.max_size = sum(f.type.size or f.type.prefix + f.type.max_len for f in self.fields)

    def encode(self, values: Mapping[str, Any]) -> bytes:
        if len(values) != len(self.names) or not self.names.issuperset(values):
            missing = sorted(self.names.difference(values))
            unknown = sorted(set(values).difference(self.names))
            raise _Invalid(f"missing {missing}, unknown {unknown}")
        parts = []
        for step in self.steps:
            if isinstance(step, _Run):
                packed = [self._convert(f, values[f.name]) for f in step.fields]
                parts.append(step.struct.pack(*packed))
            else:
                parts.append(self._convert(step, values[step.name]))
        return b"".join(parts)

    @staticmethod
    def _convert(f: Field, value: Any) -> Any:
        try:
            return f.type.to_wire(value, f.range)
        except _Invalid as exc:
            raise _Invalid(f"{f.name}: {exc}") from None

    def decode(self, data: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        offset, total = 0, len(data)
        for step in self.steps:
            if isinstance(step, _Run):
                end = offset + step.struct.size
                if end > total:
                    raise _Malformed(f"{total} bytes, too short (at least {self.min_size})")
                out.update(zip(step.names, step.struct.unpack_from(data, offset), strict=True))
                for name, check in step.checks:
                    try:
                        out[name] = check(out[name])
                    except _Invalid as exc:
                        raise _Invalid(f"{name}: {exc}") from None
                offset = end
            else:
                try:
                    out[step.name], offset = step.type.unpack(data, offset)
                except (_Invalid, _Malformed) as exc:
                    raise type(exc)(f"{step.name}: {exc}") from None
        if offset != total:
            raise _Malformed(f"{total - offset} trailing bytes after the last field")
        return out


# --------------------------------------------------------------------------------------------
# Packets and commands
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PacketDef:
    """A telemetry packet: its APID and the layout of its user data (after the CUC time code,
    before the CRC)."""

    name: str
    apid: int
    description: str
    fields: tuple[Field, ...]
    _layout: _Layout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "_layout", _Layout(self.name, self.fields))

    @property
    def min_size(self) -> int:
        return self._layout.min_size

    @property
    def max_size(self) -> int:
        return self._layout.max_size

    def encode(self, values: Mapping[str, Any]) -> bytes:
        """The user data. A missing, unknown or out-of-range value is a bug: ValueError."""
        try:
            return self._layout.encode(values)
        except _Invalid as exc:
            raise ValueError(f"telemetry {self.name}: {exc}") from None

    def decode(self, data: bytes | bytearray | memoryview) -> dict[str, Any]:
        """Field name -> value; PacketError(MALFORMED) for anything not exactly this layout."""
        try:
            return self._layout.decode(data)
        except (_Malformed, _Invalid) as exc:
            raise PacketError(FailureCode.MALFORMED, f"telemetry {self.name}: {exc}") from None


_OPCODE = struct.Struct(">H")


@dataclass(frozen=True)
class CommandDef:
    """A telecommand: a u16 opcode, then its arguments. ``test_mode_only`` commands are refused
    (NOT_ALLOWED) unless the mission enables test mode; the service checks that."""

    opcode: int
    name: str
    description: str
    args: tuple[Field, ...] = ()
    test_mode_only: bool = False
    _layout: _Layout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.opcode <= 0xFFFF:
            raise ValueError(f"command {self.name}: opcode {self.opcode} does not fit a u16")
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "_layout", _Layout(self.name, self.args))

    @property
    def min_size(self) -> int:
        """Bytes of the body (opcode included) with the shortest arguments."""
        return _OPCODE.size + self._layout.min_size

    @property
    def max_size(self) -> int:
        return _OPCODE.size + self._layout.max_size

    def encode(self, values: Mapping[str, Any] | None = None) -> bytes:
        """The command body: opcode u16 + arguments. CommandError(INVALID_ARGUMENT) for a
        missing, unknown, mistyped or out-of-range argument."""
        try:
            return _OPCODE.pack(self.opcode) + self._layout.encode(values or {})
        except _Invalid as exc:
            raise CommandError(FailureCode.INVALID_ARGUMENT, f"{self.name}: {exc}") from None

    def decode_args(self, data: bytes | bytearray | memoryview) -> dict[str, Any]:
        """The argument block (after the opcode) -> argument name -> value."""
        try:
            return self._layout.decode(data)
        except _Malformed as exc:
            raise CommandError(FailureCode.MALFORMED, f"{self.name}: {exc}") from None
        except _Invalid as exc:
            raise CommandError(FailureCode.INVALID_ARGUMENT, f"{self.name}: {exc}") from None
