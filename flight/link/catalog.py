"""Every telemetry packet and every telecommand of the space link, declared once.

The encoders and decoders (:mod:`flight.link.schema`), the JSON and XTCE dictionaries and
docs/icd.md (:mod:`flight.link.dictionary`) are all made from the declarations below; nothing
else lists a field or an argument. Ground systems decode by these layouts: never reorder,
renumber or retype a field of a flown packet, only add packets, commands and enum labels.

How to add a telemetry packet:
  1. give it an APID in :class:`flight.link.codes.Apid` (a new number, never reuse one);
  2. declare ``NAME = PacketDef("NAME", Apid.NAME, "one line", (Field(...), ...))`` here, each
     field with its type, unit, range (when narrower than its type) and a one-line description,
     and add it to ``_PACKETS``;
  3. regenerate the ICD (``flight link icd -o docs/icd.md``); tests/link/ round-trips it.
How to add a telecommand:
  1. declare ``CommandDef(opcode, "name", "one line", (Field(...), ...))`` in ``_COMMANDS``
     with the next free opcode (test-mode commands from 100, ``test_mode_only=True``);
  2. teach the link service to execute it (flight/link/service.py);
  3. regenerate the ICD as above.
"""

from __future__ import annotations

from typing import Any

from flight.errors import CommandError
from flight.events import Severity
from flight.link.codes import Apid, FailureCode, Stage
from flight.link.schema import (
    BOOL,
    I16,
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
from flight.modes import MODES
from flight.recovery.messages import PartitionState, SystemState

__all__ = [
    "COMMANDS",
    "COMMANDS_BY_NAME",
    "DUMP",
    "EVENT",
    "HOUSEKEEPING",
    "INJECTION",
    "MAX_TM_USER_DATA",
    "PARTITION",
    "RESULT",
    "TC_SECURITY_HEADER",
    "TELEMETRY",
    "TM_SECONDARY_HEADER",
    "VERIFICATION",
    "decode_command",
]

#: Largest user data of a TM packet: a data field holds at most 65536 bytes, less the CUC time
#: code (7) and the CRC (2).
MAX_TM_USER_DATA = 65536 - 7 - 2

# --- shared types ---------------------------------------------------------------------------
PARTITION_NAME = Str(32)
MODE = Enum.named("redundancy_mode", MODES)
INJECT_SITE = Enum.named("inject_site", ("weights", "crc_table", "output", "activation", "cds"))
FAULT_MODEL = Enum.named("fault_model", ("seu", "mbu", "stuck0", "stuck1"))
CRASH_SIGNAL = Enum.named("crash_signal", ("SIGKILL", "SIGSEGV"))
MEMORY_TARGET = Enum.named("memory_target", ("partition", "supervisor"))


def _counter(name: str, unit: str, description: str) -> Field:
    return Field(name, U32, unit, None, description)


def _partition(description: str = "The partition's name, as in the mission.") -> Field:
    return Field("partition", PARTITION_NAME, "", None, description)


# --- headers (documentation and XTCE: the packet module encodes them) -----------------------
#: The TM secondary header: a CCSDS unsegmented time code (CUC), level 1, TAI epoch 1958.
TM_SECONDARY_HEADER: tuple[Field, ...] = (
    Field("cuc_p_field", U8, "", (0x1E, 0x1E), "CUC preamble: level 1, TAI 1958, 4+2 octets."),
    Field("cuc_coarse", U32, "s", None, "Whole seconds since 1958-01-01 TAI."),
    Field("cuc_fine", U16, "2^-16 s", None, "Fraction of the second, in units of 2^-16 s."),
)
#: The TC security header (SDLS authentication mode), before the command body.
TC_SECURITY_HEADER: tuple[Field, ...] = (
    Field("spi", U16, "", (1, 65535), "Security parameter index: names the key."),
    Field("sequence", U32, "", None, "Anti-replay sequence number under this key."),
)

# --- telemetry ------------------------------------------------------------------------------
HOUSEKEEPING = PacketDef(
    "HOUSEKEEPING",
    Apid.HOUSEKEEPING,
    "The board's counters, every N frames and on send_housekeeping.",
    (
        _counter("frames", "frames", "Minor frames run since boot."),
        _counter("inferences", "inferences", "Inferences run, all partitions."),
        _counter("delivered", "outputs", "Outputs delivered (voted good)."),
        _counter("withheld", "outputs", "Outputs withheld as uncorrectable or unsafe."),
        _counter("corrected", "outputs", "Outputs where the vote masked a disagreeing replica."),
        _counter("unavailable", "outputs", "Frames with no output (partition down or late)."),
        _counter("scrub_repairs", "blocks", "Memory blocks the scrubber repaired."),
        _counter("scrub_unrepairable", "blocks", "Blocks no copy of which could be proven good."),
        _counter("scrub_passes", "passes", "Full scrub passes over every region."),
        _counter("golden_reloads", "reloads", "Regions rewritten from the golden model file."),
        _counter("restarts", "restarts", "Partition restarts ordered by the recovery machine."),
        _counter("escalations", "escalations", "Restart budgets exceeded (degrade or disable)."),
        _counter("deadline_misses", "frames", "Frames whose work missed its deadline."),
        Field(
            "system_state",
            Enum.of(SystemState, "system_state"),
            "",
            None,
            "The recovery machine's system state.",
        ),
        Field("safe_mode", BOOL, "", None, "True while the board is in safe mode."),
        _counter("boot_count", "boots", "Supervisor starts recorded in the CDS."),
        Field("last_reset_reason", Str(64), "", None, "Why the last boot happened (cut: '...')."),
        _counter("watchdog_attempted", "strokes", "Hardware watchdog strokes attempted."),
        _counter("watchdog_withheld", "strokes", "Strokes withheld because a check failed."),
        _counter("watchdog_failed", "strokes", "Strokes the watchdog device refused."),
        _counter("cds_write_failures", "writes", "Critical data store commits that failed."),
        _counter("cds_copies_corrupt", "copies", "CDS copies found corrupt when read."),
        _counter("events_total", "events", "Events emitted since boot."),
        _counter("tm_sent", "packets", "Telemetry packets sent."),
        _counter("tm_dropped", "packets", "Telemetry packets dropped by the downlink store."),
        _counter("tc_accepted", "commands", "Telecommands accepted."),
        _counter("tc_rejected", "commands", "Telecommands rejected (any failure code)."),
        _counter("packets_rejected", "packets", "Received packets rejected before a command."),
        Field("files_received", U16, "files", None, "Files received over CFDP since boot."),
        Field("contact_open", BOOL, "", None, "True while a contact window is open."),
        Field("active_spi", U16, "", None, "SPI of the key commands are accepted under (0: none)."),
        _counter("downlink_queued", "packets", "Packets waiting in the downlink store."),
    ),
)

PARTITION = PacketDef(
    "PARTITION",
    Apid.PARTITION,
    "One partition's housekeeping: mode, state, counters and model; one packet per partition.",
    (
        _partition(),
        Field("mode", MODE, "", None, "Redundancy the partition runs now."),
        Field(
            "state",
            Enum.of(PartitionState, "partition_state"),
            "",
            None,
            "The recovery machine's state of the partition.",
        ),
        Field("disabled", BOOL, "", None, "True when disabled until commanded."),
        _counter("delivered", "outputs", "Outputs delivered by this partition."),
        _counter("withheld", "outputs", "Outputs withheld by this partition."),
        _counter("restarts", "restarts", "Restarts of this partition."),
        _counter("replica_restarts", "restarts", "Restarts of one of its replicas."),
        _counter("lost_0", "votes", "Votes replica 0 lost."),
        _counter("lost_1", "votes", "Votes replica 1 lost."),
        _counter("lost_2", "votes", "Votes replica 2 lost."),
        Field("model", Str(64), "", None, "File name of the model it runs."),
        Field("model_crc", U32, "", None, "CRC-32C of that model file."),
    ),
)

EVENT = PacketDef(
    "EVENT",
    Apid.EVENT,
    "One runtime event (flight.events), as it is emitted.",
    (
        Field("event_id", U16, "", None, "Stable event ID (see the events table)."),
        Field("severity", Enum.of(Severity, "severity"), "", None, "The event's severity."),
        Field("count", U32, "occurrences", None, "Occurrences this emission stands for."),
        Field("args", Str(240), "", None, '"key=value key=value", cut with a trailing "...".'),
    ),
)

RESULT = PacketDef(
    "RESULT",
    Apid.RESULT,
    "One inference result, with the CRC-32C the voter computed over the voted bytes.",
    (
        _partition("The partition that computed it."),
        Field("frame", U32, "frame", None, "Minor frame of the inference."),
        Field("sequence", U32, "", None, "The partition's inference sequence number."),
        Field(
            "status",
            Enum.named("result_status", ("delivered", "withheld")),
            "",
            None,
            "Delivered (voted good) or withheld.",
        ),
        Field("top1", I16, "class", (-1, 32767), "Index of the largest output; -1 for none."),
        Field("crc32c", U32, "", None, "CRC-32C of the output bytes, as the voter computed it."),
        Field("output", Blob(65000), "bytes", None, "The voted output: little-endian float32."),
        Field("sample", U32, "", None, "Dataset index of the input; 0xFFFFFFFF without one."),
    ),
)

VERIFICATION = PacketDef(
    "VERIFICATION",
    Apid.VERIFICATION,
    "A telecommand's verification report (ECSS PUS service 1).",
    (
        Field("stage", Enum.of(Stage, "stage"), "", None, "PUS-1 subtype: which stage, pass/fail."),
        Field("request_id", U16, "", None, "The TC's packet ID word (version/type/sec/APID)."),
        Field("request_seq", U16, "", None, "The TC's packet sequence control word."),
        Field("spi", U16, "", None, "SPI of the TC's security header (0 if unparsed)."),
        Field("sequence", U32, "", None, "The TC's security sequence number (0 if unparsed)."),
        Field("opcode", U16, "", None, "The TC's opcode (0 if unparsed)."),
        Field("code", Enum.of(FailureCode, "failure_code"), "", None, "NONE, or why it failed."),
        Field("detail", Str(200), "", None, "Human-readable detail of a failure."),
    ),
)

DUMP = PacketDef(
    "DUMP",
    Apid.DUMP,
    "One chunk of a dump (JSON text); the chunks in part order make the whole document.",
    (
        Field(
            "what",
            Enum.named("dump_kind", ("cds", "reset_log")),
            "",
            None,
            "What is dumped.",
        ),
        Field("part", U16, "", None, "Index of this chunk, 0 .. parts-1."),
        Field("parts", U16, "", (1, 65535), "Chunks in the dump."),
        Field("data", Blob(1024), "bytes", None, "This chunk of UTF-8 JSON text."),
    ),
)

INJECTION = PacketDef(
    "INJECTION",
    Apid.INJECTION,
    "Test mode: what an injection command did, with the bytes read back before and after.",
    (
        Field("request_seq", U16, "", None, "The TC's packet sequence control word."),
        Field("site", Str(16), "", None, "weights, crc_table, output, activation, cds, ..."),
        Field("target", Str(64), "", None, "What was hit: region[copy], node, file, pid:mapping."),
        Field("address", U64, "", None, "Byte offset in the site (virtual address: memory)."),
        Field("bit", U8, "", None, "Lowest bit flipped, counted from that byte (0 = LSB)."),
        Field("applied", BOOL, "", None, "Written (False: an armed upset never applied)."),
        Field("old", Blob(16), "bytes", None, "The bytes at address read back before."),
        Field("new", Blob(16), "bytes", None, "The same bytes read back after."),
    ),
)

_PACKETS = (HOUSEKEEPING, PARTITION, EVENT, RESULT, VERIFICATION, DUMP, INJECTION)
#: Every telemetry packet, by APID.
TELEMETRY: dict[int, PacketDef] = {p.apid: p for p in _PACKETS}
if len(TELEMETRY) != len(_PACKETS):  # a bug in this file, caught at import
    raise AssertionError("two telemetry packets share an APID")

# --- telecommands ---------------------------------------------------------------------------
_COMMANDS = (
    CommandDef(1, "ping", "No-op: verifies the link end to end.", (
        Field("token", U32, "", None, "Echoed in the completion report's detail."),
    )),
    CommandDef(2, "set_redundancy", "Restart a partition in another redundancy mode.", (
        _partition(),
        Field("mode", MODE, "", None, "tmr, dwc or none (simplex)."),
    )),
    CommandDef(3, "restart_partition", "Restart a partition.", (_partition(),)),
    CommandDef(4, "enable_partition", "Re-enable a disabled partition.", (_partition(),)),
    CommandDef(5, "disable_partition", "Stop a partition until enabled.", (_partition(),)),
    CommandDef(6, "exit_safe_mode", "Leave safe mode: restart the suspended partitions."),
    CommandDef(7, "scrub_now", "Run a full scrub pass at the next frame boundary."),
    CommandDef(8, "dump_cds", "Downlink the critical data store as DUMP packets."),
    CommandDef(9, "dump_reset_log", "Downlink the reset log as DUMP packets."),
    CommandDef(10, "open_contact", "Open a contact window now.", (
        Field("duration_s", U32, "s", (1, 86400), "How long the window stays open."),
    )),
    CommandDef(11, "close_contact", "Close the contact window now."),
    CommandDef(12, "switch_key", "Accept telecommands under another key from now on.", (
        Field("spi", U16, "", (1, 65535), "SPI of a key in the board's key file."),
    )),
    CommandDef(13, "model_upload", "Activate an uploaded model file on a partition, on trial.", (
        _partition(),
        Field("file", Str(64), "", None, "Destination name of the CFDP upload."),
        Field("mac", Bytes(32), "", None, "HMAC-SHA256 of the whole file under the mission key."),
        Field("trial_frames", U16, "frames", (1, 1000), "Frames it must pass before commit."),
    )),
    CommandDef(14, "send_housekeeping", "Send HOUSEKEEPING and PARTITION packets now."),
    CommandDef(100, "test_flip_bit", "Test mode: flip one bit of a weight copy.", (
        _partition(),
        Field("copy", U8, "", (0, 2), "Which weight copy."),
        Field("byte_offset", U32, "bytes", None, "Byte offset in the copy."),
        Field("bit", U8, "", (0, 7), "Bit in that byte."),
    ), test_mode_only=True),
    CommandDef(101, "inject", "Test mode: upset a weight, CRC table, output, activation or CDS.", (
        Field("site", INJECT_SITE, "", None, "Where: now (weights, crc_table, cds) or armed."),
        _partition(),
        Field("copy", U8, "", None, "Weight or CRC-table copy; replica (output, activation)."),
        Field("offset", U64, "bytes", None, "Byte offset in the site, modulo its size."),
        Field("bit", U8, "", None, "Bit counted from that byte (0 = LSB of the byte)."),
        Field("fault", FAULT_MODEL, "", None, "seu, mbu (cluster bits), stuck0 or stuck1."),
        Field("cluster", U8, "bits", None, "Adjacent bits of an mbu (2..8)."),
        Field("node", Str(64), "", None, "Activation: the node whose output is hit."),
    ), test_mode_only=True),
    CommandDef(102, "hang_partition", "Test mode: stop one worker of a partition (SIGSTOP).", (
        _partition(),
        Field("replica", U8, "", (0, 2), "Which replica's worker."),
    ), test_mode_only=True),
    CommandDef(103, "crash_partition", "Test mode: kill one worker of a partition.", (
        _partition(),
        Field("replica", U8, "", (0, 2), "Which replica's worker."),
        Field("signal", CRASH_SIGNAL, "", None, "SIGKILL or SIGSEGV."),
    ), test_mode_only=True),
    CommandDef(104, "flip_memory", "Test mode: flip bits in a process's writable memory.", (
        Field("target", MEMORY_TARGET, "", None, "A partition's worker or the supervisor."),
        _partition("The partition (target partition)."),
        Field("replica", U8, "", (0, 2), "Which replica's worker (target partition)."),
        Field("draw", U64, "", None, "Chooses the mapping (weighted by size) and the address."),
        Field("bits", U8, "bits", (1, 8), "Adjacent bits flipped, from a drawn bit."),
    ), test_mode_only=True),
)  # fmt: skip
#: Every telecommand, by opcode and by name.
COMMANDS: dict[int, CommandDef] = {c.opcode: c for c in _COMMANDS}
COMMANDS_BY_NAME: dict[str, CommandDef] = {c.name: c for c in _COMMANDS}
if not len(COMMANDS) == len(COMMANDS_BY_NAME) == len(_COMMANDS):  # caught at import
    raise AssertionError("two commands share an opcode or a name")


def decode_command(body: bytes | bytearray | memoryview) -> tuple[CommandDef, dict[str, Any]]:
    """A command body (opcode u16 + arguments) -> (its declaration, argument values).

    CommandError: MALFORMED (shorter than an opcode, or an argument block of the wrong length
    or with bad UTF-8), UNKNOWN_OPCODE, INVALID_ARGUMENT (a value out of range or not a label).
    """
    if len(body) < 2:
        raise CommandError(FailureCode.MALFORMED, f"{len(body)}-byte body has no 2-byte opcode")
    opcode = (body[0] << 8) | body[1]
    command = COMMANDS.get(opcode)
    if command is None:
        raise CommandError(FailureCode.UNKNOWN_OPCODE, f"unknown opcode {opcode}")
    return command, command.decode_args(memoryview(body)[2:])
