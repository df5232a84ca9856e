"""The catalog: every packet and command of the spec (notes/link-spec.md), each round-trips,
and every decoder meets random, truncated and bit-flipped input with a LinkError only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from schema_strategies import values_of

from flight.errors import CommandError, PacketError
from flight.events import Severity
from flight.link import catalog
from flight.link.catalog import COMMANDS, COMMANDS_BY_NAME, TELEMETRY, decode_command
from flight.link.codes import Apid, FailureCode, Stage
from flight.link.schema import CommandDef, Enum, Field
from flight.modes import MODES
from flight.recovery.messages import PartitionState, SystemState


def _u32(*names: str) -> list[tuple[str, str]]:
    return [(n, "U32") for n in names]


# The spec's layouts, copied by hand: a reordered, retyped or renamed field fails here, because
# ground systems decode by position.
SPEC_TELEMETRY = {
    Apid.HOUSEKEEPING: [
        *_u32("frames", "inferences", "delivered", "withheld", "corrected", "unavailable"),
        *_u32("scrub_repairs", "scrub_unrepairable", "scrub_passes", "golden_reloads"),
        *_u32("restarts", "escalations", "deadline_misses"),
        ("system_state", "Enum(system_state)"),
        ("safe_mode", "BOOL"),
        ("boot_count", "U32"),
        ("last_reset_reason", "Str(64)"),
        *_u32("watchdog_attempted", "watchdog_withheld", "watchdog_failed"),
        *_u32("cds_write_failures", "cds_copies_corrupt", "events_total"),
        *_u32("tm_sent", "tm_dropped", "tc_accepted", "tc_rejected", "packets_rejected"),
        ("files_received", "U16"),
        ("contact_open", "BOOL"),
        ("active_spi", "U16"),
        ("downlink_queued", "U32"),
    ],
    Apid.PARTITION: [
        ("partition", "Str(32)"),
        ("mode", "Enum(redundancy_mode)"),
        ("state", "Enum(partition_state)"),
        ("disabled", "BOOL"),
        *_u32("delivered", "withheld", "restarts", "replica_restarts"),
        *_u32("lost_0", "lost_1", "lost_2"),
        ("model", "Str(64)"),
        ("model_crc", "U32"),
    ],
    Apid.EVENT: [
        ("event_id", "U16"),
        ("severity", "Enum(severity)"),
        ("count", "U32"),
        ("args", "Str(240)"),
    ],
    Apid.RESULT: [
        ("partition", "Str(32)"),
        ("frame", "U32"),
        ("sequence", "U32"),
        ("status", "Enum(result_status)"),
        ("top1", "I16"),
        ("crc32c", "U32"),
        ("output", "Blob(65000)"),
        ("sample", "U32"),
    ],
    Apid.VERIFICATION: [
        ("stage", "Enum(stage)"),
        ("request_id", "U16"),
        ("request_seq", "U16"),
        ("spi", "U16"),
        ("sequence", "U32"),
        ("opcode", "U16"),
        ("code", "Enum(failure_code)"),
        ("detail", "Str(200)"),
    ],
    Apid.DUMP: [
        ("what", "Enum(dump_kind)"),
        ("part", "U16"),
        ("parts", "U16"),
        ("data", "Blob(1024)"),
    ],
    Apid.INJECTION: [
        ("request_seq", "U16"),
        ("site", "Str(16)"),
        ("target", "Str(64)"),
        ("address", "U64"),
        ("bit", "U8"),
        ("applied", "BOOL"),
        ("old", "Blob(16)"),
        ("new", "Blob(16)"),
    ],
}
P = ("partition", "Str(32)", None)
SPEC_COMMANDS = {
    1: ("ping", [("token", "U32", None)]),
    2: ("set_redundancy", [P, ("mode", "Enum(redundancy_mode)", None)]),
    3: ("restart_partition", [P]),
    4: ("enable_partition", [P]),
    5: ("disable_partition", [P]),
    6: ("exit_safe_mode", []),
    7: ("scrub_now", []),
    8: ("dump_cds", []),
    9: ("dump_reset_log", []),
    10: ("open_contact", [("duration_s", "U32", (1, 86400))]),
    11: ("close_contact", []),
    12: ("switch_key", [("spi", "U16", (1, 65535))]),
    13: (
        "model_upload",
        [
            P,
            ("file", "Str(64)", None),
            ("mac", "Bytes(32)", None),
            ("trial_frames", "U16", (1, 1000)),
        ],
    ),
    14: ("send_housekeeping", []),
    100: (
        "test_flip_bit",
        [P, ("copy", "U8", (0, 2)), ("byte_offset", "U32", None), ("bit", "U8", (0, 7))],
    ),
    101: (
        "inject",
        [
            ("site", "Enum(inject_site)", None),
            P,
            ("copy", "U8", None),
            ("offset", "U64", None),
            ("bit", "U8", None),
            ("fault", "Enum(fault_model)", None),
            ("cluster", "U8", None),
            ("node", "Str(64)", None),
        ],
    ),
    102: ("hang_partition", [P, ("replica", "U8", (0, 2))]),
    103: (
        "crash_partition",
        [P, ("replica", "U8", (0, 2)), ("signal", "Enum(crash_signal)", None)],
    ),
    104: (
        "flip_memory",
        [
            ("target", "Enum(memory_target)", None),
            P,
            ("replica", "U8", (0, 2)),
            ("draw", "U64", None),
            ("bits", "U8", (1, 8)),
        ],
    ),
}
PACKETS = sorted(TELEMETRY.values(), key=lambda p: p.apid)
ALL_COMMANDS = sorted(COMMANDS.values(), key=lambda c: c.opcode)


# --- the spec -------------------------------------------------------------------------------
def test_telemetry_is_the_spec():
    assert {a: [(f.name, repr(f.type)) for f in p.fields] for a, p in TELEMETRY.items()} == {
        int(a): fields for a, fields in SPEC_TELEMETRY.items()
    }
    assert catalog.RESULT.fields[4].bounds == (-1, 32767)


def test_commands_are_the_spec():
    declared = {
        c.opcode: (c.name, [(f.name, repr(f.type), f.range) for f in c.args]) for c in ALL_COMMANDS
    }
    assert declared == SPEC_COMMANDS
    assert [c.name for c in ALL_COMMANDS if c.test_mode_only] == [
        "test_flip_bit",
        "inject",
        "hang_partition",
        "crash_partition",
        "flip_memory",
    ]
    assert {c.name: c for c in ALL_COMMANDS} == COMMANDS_BY_NAME


def test_enums_name_every_member_of_their_source():
    fields = {(p.name, f.name): f.type for p in PACKETS for f in p.fields}
    assert set(fields["PARTITION", "state"].labels) == {s.value for s in PartitionState}
    assert set(fields["PARTITION", "mode"].labels) == set(MODES)
    assert set(fields["HOUSEKEEPING", "system_state"].labels) == {s.value for s in SystemState}
    assert fields["EVENT", "severity"].labels == {s.name: s.value for s in Severity}
    assert fields["VERIFICATION", "stage"].labels == {s.name: s.value for s in Stage}
    assert fields["VERIFICATION", "code"].labels == {c.name: c.value for c in FailureCode}


@pytest.mark.parametrize("declared", [*PACKETS, *ALL_COMMANDS], ids=lambda d: d.name)
def test_everything_is_described_in_one_line(declared):
    assert declared.description and "\n" not in declared.description
    for f in getattr(declared, "fields", None) or getattr(declared, "args", ()):
        assert f.description and "\n" not in f.description, f.name
        assert isinstance(f.unit, str)


def test_every_packet_fits_a_space_packet():
    assert max(p.max_size for p in PACKETS) <= catalog.MAX_TM_USER_DATA
    assert catalog.RESULT.max_size > 65000  # the output blob is the big one


def test_verification_takes_the_codes_enums_as_they_are():
    values = {
        "stage": Stage.ACCEPTANCE_FAILURE, "request_id": 0x1900, "request_seq": 0xC001,
        "spi": 1, "sequence": 5, "opcode": 2, "code": FailureCode.REPLAY, "detail": "old",
    }  # fmt: skip
    decoded = catalog.VERIFICATION.decode(catalog.VERIFICATION.encode(values))
    assert decoded["stage"] == "ACCEPTANCE_FAILURE" and decoded["code"] == "REPLAY"
    partition = {f.name: 0 for f in catalog.PARTITION.fields}
    partition.update(partition="p", mode="tmr", state=PartitionState.DISABLED, disabled=True)
    partition["model"] = "m.flm"
    assert catalog.PARTITION.decode(catalog.PARTITION.encode(partition))["state"] == "disabled"


# --- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("packet", PACKETS, ids=lambda p: p.name)
@given(data=st.data())
def test_every_packet_round_trips(packet, data):
    values = data.draw(values_of(packet.fields))
    raw = packet.encode(values)
    assert packet.min_size <= len(raw) <= packet.max_size
    assert packet.decode(raw) == values


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: c.name)
@given(data=st.data())
def test_every_command_round_trips(command, data):
    values = data.draw(values_of(command.args))
    body = command.encode(values)
    assert body[:2] == command.opcode.to_bytes(2, "big")
    assert decode_command(body) == (command, values)


# --- refusals -------------------------------------------------------------------------------
def _code(body: bytes) -> FailureCode:
    with pytest.raises(CommandError) as excinfo:
        decode_command(body)
    return excinfo.value.code


def test_decode_command_failure_codes():
    assert _code(b"") == FailureCode.MALFORMED
    assert _code(b"\x00") == FailureCode.MALFORMED
    assert _code(b"\x00\x00") == FailureCode.UNKNOWN_OPCODE
    assert _code(b"\x00\x0f") == FailureCode.UNKNOWN_OPCODE
    assert _code(b"\xff\xff" + bytes(8)) == FailureCode.UNKNOWN_OPCODE
    assert _code(b"\x00\x06\x00") == FailureCode.MALFORMED  # exit_safe_mode takes nothing
    assert _code(b"\x00\x01\x00\x00\x00") == FailureCode.MALFORMED  # ping's token is 4 bytes
    assert _code(b"\x00\x0a\x00\x00\x00\x00") == FailureCode.INVALID_ARGUMENT  # 0 s
    assert _code(b"\x00\x0a\x00\x01\x51\x81") == FailureCode.INVALID_ARGUMENT  # 86401 s
    assert _code(b"\x00\x0c\x00\x00") == FailureCode.INVALID_ARGUMENT  # SPI 0
    assert _code(b"\x00\x02\x01p\x03") == FailureCode.INVALID_ARGUMENT  # no mode 3
    assert _code(b"\x00\x02\x01\xffp\x00") == FailureCode.MALFORMED  # bad UTF-8
    assert decode_command(b"\x00\x0a\x00\x01\x51\x80")[1] == {"duration_s": 86400}


def _unbounded(command: CommandDef) -> CommandDef:
    """The same layout without the declared ranges: it encodes what the real one refuses."""
    args = tuple(Field(f.name, f.type, f.unit, None, f.description) for f in command.args)
    return CommandDef(command.opcode, command.name, command.description, args)


RANGED = [(c, f) for c in ALL_COMMANDS for f in c.args if f.range is not None]


@pytest.mark.parametrize("command, arg", RANGED, ids=[f"{c.name}.{f.name}" for c, f in RANGED])
@given(data=st.data())
def test_out_of_range_arguments_are_invalid_argument(command, arg, data):
    natural, (low, high) = arg.type.bounds, arg.range
    outside = st.one_of(
        *([st.integers(natural[0], low - 1)] if low > natural[0] else []),
        *([st.integers(high + 1, natural[1])] if high < natural[1] else []),
    )
    if outside.is_empty:
        pytest.skip("the range is the type's (spi 1..65535 excludes only 0)")
    values = {**data.draw(values_of(command.args)), arg.name: data.draw(outside)}
    with pytest.raises(CommandError) as excinfo:
        command.encode(values)
    assert excinfo.value.code == FailureCode.INVALID_ARGUMENT
    assert _code(_unbounded(command).encode(values)) == FailureCode.INVALID_ARGUMENT


ENUM_ARGS = [(c, i) for c in ALL_COMMANDS for i, f in enumerate(c.args) if isinstance(f.type, Enum)]


@pytest.mark.parametrize("command, index", ENUM_ARGS, ids=[c.name for c, _ in ENUM_ARGS])
@given(data=st.data())
def test_unknown_enum_values_are_invalid_argument(command, index, data):
    values = data.draw(values_of(command.args))
    before = CommandDef(0, "before", "", command.args[:index])
    offset = len(before.encode({f.name: values[f.name] for f in command.args[:index]}))
    raw = bytearray(command.encode(values))
    labels = command.args[index].type.values
    raw[offset] = data.draw(st.integers(0, 255).filter(lambda v: v not in labels))
    assert _code(bytes(raw)) == FailureCode.INVALID_ARGUMENT


# --- fuzzing --------------------------------------------------------------------------------
def _command_oracle(body: bytes) -> None:
    try:
        command, args = decode_command(body)
    except CommandError as exc:
        assert exc.code in (
            FailureCode.MALFORMED,
            FailureCode.UNKNOWN_OPCODE,
            FailureCode.INVALID_ARGUMENT,
        )
    else:
        assert command.encode(args) == bytes(body)  # valid, and the only encoding of itself


def _packet_oracle(packet, raw: bytes) -> None:
    try:
        values = packet.decode(raw)
    except PacketError as exc:
        assert exc.code == FailureCode.MALFORMED
    else:
        assert packet.encode(values) == bytes(raw)


@given(st.binary(max_size=120))
def test_random_command_bodies(body):
    _command_oracle(body)


@given(st.sampled_from(sorted(COMMANDS)), st.binary(max_size=120))
def test_random_arguments_of_every_opcode(opcode, args):
    _command_oracle(opcode.to_bytes(2, "big") + args)


@given(st.sampled_from(ALL_COMMANDS), st.data())
def test_truncated_extended_and_flipped_commands(command, data):
    body = command.encode(data.draw(values_of(command.args)))
    for cut in range(len(body)):
        assert _code(body[:cut]) in (FailureCode.MALFORMED, FailureCode.UNKNOWN_OPCODE)
    assert _code(body + data.draw(st.binary(min_size=1, max_size=4))) == FailureCode.MALFORMED
    flipped = bytearray(body)
    for _ in range(data.draw(st.integers(1, 3))):
        bit = data.draw(st.integers(0, 8 * len(flipped) - 1))
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
    _command_oracle(bytes(flipped))


@pytest.mark.parametrize("packet", PACKETS, ids=lambda p: p.name)
@given(data=st.data())
def test_random_truncated_and_flipped_packets(packet, data):
    _packet_oracle(packet, data.draw(st.binary(max_size=300)))
    raw = packet.encode(data.draw(values_of(packet.fields)))
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(PacketError):
        packet.decode(raw[:cut])
    flipped = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        bit = data.draw(st.integers(0, 8 * len(flipped) - 1))
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
    _packet_oracle(packet, bytes(flipped))
