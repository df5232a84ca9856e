"""The declaration layer: wire types, fields, packet and command encoders and decoders.

A synthetic packet and command with every wire type check the mechanics; test_catalog.py runs
the same properties over the real declarations.
"""

from __future__ import annotations

import enum
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from schema_strategies import values_of

from flight.errors import CommandError, LinkError, PacketError
from flight.link.codes import FailureCode
from flight.link.schema import (
    BOOL,
    F32,
    F64,
    I16,
    I32,
    U8,
    U16,
    U32,
    U64,
    Blob,
    Bytes,
    CommandDef,
    Enum,
    Field,
    PacketDef,
    Str,
)

COLOUR = Enum("colour", {"red": 0, "green": 1, "blue": 7})
EVERY_TYPE = (
    Field("a", U8),
    Field("b", U16, "s", (10, 1000), "narrowed"),
    Field("c", U32),
    Field("d", U64),
    Field("e", I16, "", (-1, 500)),
    Field("f", I32),
    Field("g", F32),
    Field("h", F64, "m", (-2.5, 2.5)),
    Field("i", BOOL),
    Field("j", COLOUR),
    Field("k", Str(12)),
    Field("l", U16),
    Field("m", Blob(40)),
    Field("n", Bytes(4)),
    Field("o", Str(3)),
)
PACKET = PacketDef("SYNTH", 0x42, "every type", EVERY_TYPE)
COMMAND = CommandDef(77, "synth", "every type", EVERY_TYPE)
VALID = {
    "a": 255, "b": 10, "c": 2**32 - 1, "d": 2**64 - 1, "e": -1, "f": -(2**31), "g": 1.5,
    "h": 2.5, "i": True, "j": "blue", "k": "héllo", "l": 0x0102, "m": b"\x00\x01",
    "n": b"abcd", "o": "",
}  # fmt: skip


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
        for k in a
    )


# --- layout ---------------------------------------------------------------------------------
def test_layout_is_big_endian_with_length_prefixes():
    packet = PacketDef(
        "P", 1, "", (Field("x", U16), Field("y", I16), Field("s", Str(8)), Field("z", U32))
    )
    data = packet.encode({"x": 0x0102, "y": -2, "s": "é", "z": 0x03040506})
    assert data == b"\x01\x02\xff\xfe\x02\xc3\xa9\x03\x04\x05\x06"
    blob = PacketDef("B", 1, "", (Field("b", Blob(300)), Field("e", COLOUR)))
    assert blob.encode({"b": b"xyz", "e": "blue"}) == b"\x00\x03xyz\x07"


def test_sizes_count_prefixes_and_maxima():
    assert PACKET.min_size == 1 + 2 + 4 + 8 + 2 + 4 + 4 + 8 + 1 + 1 + 1 + 2 + 2 + 4 + 1
    assert PACKET.max_size == PACKET.min_size + 12 + 40 + 3
    assert COMMAND.min_size == PACKET.min_size + 2


@given(values_of(EVERY_TYPE))
def test_every_type_round_trips(values):
    data = PACKET.encode(values)
    assert PACKET.min_size <= len(data) <= PACKET.max_size
    assert PACKET.decode(data) == values
    body = COMMAND.encode(values)
    assert body[:2] == b"\x00\x4d" and body[2:] == data
    assert COMMAND.decode_args(body[2:]) == values
    assert PACKET.decode(memoryview(data)) == values == PACKET.decode(bytearray(data))


@given(values_of(EVERY_TYPE))
def test_no_strict_prefix_and_no_extension_decodes(values):
    """Layouts are self-delimiting: every truncation and every extra byte is MALFORMED."""
    data = PACKET.encode(values)
    for cut in range(len(data)):
        with pytest.raises(PacketError) as excinfo:
            PACKET.decode(data[:cut])
        assert excinfo.value.code == FailureCode.MALFORMED
        with pytest.raises(CommandError) as excinfo:
            COMMAND.decode_args(data[:cut])
        assert excinfo.value.code == FailureCode.MALFORMED
    with pytest.raises(PacketError, match="trailing"):
        PACKET.decode(data + b"\x00")


