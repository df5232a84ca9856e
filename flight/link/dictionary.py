"""The link's dictionaries and its interface control document, made from the declarations.

A ground system decodes flight's telemetry and builds its telecommands from a dictionary: an
F´-style JSON one (:func:`json_dictionary`), XTCE for Yamcs (:func:`xtce_dictionary`, generated
with yamcs-pymdb, a ground-side extra imported only here and only when asked for) and the
human-readable ICD, docs/icd.md (:func:`icd_markdown`). All three read
:mod:`flight.link.catalog`, :mod:`flight.link.codes` and :mod:`flight.events`, so none can
drift from what the board sends; tests/link/test_dictionary.py fails when docs/icd.md is stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from flight import __version__
from flight.errors import ConfigError
from flight.events import EVENTS
from flight.link import catalog
from flight.link.codes import Apid, FailureCode, Stage
from flight.link.schema import CommandDef, Enum, Field, PacketDef, WireType

__all__ = ["PRIMARY_HEADER", "icd_markdown", "json_dictionary", "xtce_dictionary"]

#: The CCSDS 133.0-B-2 primary header, most significant bit first: (name, bits, meaning).
PRIMARY_HEADER: tuple[tuple[str, int, str], ...] = (
    ("version", 3, "0 (CCSDS version 1)"),
    ("type", 1, "0 telemetry, 1 telecommand"),
    ("secondary_header_flag", 1, "1 for TM (the CUC time code follows), 0 for TC"),
    ("apid", 11, "the packet kind: see APIDs"),
    ("sequence_flags", 2, "0b11: unsegmented (always)"),
    ("sequence_count", 14, "per APID, 0..16383, wraps to 0"),
    ("data_length", 16, "bytes in the data field minus 1 (the CRC included)"),
)
PRIMARY_HEADER_BYTES = 6
CUC_BYTES = sum(f.type.size or 0 for f in catalog.TM_SECONDARY_HEADER)
SECURITY_HEADER_BYTES = sum(f.type.size or 0 for f in catalog.TC_SECURITY_HEADER)
CRC_BYTES = 2
CRC = "CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, no final XOR"
MAC = "HMAC-SHA256 truncated to the key's mac_bytes (8..32, 16 by default)"

_APID_ROLES = {
    Apid.COMMAND: "TC: an authenticated telecommand",
    Apid.FILE: "TC: one CFDP PDU of a file upload (class 1)",
    Apid.IDLE: "idle packet (CCSDS): ignored",
}
_TYPE_TEXT = {
    "integer": "big-endian integer",
    "float": "big-endian IEEE 754",
    "bool": "u8: 0 false, 1 true (any other value is refused)",
    "enum": "u8 code of a label",
    "string": "u8 length n, then n bytes of UTF-8",
    "blob": "u16 length n, then n bytes",
    "bytes": "exactly that many bytes",
}


# --------------------------------------------------------------------------------------------
# JSON (F´-style)
# --------------------------------------------------------------------------------------------
def _type_json(t: WireType) -> dict[str, Any]:
    out: dict[str, Any] = {"name": t.name, "kind": t.kind}
    if t.kind in ("integer", "float"):
        out["size"] = 8 * (t.size or 0)
        out["signed"] = t.kind == "float" or bool(t.bounds and t.bounds[0] < 0)
    elif isinstance(t, Enum):
        out.update(name=t.name, size=8, identifiers=dict(t.labels))
    elif t.kind in ("string", "blob"):
        out.update(max_length=t.max_len, length_prefix_bits=8 * t.prefix)
    elif t.kind == "bytes":
        out["length"] = t.size
    else:  # bool
        out["size"] = 8
    return out


def _field_json(f: Field) -> dict[str, Any]:
    bounds = f.bounds
    return {
        "name": f.name,
        "type": _type_json(f.type),
        "unit": f.unit,
        "range": list(bounds) if bounds is not None else None,
        "description": f.description,
    }


def _command_json(c: CommandDef) -> dict[str, Any]:
    return {
        "opcode": c.opcode,
        "name": c.name,
        "description": c.description,
        "args": [_field_json(f) for f in c.args],
        "test_mode_only": c.test_mode_only,
    }


def _packet_json(p: PacketDef) -> dict[str, Any]:
    return {
        "apid": p.apid,
        "name": p.name,
        "description": p.description,
        "user_data_bytes": [p.min_size, p.max_size],
        "fields": [_field_json(f) for f in p.fields],
    }


def _apid_role(apid: Apid) -> str:
    packet = catalog.TELEMETRY.get(apid)
    return f"TM: {packet.description}" if packet else _APID_ROLES.get(apid, "")


def json_dictionary() -> dict[str, Any]:
    """The whole interface as one JSON-ready dict, F´-dictionary style: ``metadata`` (with the
    flight version and a hash of everything else), ``framing``, ``commands``, ``telemetry``,
    ``events``, ``apids``, ``verification_stages`` and ``failure_codes``."""
    body: dict[str, Any] = {
        "framing": {
            "byte_order": "big-endian",
            "primary_header": [{"name": n, "bits": b, "meaning": m} for n, b, m in PRIMARY_HEADER],
            "tm_secondary_header": [_field_json(f) for f in catalog.TM_SECONDARY_HEADER],
            "tc_security_header": [_field_json(f) for f in catalog.TC_SECURITY_HEADER],
            "mac": MAC,
            "crc": CRC,
        },
        "commands": [_command_json(c) for c in sorted(catalog.COMMANDS.values(), key=_opcode)],
        "telemetry": [_packet_json(p) for p in sorted(catalog.TELEMETRY.values(), key=_apid)],
        "events": [
            {"id": e.id, "name": e.name, "severity": e.severity.name, "cause": e.cause}
            for e in sorted(EVENTS.values(), key=lambda e: e.id)
        ],
        "apids": [{"name": a.name, "apid": int(a), "role": _apid_role(a)} for a in Apid],
        "verification_stages": [{"name": s.name, "subtype": int(s)} for s in Stage],
        "failure_codes": [{"name": c.name, "code": int(c)} for c in FailureCode],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    metadata = {
        "deployment": "flight",
        "flight_version": __version__,
        "dictionary_spec": "flight-link-dictionary/1 (F´-style JSON)",
        "dictionary_hash": "sha256:" + hashlib.sha256(canonical).hexdigest(),
    }
    return {"metadata": metadata, **body}


def _opcode(c: CommandDef) -> int:
    return c.opcode


def _apid(p: PacketDef) -> int:
    return p.apid


# --------------------------------------------------------------------------------------------
# XTCE (Yamcs), through yamcs-pymdb
# --------------------------------------------------------------------------------------------
def xtce_dictionary() -> str:
    """XTCE 1.2 for Yamcs: the CCSDS primary header, the CUC secondary header, one container per
    TM packet restricted to its APID, and one command per telecommand with its arguments.

    The TC's security header (SPI, sequence number), its MAC and its CRC are filled in by the
    ground's link post-processing (``hil link`` does it), so the XTCE carries them as fixed
    placeholders. ConfigError when yamcs-pymdb is not installed."""
    try:
        from yamcs import pymdb as mdb
    except ImportError as exc:
        raise ConfigError(
            "the XTCE dictionary needs yamcs-pymdb, a ground-side extra: "
            'pip install "flight[ground]"'
        ) from exc
    return _Xtce(mdb).build().dumps()


class _Xtce:
    """Maps the declarations onto yamcs-pymdb objects (``mdb`` is the lazily imported module)."""

    def __init__(self, mdb: Any) -> None:
        self.mdb = mdb

    def encoding(self, t: WireType) -> Any:
        mdb = self.mdb
        if t.kind == "integer":
            signed = bool(t.bounds and t.bounds[0] < 0)
            scheme = mdb.IntegerEncodingScheme
            return mdb.IntegerEncoding(
                bits=8 * (t.size or 0),
                scheme=scheme.TWOS_COMPLEMENT if signed else scheme.UNSIGNED,
            )
        if t.kind == "float":
            return mdb.float32_t if t.size == 4 else mdb.float64_t
        if t.kind in ("bool", "enum"):
            return mdb.uint8_t
        if t.kind == "string":
            return mdb.StringEncoding(
                length_bits=8 * t.prefix,
                max_bits=8 * (t.prefix + t.max_len),
                charset=mdb.Charset.UTF_8,
                termination=None,
            )
        if t.kind == "blob":
            return mdb.BinaryEncoding(length_bits=8 * t.prefix)
        return mdb.BinaryEncoding(bits=8 * (t.size or 0))  # bytes

    def _common(self, f: Field) -> dict[str, Any]:
        out: dict[str, Any] = {
            "short_description": f.description or None,
            "encoding": self.encoding(f.type),
        }
        if f.unit and f.type.kind != "enum":
            out["units"] = f.unit
        return out

    def _numeric(self, f: Field) -> dict[str, Any]:
        t = f.type
        if t.kind == "integer":
            low, high = f.bounds or (None, None)
            signed = bool(t.bounds and t.bounds[0] < 0)
            return {"signed": signed, "bits": 8 * (t.size or 0), "minimum": low, "maximum": high}
        low, high = f.range or (None, None)
        return {"bits": 8 * (t.size or 0), "minimum": low, "maximum": high}

    def parameter(self, system: Any, f: Field) -> Any:
        mdb, kind, common = self.mdb, f.type.kind, self._common(f)
        if kind == "integer":
            return mdb.IntegerParameter(system, f.name, **self._numeric(f), **common)
        if kind == "float":
            return mdb.FloatParameter(system, f.name, **self._numeric(f), **common)
        if kind == "bool":
            return mdb.BooleanParameter(system, f.name, **common)
        if kind == "enum":
            return mdb.EnumeratedParameter(system, f.name, choices=_choices(f.type), **common)
        if kind == "string":
            return mdb.StringParameter(system, f.name, max_length=f.type.max_len, **common)
        low = f.type.size if kind == "bytes" else None
        return mdb.BinaryParameter(
            system, f.name, min_length=low, max_length=f.type.size or f.type.max_len, **common
        )

    def argument(self, f: Field) -> Any:
        mdb, kind, common = self.mdb, f.type.kind, self._common(f)
        if kind == "integer":
            return mdb.IntegerArgument(f.name, **self._numeric(f), **common)
        if kind == "float":
            return mdb.FloatArgument(f.name, **self._numeric(f), **common)
        if kind == "bool":
            return mdb.BooleanArgument(f.name, **common)
        if kind == "enum":
            return mdb.EnumeratedArgument(f.name, choices=_choices(f.type), **common)
        if kind == "string":
            return mdb.StringArgument(f.name, max_length=f.type.max_len, **common)
        low = f.type.size if kind == "bytes" else None
        return mdb.BinaryArgument(
            f.name, min_length=low, max_length=f.type.size or f.type.max_len, **common
        )

    def build(self) -> Any:
        mdb = self.mdb
        system = mdb.System(
            "flight",
            short_description=f"flight {__version__} space link (generated; see docs/icd.md)",
        )
        header = mdb.ccsds.add_ccsds_header(system)
        secondary = mdb.Container(
            system,
            "tm_secondary_header",
            abstract=True,
            base=header.tm_container,
            condition=mdb.EqExpression(header.tm_secondary_header, True),
            short_description="CUC time code (P-field 0x1E: level 1, TAI 1958, 4+2 octets)",
            entries=[
                mdb.ParameterEntry(self.parameter(system, catalog.TM_SECONDARY_HEADER[0])),
                mdb.ParameterEntry(
                    mdb.AbsoluteTimeParameter(
                        system,
                        "cuc_time",
                        reference=mdb.Epoch.TAI,
                        short_description="Board time: coarse seconds + fine 2^-16 s, TAI",
                        encoding=mdb.IntegerTimeEncoding(bits=48, scale=2.0**-16),
                    )
                ),
            ],
        )
        for packet in sorted(catalog.TELEMETRY.values(), key=_apid):
            sub = mdb.Subsystem(system, packet.name.lower(), short_description=packet.description)
            mdb.Container(
                sub,
                packet.name,
                base=secondary,
                condition=mdb.EqExpression(header.tm_apid, int(packet.apid)),
                short_description=f"{packet.description} (CRC-16 trailer not listed)",
                entries=[mdb.ParameterEntry(self.parameter(sub, f)) for f in packet.fields],
            )
        opcode = mdb.IntegerArgument(
            "opcode", signed=False, bits=16, encoding=mdb.uint16_t, short_description="Opcode"
        )
        security = catalog.TC_SECURITY_HEADER
        tc = mdb.Command(
            system,
            "flight_tc",
            abstract=True,
            base=header.tc_command,
            assignments={
                header.tc_secondary_header.name: False,
                header.tc_apid.name: int(Apid.COMMAND),
            },
            short_description="Authenticated telecommand (SDLS authentication mode)",
            long_description=(
                "The security header (SPI, sequence number) is set, and the MAC ("
                + MAC
                + ") and the CRC ("
                + CRC
                + ") are appended, by the ground's link post-processing."
            ),
            arguments=[opcode],
            entries=[
                *(
                    mdb.FixedValueEntry(
                        bytes(f.type.size or 0), f.name, bits=8 * (f.type.size or 0)
                    )
                    for f in security
                ),
                mdb.ArgumentEntry(opcode),
            ],
        )
        for command in sorted(catalog.COMMANDS.values(), key=_opcode):
            extra = {"opcode": str(command.opcode)}
            if command.test_mode_only:
                extra["test_mode_only"] = "true"
            mdb.Command(
                system,
                command.name,
                base=tc,
                assignments={"opcode": command.opcode},
                short_description=command.description,
                extra=extra,
                arguments=[self.argument(f) for f in command.args],
                warning_message=(
                    "Refused unless the mission enables test mode."
                    if command.test_mode_only
                    else None
                ),
            )
        return system


def _choices(t: WireType) -> list[tuple[int, str]]:
    assert isinstance(t, Enum)
    return [(value, label) for label, value in t.labels.items()]


# --------------------------------------------------------------------------------------------
# The interface control document (docs/icd.md)
# --------------------------------------------------------------------------------------------
def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _range_text(f: Field) -> str:
    t = f.type
    if isinstance(t, Enum):
        return ", ".join(f"{label}={value}" for label, value in t.labels.items())
    if t.kind == "bool":
        return "0, 1"
    if t.kind in ("string", "blob"):
        return f"n ≤ {t.max_len}"
    if t.kind == "bytes":
        return f"{t.size} bytes"
    bounds = f.bounds
    return f"{bounds[0]}..{bounds[1]}" if bounds is not None else "any"


def _size_text(t: WireType) -> str:
    return str(t.size) if t.size is not None else f"{t.prefix} + n"


def _field_table(fields: Iterable[Field], start: int) -> list[str]:
    """One row per field. After a variable-size field an offset reads ``K + n(name)``: K bytes
    plus that field's n."""
    constant, variable, rows = start, [], []
    for f in fields:
        offset = " + ".join([str(constant), *(f"n({v})" for v in variable)])
        rows.append(
            [
                offset,
                _size_text(f.type),
                f"`{f.name}`",
                f.type,
                f.unit,
                _range_text(f),
                f.description,
            ]
        )
        constant += f.type.size if f.type.size is not None else f.type.prefix
        if f.type.size is None:
            variable.append(f.name)
    return _table(("Offset", "Size", "Field", "Type", "Unit", "Range", "Description"), rows)


