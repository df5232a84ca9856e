"""The dictionaries (JSON, XTCE) and docs/icd.md come from the declarations and stay current;
``flight link`` writes them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flight import __version__
from flight.errors import ConfigError
from flight.events import EVENTS
from flight.link import catalog, dictionary
from flight.link.codes import Apid, FailureCode, Stage
from flight.link.schema import U8, CommandDef, Field

ROOT = Path(__file__).resolve().parents[2]
ICD = ROOT / "docs" / "icd.md"
XTCE = "{http://www.omg.org/spec/XTCE/20180204}"


def _flight(*args: str, cwd: Path | str = "/") -> subprocess.CompletedProcess:
    exe = shutil.which("flight", path=str(Path(sys.executable).parent)) or shutil.which("flight")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "flight.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


# --- JSON -----------------------------------------------------------------------------------
def test_json_lists_every_declaration():
    d = dictionary.json_dictionary()
    assert d["metadata"]["flight_version"] == __version__
    assert [c["opcode"] for c in d["commands"]] == sorted(catalog.COMMANDS)
    for entry in d["commands"]:
        command = catalog.COMMANDS[entry["opcode"]]
        assert entry["name"] == command.name
        assert entry["test_mode_only"] == command.test_mode_only
        assert [a["name"] for a in entry["args"]] == [f.name for f in command.args]
    assert [p["apid"] for p in d["telemetry"]] == sorted(catalog.TELEMETRY)
    for entry in d["telemetry"]:
        assert [f["name"] for f in entry["fields"]] == [
            f.name for f in catalog.TELEMETRY[entry["apid"]].fields
        ]
    assert [e["id"] for e in d["events"]] == sorted(EVENTS)
    assert {e["name"]: e["cause"] for e in d["events"]} == {
        e.name: e.cause for e in EVENTS.values()
    }
    assert {a["name"]: a["apid"] for a in d["apids"]} == {a.name: int(a) for a in Apid}
    assert {s["name"]: s["subtype"] for s in d["verification_stages"]} == {
        s.name: int(s) for s in Stage
    }
    assert {c["name"]: c["code"] for c in d["failure_codes"]} == {
        c.name: int(c) for c in FailureCode
    }
    json.dumps(d)  # JSON-ready as it is


def test_json_fields_carry_type_unit_range_and_description():
    d = dictionary.json_dictionary()
    open_contact = next(c for c in d["commands"] if c["name"] == "open_contact")
    assert open_contact["args"] == [
        {
            "name": "duration_s",
            "type": {"name": "U32", "kind": "integer", "size": 32, "signed": False},
            "unit": "s",
            "range": [1, 86400],
            "description": "How long the window stays open.",
        }
    ]
    result = next(p for p in d["telemetry"] if p["name"] == "RESULT")
    fields = {f["name"]: f for f in result["fields"]}
    assert fields["top1"]["range"] == [-1, 32767] and fields["top1"]["type"]["signed"] is True
    assert fields["status"]["type"]["identifiers"] == {"delivered": 0, "withheld": 1}
    assert fields["output"]["type"] == {
        "name": "Blob(65000)",
        "kind": "blob",
        "max_length": 65000,
        "length_prefix_bits": 16,
    }


def test_the_hash_names_the_interface_not_the_release(monkeypatch):
    first = dictionary.json_dictionary()["metadata"]["dictionary_hash"]
    assert first == dictionary.json_dictionary()["metadata"]["dictionary_hash"]
    monkeypatch.setattr(dictionary, "__version__", "99.0")
    assert dictionary.json_dictionary()["metadata"]["dictionary_hash"] == first
    extra = CommandDef(200, "extra", "an added command", (Field("x", U8, "", None, "x"),))
    monkeypatch.setitem(catalog.COMMANDS, 200, extra)
    assert dictionary.json_dictionary()["metadata"]["dictionary_hash"] != first


# --- XTCE -----------------------------------------------------------------------------------
def _xtce_root() -> ET.Element:
    pytest.importorskip("yamcs.pymdb")
    return ET.fromstring(dictionary.xtce_dictionary())


def test_xtce_names_every_packet_with_its_apid_restriction():
    root = _xtce_root()
    containers = {c.get("name"): c for c in root.iter(f"{XTCE}SequenceContainer")}
    for packet in catalog.TELEMETRY.values():
        container = containers[packet.name]
        entries = [e.get("parameterRef") for e in container.iter(f"{XTCE}ParameterRefEntry")]
        assert entries == [f.name for f in packet.fields]
        base = container.find(f"{XTCE}BaseContainer")
        assert base.get("containerRef").endswith("tm_secondary_header")
        (condition,) = base.iter(f"{XTCE}Condition")
        assert (
            condition.find(f"{XTCE}ParameterInstanceRef")
            .get("parameterRef")
            .endswith("ccsds_packet_id/apid")
        )
        assert int(condition.find(f"{XTCE}Value").text) == packet.apid
    header = containers["tm_secondary_header"]
    assert header.find(f"{XTCE}BaseContainer").get("containerRef") == "ccsds_space_packet"
    refs = [e.get("parameterRef") for e in header.iter(f"{XTCE}ParameterRefEntry")]
    assert refs == ["cuc_p_field", "cuc_time"]


def test_xtce_names_every_command_with_its_opcode_and_arguments():
    root = _xtce_root()
    commands = {c.get("name"): c for c in root.iter(f"{XTCE}MetaCommand")}
    base = commands["flight_tc"]
    assignments = {
        a.get("argumentName"): a.get("argumentValue")
        for a in base.iter(f"{XTCE}ArgumentAssignment")
    }
    assert assignments["ccsds_apid"] == str(int(Apid.COMMAND))
    for command in catalog.COMMANDS.values():
        element = commands[command.name]
        (assignment,) = element.iter(f"{XTCE}ArgumentAssignment")
        assert (assignment.get("argumentName"), assignment.get("argumentValue")) == (
            "opcode",
            str(command.opcode),
        )
        arguments = [a.get("name") for a in element.iter(f"{XTCE}Argument")]
        assert arguments == [f.name for f in command.args]


def test_xtce_without_yamcs_pymdb_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "yamcs", None)  # "import yamcs" now raises ImportError
    monkeypatch.setitem(sys.modules, "yamcs.pymdb", None)
    with pytest.raises(ConfigError, match=re.escape('pip install "flight[ground]"')):
        dictionary.xtce_dictionary()


# --- docs/icd.md ----------------------------------------------------------------------------
def test_committed_icd_is_current():
    assert ICD.read_text(encoding="utf-8") == dictionary.icd_markdown(), (
        "docs/icd.md is stale: regenerate it with `flight link icd -o docs/icd.md`"
    )


def _icd_rows(section: str) -> list[list[str]]:
    """The table rows under the heading ``section`` of the ICD."""
    text = dictionary.icd_markdown().split(f"### {section}\n", 1)[1]
    text = re.split(r"\n##+ ", text, maxsplit=1)[0]
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]


@pytest.mark.parametrize("packet", catalog.TELEMETRY.values(), ids=lambda p: p.name)
def test_icd_offsets_are_where_the_encoder_puts_each_field(packet):
    """Every field with a constant offset sits there in an encoded packet (user data at 13)."""
    values = {}
    for n, f in enumerate(packet.fields):
        if f.type.kind == "integer":
            low, high = f.bounds
            values[f.name] = low + (0x5A5A5A5A + n) % (high - low + 1)
        elif f.type.kind == "string":
            values[f.name] = "abc"
        elif f.type.kind == "blob":
            values[f.name] = b"abcde"
        elif f.type.kind == "bool":
            values[f.name] = True
        else:
            values[f.name] = sorted(f.type.labels)[-1]
    data = bytes(13) + packet.encode(values)
    rows = _icd_rows(f"{packet.name} (APID {packet.apid:#05x})")
    assert [r[2] for r in rows] == [f"`{f.name}`" for f in packet.fields]
    checked = 0
    variable = 0
    for row, f in zip(rows, packet.fields, strict=True):
        offset = int(row[0].split(" + ")[0]) + variable
        assert row[0].count("n(") == sum(
            1 for g in packet.fields[: packet.fields.index(f)] if g.type.size is None
        )
        if f.type.kind == "integer":
            size, signed = int(row[1]), f.type.bounds[0] < 0
            wire = data[offset : offset + size]
            assert int.from_bytes(wire, "big", signed=signed) == values[f.name], f.name
            checked += 1
        if f.type.size is None:
            variable += len(values[f.name])
    assert checked == sum(1 for f in packet.fields if f.type.kind == "integer")


def test_icd_covers_every_command_event_code_and_apid():
    text = dictionary.icd_markdown()
    for command in catalog.COMMANDS.values():
        assert f"### {command.opcode}: {command.name}" in text
    for event in EVENTS.values():
        assert f"| {event.id} | {event.name} | {event.severity.name} |" in text
    for code in FailureCode:
        assert f"| {int(code)} | {code.name} |" in text
    for apid in Apid:
        assert f"| {int(apid):#05x} | {apid.name} |" in text
    rows = _icd_rows("10: open_contact")
    assert rows == [["2", "4", "`duration_s`", "U32", "s", "1..86400", rows[0][-1]]]


# --- the command line -----------------------------------------------------------------------
def test_flight_link_dictionary_json_lists_every_opcode():
    proc = _flight("link", "dictionary")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert sorted(c["opcode"] for c in d["commands"]) == sorted(catalog.COMMANDS)
    assert d == json.loads(json.dumps(dictionary.json_dictionary()))


def test_flight_link_dictionary_xtce_is_xml(tmp_path):
    pytest.importorskip("yamcs.pymdb")
    out = tmp_path / "flight.xml"
    proc = _flight("link", "dictionary", "--format", "xtce", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    root = ET.parse(out).getroot()
    assert root.tag == f"{XTCE}SpaceSystem" and root.get("name") == "flight"
    names = {c.get("name") for c in root.iter(f"{XTCE}MetaCommand")}
    assert {c.name for c in catalog.COMMANDS.values()} <= names


def test_flight_link_icd_writes_the_icd(tmp_path):
    out = tmp_path / "icd.md"
    proc = _flight("link", "icd", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8") == dictionary.icd_markdown()
    proc = _flight("link", "icd")
    assert proc.stdout == dictionary.icd_markdown()