def _decode_or_error(data: bytes) -> None:
    """The fuzz oracle: a PacketError(MALFORMED), or values that re-encode to the same bytes."""
    try:
        values = PACKET.decode(data)
    except PacketError as exc:
        assert exc.code == FailureCode.MALFORMED
    else:
        again = PACKET.encode(values)  # the values are valid (the encoder checks them)
        if not any(isinstance(v, float) and math.isnan(v) for v in values.values()):
            assert again == bytes(data)
    try:
        args = COMMAND.decode_args(data)
    except CommandError as exc:
        assert exc.code in (FailureCode.MALFORMED, FailureCode.INVALID_ARGUMENT)
    else:
        assert _equal(args, values)


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_link_errors(data):
    _decode_or_error(data)


@given(values_of(EVERY_TYPE), st.data())
def test_bit_flips_raise_only_link_errors(values, data):
    raw = bytearray(PACKET.encode(values))
    for _ in range(data.draw(st.integers(1, 3))):
        bit = data.draw(st.integers(0, 8 * len(raw) - 1))
        raw[bit // 8] ^= 0x80 >> (bit % 8)
    _decode_or_error(bytes(raw))


# --- decoding errors: telemetry is MALFORMED, commands tell structure from value -------------
def _body(**changes) -> bytes:
    """VALID's argument block with some wire bytes replaced by hand (the encoder refuses)."""
    raw = bytearray(PACKET.encode(VALID))
    for offset, value in changes.values():
        raw[offset : offset + len(value)] = value
    return bytes(raw)


# byte offsets in VALID's encoding: b at 1, e at 15, i at 33, j at 34, k at 35 ("héllo": 6 bytes)
BAD_VALUES = {
    "narrowed range low": {"b": (1, b"\x00\x09")},
    "narrowed range high": {"b": (1, b"\x03\xe9")},
    "signed range": {"e": (15, b"\xff\xfe")},
    "float range": {"h": (25, struct.pack(">d", 2.6))},
    "float NaN under a range": {"h": (25, struct.pack(">d", math.nan))},
    "boolean byte 2": {"i": (33, b"\x02")},
    "unknown enum value": {"j": (34, b"\x02")},
}


@pytest.mark.parametrize("changes", BAD_VALUES.values(), ids=list(BAD_VALUES))
def test_a_bad_value_is_invalid_argument_in_commands_and_malformed_in_telemetry(changes):
    body = _body(**changes)
    with pytest.raises(CommandError) as excinfo:
        COMMAND.decode_args(body)
    assert excinfo.value.code == FailureCode.INVALID_ARGUMENT
    with pytest.raises(PacketError) as excinfo:
        PACKET.decode(body)
    assert excinfo.value.code == FailureCode.MALFORMED


def _with_string(k: bytes) -> bytes:
    """VALID's encoding with field k's length-prefixed bytes replaced by ``k``."""
    raw = PACKET.encode(VALID)
    return raw[:35] + k + raw[35 + 1 + len("héllo".encode()) :]


def test_a_string_longer_than_declared_is_invalid_argument():
    assert COMMAND.decode_args(_with_string(b"\x0c" + b"x" * 12))["k"] == "x" * 12
    with pytest.raises(CommandError) as excinfo:
        COMMAND.decode_args(_with_string(b"\x0d" + b"x" * 13))
    assert excinfo.value.code == FailureCode.INVALID_ARGUMENT
    with pytest.raises(PacketError):
        PACKET.decode(_with_string(b"\x0d" + b"x" * 13))


@pytest.mark.parametrize("bad", [b"\x02\xc3\x28", b"\x01\xff", b"\x03\xed\xa0\x80"])
def test_bad_utf8_is_malformed(bad):
    with pytest.raises(CommandError) as excinfo:
        COMMAND.decode_args(_with_string(bad))
    assert excinfo.value.code == FailureCode.MALFORMED
    with pytest.raises(PacketError, match="UTF-8"):
        PACKET.decode(_with_string(bad))


def test_a_length_running_past_the_end_is_malformed():
    packet = PacketDef("P", 1, "", (Field("b", Blob(100)),))
    assert packet.decode(b"\x00\x02ab") == {"b": b"ab"}
    for raw in (b"", b"\x00", b"\x00\x03ab"):
        with pytest.raises(PacketError):
            packet.decode(raw)


# --- encoding errors: telemetry's are bugs, commands' are the ground's -----------------------
BAD_ENCODES = {
    "missing": {k: v for k, v in VALID.items() if k != "c"},
    "unknown": {**VALID, "zz": 1},
    "range": {**VALID, "b": 1001},
    "natural range": {**VALID, "a": 256},
    "negative unsigned": {**VALID, "c": -1},
    "float range": {**VALID, "h": 2.51},
    "float too big for f32": {**VALID, "g": 1e39},
    "float as str": {**VALID, "g": "1.5"},
    "int as float": {**VALID, "a": 1.0},
    "int as str": {**VALID, "a": "1"},
    "bool 2": {**VALID, "i": 2},
    "bool str": {**VALID, "i": "yes"},
    "enum label": {**VALID, "j": "purple"},
    "enum value": {**VALID, "j": 2},
    "str too long": {**VALID, "k": "x" * 13},
    "str too long in UTF-8": {**VALID, "k": "é" * 7},
    "str surrogate": {**VALID, "k": "\ud800"},
    "str bytes": {**VALID, "k": b"abc"},
    "blob too long": {**VALID, "m": bytes(41)},
    "blob str": {**VALID, "m": "abc"},
    "bytes short": {**VALID, "n": b"abc"},
    "bytes long": {**VALID, "n": b"abcde"},
}


@pytest.mark.parametrize("values", BAD_ENCODES.values(), ids=list(BAD_ENCODES))
def test_bad_values_do_not_encode(values):
    with pytest.raises(ValueError) as excinfo:
        PACKET.encode(values)
    assert not isinstance(excinfo.value, LinkError)  # a bug on the board, not hostile input
    with pytest.raises(CommandError) as excinfo:
        COMMAND.encode(values)
    assert excinfo.value.code == FailureCode.INVALID_ARGUMENT


def test_encoders_take_enum_members_numpy_scalars_and_buffers():
    np = pytest.importorskip("numpy")

    class Code(enum.IntEnum):
        A = 3
        B = 9

    class Word(enum.StrEnum):
        ONE = "one"
        TWO = "two"

    packet = PacketDef(
        "P",
        1,
        "",
        (
            Field("c", Enum.of(Code)),
            Field("w", Enum.of(Word)),
            Field("n", U32),
            Field("f", F32),
            Field("b", Blob(16)),
        ),
    )
    values = {"c": Code.B, "w": Word.TWO, "n": np.uint32(7), "f": np.float32(0.5)}
    data = packet.encode({**values, "b": np.arange(3, dtype=np.uint16)})
    assert packet.decode(data) == {"c": "B", "w": "two", "n": 7, "f": 0.5, "b": b"\0\0\1\0\2\0"}
    assert Enum.of(Code).labels == {"A": 3, "B": 9}
    assert Enum.of(Word).labels == {"one": 0, "two": 1}


# --- declarations refuse mistakes at import -------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: Field("s", Str(4), range=(0, 1)),
        lambda: Field("x", U8, range=(0, 256)),
        lambda: Field("x", I16, range=(5, 4)),
        lambda: Field("not a name", U8),
        lambda: Enum("e", {"a": 256}),
        lambda: Enum("e", {"a": 1, "b": 1}),
        lambda: Str(256),
        lambda: Blob(0),
        lambda: Bytes(0),
        lambda: PacketDef("P", 1, "", (Field("x", U8), Field("x", U16))),
        lambda: CommandDef(70000, "c", ""),
    ],
)
def test_bad_declarations_raise(make):
    with pytest.raises(ValueError):
        make()


@given(st.text(max_size=100), st.integers(1, 60))
def test_fit_cuts_text_to_fit_on_a_character_boundary(text, max_len):
    fitted = Str(max_len).fit(text)
    assert len(fitted.encode()) <= max_len
    if len(text.encode("utf-8", "replace")) <= max_len:
        assert fitted == text.encode("utf-8", "replace").decode()
    else:
        assert fitted.endswith("..."[:max_len]) and text.startswith(fitted[:-3])
        if max_len >= 3 and text.isascii():
            assert fitted == text[: max_len - 3] + "..."