def icd_markdown() -> str:
    """docs/icd.md: every layout with byte offsets and sizes, made from the declarations."""
    meta = json_dictionary()["metadata"]
    user_start = PRIMARY_HEADER_BYTES + CUC_BYTES
    out = [
        "# flight space link: interface control document",
        "",
        "<!-- Generated by `flight link icd -o docs/icd.md` from flight/link/catalog.py, "
        "flight/link/codes.py and flight/events.py. Do not edit: tests/link/test_dictionary.py "
        "fails when this file is stale. -->",
        "",
        f"Dictionary hash `{meta['dictionary_hash']}` (the same as in "
        "`flight link dictionary --format json`). Machine-readable forms: "
        "`flight link dictionary --format json` (F´-style) and `--format xtce` (Yamcs).",
        "",
        "## 1. Conventions",
        "",
        "Every multi-byte value is big-endian (network order); bit 0 is the most significant. "
        "Offsets are in bytes from the first byte of the packet. Where a variable-size field "
        "comes earlier, an offset reads `K + n(name)`: K bytes plus the n of that field.",
        "",
        *_table(
            ("Type", "Size (bytes)", "Encoding"),
            [
                ("U8 / U16 / U32 / U64", "1 / 2 / 4 / 8", "unsigned " + _TYPE_TEXT["integer"]),
                ("I16 / I32", "2 / 4", "two's-complement " + _TYPE_TEXT["integer"]),
                ("F32 / F64", "4 / 8", _TYPE_TEXT["float"]),
                ("BOOL", "1", _TYPE_TEXT["bool"]),
                ("Enum(name)", "1", _TYPE_TEXT["enum"] + "; an unknown code is refused"),
                ("Str(max)", "1 + n", _TYPE_TEXT["string"] + ", n ≤ max"),
                ("Blob(max)", "2 + n", _TYPE_TEXT["blob"] + ", n ≤ max"),
                ("Bytes(n)", "n", _TYPE_TEXT["bytes"]),
            ],
        ),
        "## 2. Space packets (CCSDS 133.0-B-2)",
        "",
        f"### 2.1 Primary header ({PRIMARY_HEADER_BYTES} bytes)",
        "",
        *_table(
            ("Bits", "Field", "Value"),
            _bit_rows(),
        ),
        "### 2.2 Telemetry packets",
        "",
        f"`primary header (6) | secondary header: CUC ({CUC_BYTES}) | user data | "
        f"CRC ({CRC_BYTES})`. The secondary header flag is 1. User data starts at byte "
        f"{user_start}; its layout is the packet's (section 4).",
        "",
        *_field_table(catalog.TM_SECONDARY_HEADER, PRIMARY_HEADER_BYTES),
        "Board time = Unix time + 378691200 s (1958 to 1970) + 37 s (TAI - UTC).",
        "",
        "### 2.3 Telecommand packets",
        "",
        f"APID {int(Apid.COMMAND):#05x}: `primary header (6) | security header "
        f"({SECURITY_HEADER_BYTES}) | body: opcode (2) + arguments | MAC (mac_bytes) | "
        f"CRC ({CRC_BYTES})`. The secondary header flag is 0.",
        "",
        *_field_table(catalog.TC_SECURITY_HEADER, PRIMARY_HEADER_BYTES),
        f"MAC: {MAC}, over the primary header as sent, the security header and the body. "
        "A command is accepted only under the active key, with a sequence number in the "
        "anti-replay window (`last < sequence <= last + window`), and a MAC that verifies; "
        "the window advances only after the MAC verifies.",
        "",
        f"APID {int(Apid.FILE):#05x} (file upload): the data field is one CFDP PDU (class 1) "
        "followed by the CRC; no security header (the whole file carries a MAC, see "
        "`model_upload`).",
        "",
        "### 2.4 Packet error control",
        "",
        f"The last {CRC_BYTES} bytes of every data field: {CRC}, over every byte before it "
        "(primary header included), big-endian.",
        "",
        "## 3. APIDs",
        "",
        *_table(
            ("APID", "Name", "Role"),
            [(f"{int(a):#05x}", a.name, _apid_role(a)) for a in Apid],
        ),
        "## 4. Telemetry packets",
        "",
    ]
    for packet in sorted(catalog.TELEMETRY.values(), key=_apid):
        out += [
            f"### {packet.name} (APID {packet.apid:#05x})",
            "",
            f"{packet.description} User data: {_bytes_range(packet.min_size, packet.max_size)}.",
            "",
            *_field_table(packet.fields, user_start),
        ]
    out += [
        "## 5. Telecommands",
        "",
        "The body starts with the opcode (u16, body offset 0); the arguments follow from body "
        f"offset 2 (packet offset {PRIMARY_HEADER_BYTES + SECURITY_HEADER_BYTES + 2}). Offsets "
        "below are in the body. An argument block of the wrong length or with bad UTF-8 is "
        "MALFORMED; a value out of range or not a label is INVALID_ARGUMENT; test-mode "
        "commands are NOT_ALLOWED unless the mission enables test mode.",
        "",
        *_table(
            ("Opcode", "Command", "Arguments", "Test mode only", "Description"),
            [
                (
                    c.opcode,
                    f"`{c.name}`",
                    ", ".join(f.name for f in c.args) or "none",
                    "yes" if c.test_mode_only else "",
                    c.description,
                )
                for c in sorted(catalog.COMMANDS.values(), key=_opcode)
            ],
        ),
    ]
    for command in sorted(catalog.COMMANDS.values(), key=_opcode):
        out += [f"### {command.opcode}: {command.name}", "", command.description, ""]
        if command.args:
            out += _field_table(command.args, 2)
    out += [
        "## 6. Verification (ECSS PUS service 1)",
        "",
        "Each telecommand is reported in a VERIFICATION packet per stage.",
        "",
        *_table(("Subtype", "Stage"), [(int(s), s.name) for s in Stage]),
        *_table(("Code", "Failure code"), [(int(c), c.name) for c in FailureCode]),
        "## 7. Events",
        "",
        "Sent in EVENT packets; IDs are stable (never renumbered).",
        "",
        *_table(
            ("ID", "Name", "Severity", "Cause"),
            [
                (e.id, e.name, e.severity.name, e.cause)
                for e in sorted(EVENTS.values(), key=lambda e: e.id)
            ],
        ),
    ]
    return "\n".join(out).rstrip("\n") + "\n"


def _bit_rows() -> Iterator[tuple[str, str, str]]:
    bit = 0
    for name, bits, meaning in PRIMARY_HEADER:
        yield f"{bit}..{bit + bits - 1}" if bits > 1 else str(bit), f"`{name}`", meaning
        bit += bits


def _bytes_range(low: int, high: int) -> str:
    return f"{low} bytes" if low == high else f"{low} to {high} bytes"
