"""Mission configuration: the shipped default, every validation rule with its message, unknown
keys, path resolution, the CDS directory rule, and fuzzed fields (Mission or ConfigError only)."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event as label
from hypothesis import given
from hypothesis import strategies as st

from flight import errors, mission
from flight.mission import Mission, default_mission, load_mission, parse_mission

DATA = Path(mission.__file__).parent / "data"

BASE: dict[str, Any] = {
    "mission": {"name": "test", "seed": 7, "test_mode": False},
    "schedule": {"minor_frame_ms": 50, "minor_frames_per_major": 4},
    "partition": [
        {
            "name": "classifier",
            "job": "model",
            "model": "digits_cnn.flm",
            "dataset": "digits_test.npz",
            "period_frames": 2,
            "deadline_ms": 80,
            "redundancy": "tmr",
            "placement": "time",
            "restart_type": "permanent",
            "heartbeat_timeout_ms": 300,
            "max_restarts": 3,
            "restart_period_s": 60,
            "escalation": ["degrade", "disable", "safe_mode", "reset"],
        }
    ],
    "recovery": {
        "strategy": "one_for_one",
        "processor_reset_max": 12,
        "processor_reset_period_s": 120,
        "safe_mode_max": 2,
        "safe_mode_period_s": 3600,
        "vote_alarm_threshold": 3,
        "vote_alarm_period_s": 10,
    },
    "scrub": {"block_size": 4096, "bytes_per_frame": 98304},
    "watchdog": {"kind": "software", "device": "/dev/watchdog", "timeout_s": 2},
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def to_toml(doc: dict[str, Any]) -> str:
    """Just enough TOML writing for these tests (tables, arrays of tables, scalars, lists)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict | list)]
    lines += [
        f"{k} = {toml_value(v)}" for k, v in doc.items() if isinstance(v, list) and k != "partition"
    ]
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
    for part in doc.get("partition", []) if isinstance(doc.get("partition"), list) else []:
        lines.append("[[partition]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in part.items()]
    return "\n".join(lines) + "\n"


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def load(doc: dict[str, Any], **kwargs: Any) -> Mission:
    return parse_mission(to_toml(doc), source="mission.toml", **kwargs)


def set_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``"partition.0.deadline_ms"`` style assignment; value ``DELETE`` removes the key."""
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


DELETE = object()


# --- the default mission ------------------------------------------------------------------------


def test_default_mission_is_the_documented_demo():
    m = default_mission()
    assert m.name == "default" and m.seed == 0 and m.test_mode is False
    assert (m.schedule.minor_frame_ms, m.schedule.minor_frames_per_major) == (50, 4)
    assert m.schedule.major_frame_ms == 200 and m.schedule.major_frame_s == 0.2
    (p,) = m.partitions
    assert p.name == "classifier" and p.job == "model"
    assert p.model_path == DATA / "digits_cnn.flm" and p.model_path.is_file()
    assert p.dataset_path == DATA / "digits_test.npz" and p.dataset_path.is_file()
    assert (p.redundancy, p.placement, p.restart_type) == ("tmr", "time", "permanent")
    assert (p.max_restarts, p.restart_period_s) == (3, 60.0)
    assert p.escalation == ("degrade", "disable", "safe_mode", "reset")
    assert p.replicas == 3 and p.weight_copies == 3 and p.period_ms == 50
    assert m.scrub.bytes_per_frame == 288 * 1024  # all 3 copies of the demo weights per frame
    assert (m.watchdog.kind, m.watchdog.timeout_s) == ("software", 2.0)
    assert m.recovery.order == ("classifier",)
    assert (m.recovery.processor_reset_max, m.recovery.processor_reset_period_s) == (30, 60.0)
    assert p.in_safe_mode and p.start_deadline_s == 10.0
    assert m.partition("classifier") is p and m.partition_names == ("classifier",)
    assert m.source.endswith("default_mission.toml")
    with pytest.raises(KeyError):
        m.partition("nope")


def test_mission_is_frozen():
    m = default_mission()
    with pytest.raises(AttributeError):
        m.seed = 1  # type: ignore[misc]


def test_base_fixture_and_defaults():
    doc = base()
    m = load(doc)
    assert m.partitions[0].period_ms == 100 and m.partitions[0].deadline_ms == 80.0
    minimal = {
        "mission": {"name": "m"},
        "schedule": {"minor_frame_ms": 100, "minor_frames_per_major": 10},
        "partition": [{"name": "p", "job": "model", "model": "digits_cnn.flm"}],
    }
    m = load(minimal)
    p = m.partitions[0]
    assert (p.period_frames, p.deadline_ms, p.heartbeat_timeout_ms) == (1, 100.0, 300.0)
    assert (p.redundancy, p.placement, p.restart_type, p.max_restarts) == (
        "tmr",
        "time",
        "permanent",
        3,
    )
    assert p.dataset_path is None and p.vote_points == ()
    assert m.seed == 0 and m.test_mode is False
    r = m.recovery
    assert (r.strategy, r.processor_reset_max, r.processor_reset_period_s) == (
        "one_for_one",
        30,
        60,
    )
    assert (r.safe_mode_max, r.safe_mode_period_s) == (2, 3600.0)
    assert (r.vote_alarm_threshold, r.vote_alarm_period_s) == (3, 10.0)
    assert r.storm_upset_threshold == 10
    assert (p.in_safe_mode, p.start_deadline_s) == (True, 10.0)
    assert (m.scrub.block_size, m.scrub.bytes_per_frame) == (4096, 98304)
    assert (m.watchdog.kind, m.watchdog.device, m.watchdog.timeout_s) == (
        "software",
        "/dev/watchdog",
        2.0,
    )


def test_defaults_that_depend_on_other_fields():
    doc = base()
    part = doc["partition"][0]
    for key in ("escalation", "max_restarts"):
        del part[key]
    part.update(redundancy="none", restart_type="temporary")
    p = load(doc).partitions[0]
    assert p.escalation == ("disable", "safe_mode", "reset")  # nothing to degrade
    assert p.max_restarts == 0 and p.weight_copies == 1
    part.update(redundancy="dwc")
    assert load(doc).partitions[0].weight_copies == 2


def test_memory_limits_match_flight_memory():
    from flight import memory

    assert (mission.MAX_COPIES, mission.MIN_BLOCK_SIZE) == (
        memory.MAX_COPIES,
        memory.MIN_BLOCK_SIZE,
    )


def test_default_watchdog_section_builds_a_watchdog():
    from flight.watchdog import make_watchdog

    wd = make_watchdog(default_mission().watchdog, on_expire=lambda s: None)
    assert wd.kind == "software"
    assert wd.stroke({"classifier": True})
    assert wd.device.timeout_s == 2.0
    assert wd.close()


# --- sources ------------------------------------------------------------------------------------


def test_load_from_path_text_and_bytes(tmp_path: Path):
    text = to_toml(base())
    path = tmp_path / "mission.toml"
    path.write_text(text)
    from_path = load_mission(path)
    assert from_path.source == str(path)
    assert load_mission(str(path)) == from_path
    assert load_mission(text).source == "<string>"
    assert load_mission(text.encode()).source == "<bytes>"
    assert load_mission(text).partitions == from_path.partitions


def test_unreadable_and_malformed_sources(tmp_path: Path):
    with pytest.raises(errors.ConfigError, match=r"nope\.toml: cannot read mission"):
        load_mission(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[mission\nname = 1\n")
    with pytest.raises(errors.ConfigError, match=r"bad\.toml: invalid TOML"):
        load_mission(bad)
    bad.write_bytes(b'[mission]\nname = "\xff"\n')
    with pytest.raises(errors.ConfigError, match="not UTF-8"):
        load_mission(bad)
    with pytest.raises(errors.ConfigError, match="not UTF-8"):
        load_mission(b"\xff\n")


def test_model_paths_resolve_next_to_the_mission_then_package_data(tmp_path: Path):
    (tmp_path / "own.flm").write_bytes(b"x")
    shutil.copy(DATA / "digits_test.npz", tmp_path / "digits_test.npz")
    doc = base()
    doc["partition"][0]["model"] = "own.flm"
    path = tmp_path / "mission.toml"
    path.write_text(to_toml(doc))
    p = load_mission(path).partitions[0]
    assert p.model_path == tmp_path / "own.flm"
    assert p.dataset_path == tmp_path / "digits_test.npz"  # the mission's copy wins
    doc["partition"][0]["model"] = str(DATA / "digits_cnn.flm")  # absolute
    path.write_text(to_toml(doc))
    assert load_mission(path).partitions[0].model_path == DATA / "digits_cnn.flm"
    doc["partition"][0]["model"] = "missing.flm"
    path.write_text(to_toml(doc))
    with pytest.raises(errors.ConfigError) as info:
        load_mission(path)
    message = str(info.value)
    assert "partition 'classifier': model 'missing.flm' not found" in message
    assert str(tmp_path / "missing.flm") in message and str(DATA / "missing.flm") in message


# --- the CDS directory --------------------------------------------------------------------------


def test_cds_directory_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    doc = base()
    env = {"FLIGHT_STATE_DIR": str(tmp_path / "state")}
    assert load(doc, env=env).cds.directory == tmp_path / "state"

    writable = tmp_path / "var" / "flight"
    (tmp_path / "var").mkdir()
    monkeypatch.setattr(mission, "SYSTEM_STATE_DIR", writable)
    assert load(doc, env={}).cds.directory == writable

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(mission, "SYSTEM_STATE_DIR", blocker / "flight")  # cannot exist
    flown = load(doc, env={})
    assert flown.cds.directory == blocker / "flight"  # never a temp dir outside test mode
    with pytest.raises(errors.ConfigError, match="cannot create it"):
        flown.cds.ensure()
    tmp_env = {"TMPDIR": str(tmp_path / "t")}
    doc["mission"]["test_mode"] = True
    tested = load(doc, env=tmp_env)
    assert tested.cds.directory.parent == tmp_path / "t"
    assert tested.cds.directory.name.startswith("flight-state-")
    assert tested.cds.ensure().is_dir()
    doc["mission"]["test_mode"] = False
    assert load(doc, env=tmp_env).with_test_mode(tmp_env).cds == tested.cds


def test_cds_explicit_directory(tmp_path: Path):
    doc = base()
    doc["cds"] = {"directory": "state"}
    path = tmp_path / "mission.toml"
    path.write_text(to_toml(doc))
    m = load_mission(path)
    assert m.cds.directory == tmp_path / "state" and m.cds.explicit
    assert m.with_test_mode().cds == m.cds and m.with_test_mode().test_mode
    doc["cds"] = {"directory": ""}
    with pytest.raises(errors.ConfigError, match=r"\[cds\]: directory may not be empty"):
        load(doc)


# --- validation rules, one bad snippet each -----------------------------------------------------

P = "partition.0."
RULES: list[tuple[dict[str, Any], str]] = [
    # [mission]
    ({"mission.name": ""}, "[mission]: name must be 1-64 printable characters"),
    ({"mission.name": DELETE}, "[mission]: name is required"),
    ({"mission.seed": -1}, "[mission]: seed -1 is out of range 0 .. 18446744073709551615"),
    ({"mission.seed": 2.0}, "[mission]: seed must be an integer, not 2.0"),
    ({"mission.test_mode": "yes"}, "[mission]: test_mode must be true or false, not 'yes'"),
    # [schedule]
    ({"schedule.minor_frame_ms": 0}, "[schedule]: minor_frame_ms 0 is out of range 1 .. 10000"),
    ({"schedule.minor_frame_ms": 10001}, "minor_frame_ms 10001 is out of range 1 .. 10000"),
    ({"schedule.minor_frame_ms": 12.5}, "minor_frame_ms must be an integer, not 12.5"),
    ({"schedule.minor_frame_ms": True}, "minor_frame_ms must be an integer, not True"),
    ({"schedule.minor_frames_per_major": 0}, "minor_frames_per_major 0 is out of range 1 .. 1000"),
    (
        {"schedule.minor_frame_ms": 1000, "schedule.minor_frames_per_major": 100},
        "[schedule]: the major frame (1000 ms x 100 = 100000 ms) exceeds 60 s",
    ),
    ({"schedule.minor_frames_per_major": DELETE}, "[schedule]: minor_frames_per_major is required"),
    # partitions: timing
    (
        {P + "deadline_ms": 150},
        "mission.toml: partition 'classifier': deadline_ms 150 exceeds its period (100 ms)",
    ),
    (
        {P + "deadline_ms": 0},
        "'classifier': deadline_ms 0 is out of range (0, 3600000] ms",
    ),
    ({P + "deadline_ms": math.nan}, "partition 'classifier': deadline_ms must be finite, not nan"),
    ({P + "deadline_ms": math.inf}, "deadline_ms must be finite, not inf"),
    ({P + "deadline_ms": "80"}, "deadline_ms must be a number, not '80'"),
    (
        {P + "period_frames": 3},
        "partition 'classifier': period_frames 3 does not divide minor_frames_per_major 4",
    ),
    ({P + "period_frames": 8}, "partition 'classifier': period_frames 8 is out of range 1 .. 4"),
    (
        {P + "heartbeat_timeout_ms": 40},
        "heartbeat_timeout_ms 40 is shorter than its period (100 ms): the partition would "
        "always look hung",
    ),
    (
        {P + "heartbeat_timeout_ms": 2000},
        "partition 'classifier': heartbeat_timeout_ms 2000 is not shorter than the watchdog "
        "timeout (2 s)",
    ),
    (
        {P + "restart_period_s": 0.05},
        "partition 'classifier': restart_period_s 0.05 is shorter than its period (100 ms)",
    ),
    # partitions: identity and job
    ({P + "name": "Classifier"}, "[[partition]] #1: name 'Classifier' must match [a-z0-9_-]{1,32}"),
    ({P + "name": "x" * 33}, "must match [a-z0-9_-]{1,32}"),
    ({P + "name": DELETE}, "[[partition]] #1: name is required"),
    ({P + "job": "train"}, "partition 'classifier': job must be one of model; not 'train'"),
    ({P + "model": DELETE}, "partition 'classifier': model is required"),
    (
        {P + "model": "digits_cnn.onnx"},
        "model 'digits_cnn.onnx' must be a .flm file (convert ONNX with `flight model convert`)",
    ),
    ({P + "model": ""}, "partition 'classifier': model must name a file"),
    ({P + "dataset": "digits.csv"}, "dataset 'digits.csv' must be a .npz file"),
    ({P + "dataset": "nope.npz"}, "dataset 'nope.npz' not found"),
    # partitions: redundancy
    ({P + "redundancy": "quad"}, "redundancy must be one of tmr, dwc, none; not 'quad'"),
    ({P + "placement": "both"}, "placement must be one of time, space; not 'both'"),
    (
        {P + "weight_copies": 2},
        "weight_copies 2 is fewer than the 3 replicas of tmr: each replica needs its own copy",
    ),
    ({P + "weight_copies": 4}, "weight_copies 4 is out of range 1 .. 3"),
    (
        {P + "redundancy": "dwc", P + "vote_points": ["conv1"], P + "escalation": ["disable"]},
        "partition 'classifier': vote_points need redundancy = \"tmr\" (it is 'dwc')",
    ),
    ({P + "vote_points": ["a", "b", "a"]}, "vote_points lists 'a' more than once"),
    ({P + "vote_points": [""]}, "vote_points may not contain an empty name"),
    ({P + "vote_points": "conv1"}, "vote_points must be a list of strings, not 'conv1'"),
    ({P + "vote_points": [1]}, "vote_points must be a list of strings, not [1]"),
    # partitions: restart policy and escalation
    (
        {P + "restart_type": "forever"},
        "partition 'classifier': restart_type must be one of ['permanent', 'transient', 'temp",
    ),
    (
        {P + "restart_type": "temporary", P + "max_restarts": 2},
        'max_restarts 2 conflicts with restart_type "temporary"',
    ),
    ({P + "max_restarts": -1}, "max_restarts -1 is out of range 0 .. 1000"),
    (
        {P + "max_restarts": 13},
        "mission.toml: partition 'classifier' may order up to 41 restarts before its escalation "
        "stops it (max_restarts 13 per window, escalation ['degrade', 'disable', 'safe_mode', "
        "'reset']), but the supervisor allows only 12 restarts in 120 s over all partitions "
        "([recovery] processor_reset_max, [recovery] processor_reset_period_s)",
    ),
    (
        {P + "escalation": ["reset", "degrade"]},
        "partition 'classifier': escalation steps must go in the order "
        "['degrade', 'disable', 'safe_mode', 'reset'], each at most once; got ['reset', 'degrade']",
    ),
    (
        {P + "escalation": ["explode"]},
        "partition 'classifier': escalation step must be one of ['degrade', 'disable', "
        "'safe_mode', 'reset'], not 'explode'",
    ),
    (
        {P + "escalation": []},
        "partition 'classifier': escalation is empty; it needs at least one step",
    ),
    (
        {P + "escalation": ["degrade", "safe_mode"]},
        "partition 'classifier': the escalation must end with 'disable' or 'reset'",
    ),
    (
        {"recovery.safe_mode_max": 0},
        "partition 'classifier': escalation goes to safe_mode but [recovery] safe_mode_max is 0",
    ),
    ({"recovery.safe_mode_max": -1}, "[recovery]: safe_mode_max -1 is out of range 0 .. 1000"),
    ({P + "in_safe_mode": 1}, "in_safe_mode must be true or false, not 1"),
    ({P + "start_deadline_s": 0}, "start_deadline_s 0 is out of range (0, 3600] s"),
    ({P + "escalation": ["disable", "disable"]}, "escalation lists 'disable' more than once"),
    (
        {P + "redundancy": "none"},
        "partition 'classifier': escalation step 'degrade' on a simplex partition "
        "(redundancy 'none') can do nothing",
    ),
    # [recovery]
    (
        {"recovery.strategy": "all_for_one"},
        "[recovery] strategy must be one of ['one_for_one', 'rest_for_one', 'one_for_all'], "
        "not 'all_for_one'",
    ),
    (
        {"recovery.order": ["classifier", "imager"]},
        "[recovery] order names unknown partition 'imager' (partitions: classifier)",
    ),
    ({"recovery.order": []}, "[recovery] order leaves out partition 'classifier'"),
    ({"recovery.order": ["classifier"] * 2}, "order lists 'classifier' more than once"),
    ({"recovery.processor_reset_max": 0}, "processor_reset_max 0 is out of range 1 .. 10000"),
    ({"recovery.vote_alarm_threshold": 0}, "vote_alarm_threshold 0 is out of range"),
    ({"recovery.storm_upset_threshold": -1}, "storm_upset_threshold -1 is out of range 0 .."),
    ({"recovery.storm_upset_threshold": 2.5}, "storm_upset_threshold must be an integer"),
    (
        {"recovery.vote_alarm_period_s": 0.1},
        "[recovery]: vote_alarm_period_s 0.1 is shorter than the major frame (200 ms)",
    ),
    ({"recovery.processor_reset_period_s": -5}, "processor_reset_period_s -5 is out of range"),
    # [scrub]
    (
        {"scrub.bytes_per_frame": 8192},
        "[scrub]: bytes_per_frame 8192 is less than one block in every copy "
        "(4096 B x 3 copies = 12288 B)",
    ),
    ({"scrub.block_size": 100}, "[scrub]: block_size 100 must be a multiple of 8"),
    ({"scrub.block_size": 32}, "[scrub]: block_size 32 is out of range 64 .. 1048576"),
    ({"scrub.bytes_per_frame": 0}, "bytes_per_frame 0 is out of range"),
    # [watchdog]
    ({"watchdog.kind": "hw"}, "[watchdog]: kind must be one of none, software, hardware; not 'hw'"),
    (
        {"watchdog.timeout_s": 0.2},
        "[watchdog]: timeout_s 0.2 is not longer than the major frame (200 ms)",
    ),
    (
        {"watchdog.kind": "hardware", "watchdog.timeout_s": 2.5},
        "[watchdog]: timeout_s 2.5 must be whole seconds for a hardware watchdog",
    ),
    ({"watchdog.device": "watchdog0"}, "[watchdog]: device must be an absolute path"),
    ({"watchdog.timeout_s": 7200}, "timeout_s 7200 is out of range (0, 3600] s"),
]


@pytest.mark.parametrize(("changes", "message"), RULES, ids=[m[:60] for _, m in RULES])
def test_validation_rule(changes: dict[str, Any], message: str):
    doc = base()
    for path, value in changes.items():
        set_path(doc, path, value)
    with pytest.raises(errors.ConfigError, match=re.escape(message)) as info:
        load(doc)
    assert str(info.value).startswith("mission.toml: ")


def test_valid_variations_are_accepted():
    doc = base()
    set_path(doc, P + "heartbeat_timeout_ms", 2000)
    set_path(doc, "watchdog.kind", "none")
    assert load(doc).watchdog.kind == "none"  # no watchdog: no conflict with it
    doc = base()
    set_path(doc, "watchdog.kind", "hardware")
    set_path(doc, "watchdog.timeout_s", 3.0)
    assert load(doc).watchdog.timeout_s == 3.0
    doc = base()
    set_path(doc, P + "vote_points", ["conv1", "fc1"])
    set_path(doc, P + "escalation", ["disable", "reset"])
    set_path(doc, P + "placement", "space")
    p = load(doc).partitions[0]
    assert p.vote_points == ("conv1", "fc1") and p.escalation == ("disable", "reset")


def test_two_partitions_order_and_duplicates():
    doc = base()
    second = copy.deepcopy(doc["partition"][0]) | {"name": "imager", "redundancy": "dwc"}
    doc["partition"].append(second)
    doc["recovery"]["order"] = ["imager", "classifier"]
    doc["recovery"]["strategy"] = "rest_for_one"
    m = load(doc)
    assert m.partition_names == ("classifier", "imager")
    assert m.recovery.order == ("imager", "classifier")
    assert m.partition("imager").weight_copies == 2
    doc["partition"][1]["name"] = "classifier"
    with pytest.raises(errors.ConfigError, match="partition 'classifier' is defined twice"):
        load(doc)


def test_scrub_minimum_follows_the_largest_copy_count():
    doc = base()
    set_path(doc, P + "redundancy", "dwc")
    set_path(doc, P + "escalation", ["degrade", "disable"])
    set_path(doc, "scrub.bytes_per_frame", 8192)
    assert load(doc).scrub.bytes_per_frame == 8192  # 2 copies x 4096
    set_path(doc, P + "weight_copies", 3)
    with pytest.raises(errors.ConfigError, match=re.escape("(4096 B x 3 copies = 12288 B)")):
        load(doc)


# --- structure and unknown keys -----------------------------------------------------------------

STRUCTURE = [
    ('[mission]\nname = "x"\n', "mission.toml: [schedule] is required"),
    ("[schedule]\nminor_frame_ms = 50\n", "mission.toml: [mission] is required"),
    (
        '[mission]\nname = "x"\n[schedule]\nminor_frame_ms = 50\nminor_frames_per_major = 4\n',
        "mission.toml: at least one [[partition]] is required",
    ),
    (
        '[mission]\nname = "x"\n[schedule]\nminor_frame_ms = 50\nminor_frames_per_major = 4\n'
        '[partition]\nname = "p"\n',
        "partitions are an array of tables: write [[partition]], not [partition]",
    ),
    ("mission = 3\n", "mission.toml: [mission] must be a table"),
    (
        'partition = [1]\n[mission]\nname = "x"\n'
        "[schedule]\nminor_frame_ms = 50\nminor_frames_per_major = 4\n",
        "mission.toml: [[partition]] #1 must be a table",
    ),
    ("[mission\n", "mission.toml: invalid TOML"),
]


@pytest.mark.parametrize(("text", "message"), STRUCTURE)
def test_structure_errors(text: str, message: str):
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
        parse_mission(text, source="mission.toml")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("missions.name", "mission.toml: top level: unknown key 'missions'"),
        ("mission.sed", "[mission]: unknown key 'sed' (did you mean 'seed'?)"),
        ("schedule.minor_frame", "[schedule]: unknown key 'minor_frame' (did you mean"),
        (
            P + "deadline",
            "'classifier': unknown key 'deadline' (did you mean 'deadline_ms'?)",
        ),
        (P + "max_restart", "unknown key 'max_restart' (did you mean 'max_restarts'?)"),
        ("recovery.stratgy", "[recovery]: unknown key 'stratgy' (did you mean 'strategy'?)"),
        ("scrub.bytes_per_cycle", "[scrub]: unknown key 'bytes_per_cycle'"),
        ("watchdog.timeout", "[watchdog]: unknown key 'timeout' (did you mean 'timeout_s'?)"),
        ("cds.dir", "[cds]: unknown key 'dir'"),
    ],
)
def test_unknown_keys_are_errors(path: str, message: str):
    doc = set_path(base(), path, 1)
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
        load(doc)


# --- fuzzing: anything but a Mission or a ConfigError is a bug -----------------------------------

INT_FIELDS = [
    "mission.seed",
    "schedule.minor_frame_ms",
    "schedule.minor_frames_per_major",
    P + "period_frames",
    P + "deadline_ms",
    P + "heartbeat_timeout_ms",
    P + "weight_copies",
    P + "max_restarts",
    P + "restart_period_s",
    "recovery.processor_reset_max",
    "recovery.processor_reset_period_s",
    "recovery.vote_alarm_threshold",
    "recovery.vote_alarm_period_s",
    "recovery.storm_upset_threshold",
    "recovery.safe_mode_max",
    "recovery.safe_mode_period_s",
    P + "start_deadline_s",
    "scrub.block_size",
    "scrub.bytes_per_frame",
    "watchdog.timeout_s",
]
ALL_FIELDS = [
    *INT_FIELDS,
    "mission.name",
    "mission.test_mode",
    P + "name",
    P + "redundancy",
    P + "placement",
    P + "restart_type",
    P + "vote_points",
    P + "escalation",
    P + "in_safe_mode",
    "recovery.strategy",
    "recovery.order",
    "watchdog.kind",
    "watchdog.device",
    "cds.directory",
]

toml_ints = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-5, 5000),
    st.sampled_from([0, 1, 8, 64, 4096, 12288, 2**31, 2**64 - 1]),
)
toml_values = st.one_of(
    toml_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.sampled_from(["degrade", "disable", "safe_mode", "reset", "classifier", "x"])),
)


def check_outcome(doc: dict[str, Any]) -> None:
    try:
        result = load(doc)
    except errors.ConfigError as exc:
        assert str(exc).startswith("mission.toml: ")
    else:
        assert isinstance(result, Mission)


@given(st.dictionaries(st.sampled_from(INT_FIELDS), toml_ints, min_size=1, max_size=4))
def test_random_integer_fields_give_mission_or_config_error(changes: dict[str, int]):
    doc = base()
    for path, value in changes.items():
        set_path(doc, path, value)
    check_outcome(doc)


@given(st.dictionaries(st.sampled_from(ALL_FIELDS), toml_values, min_size=1, max_size=3))
def test_random_values_anywhere_give_mission_or_config_error(changes: dict[str, Any]):
    doc = base()
    for path, value in changes.items():
        set_path(doc, path, value)
    check_outcome(doc)


def test_cds_falls_back_to_a_per_user_state_dir(monkeypatch, tmp_path):
    """A user without /var/lib/flight gets a persistent per-user directory, not /tmp."""
    import flight.mission as mission_module

    blocker = tmp_path / "a-file"  # a path under a regular file can never be created
    blocker.write_text("")
    system = blocker / "var-lib-flight"
    monkeypatch.setattr(mission_module, "SYSTEM_STATE_DIR", system)
    env = {"HOME": str(tmp_path)}
    cds = mission_module._default_cds(test_mode=False, env=env)
    assert cds.directory == tmp_path / ".local" / "state" / "flight"
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "xdg")}
    assert mission_module._default_cds(False, env).directory == tmp_path / "xdg" / "flight"
    nowhere = {"HOME": str(blocker / "home")}
    assert mission_module._default_cds(False, nowhere).directory == system
    assert mission_module._default_cds(True, {**nowhere, "TMPDIR": str(tmp_path)}).directory == (
        tmp_path / f"flight-state-{os.getuid()}"
    )


# --- the restart table: one validator (flight.recovery.policy), run at load ----------------------

#: Names the recovery policy gives its fields; a mission error must use the file's keys instead.
FSM_NAMES = re.compile(
    r"\b(ladder|start_deadline|max_safe_mode_entries|safe_mode_period|vote_alarms|vote_period|"
    r"storm_upsets)\b|\b(restart|period) must"
)


def test_worst_case_beyond_processor_reset_max_is_rejected_at_load():
    """The ladder's worst case (tmr, 3 per window, the full ladder: 11 restarts) must fit in
    the processor-reset budget; before, only max_restarts <= processor_reset_max was checked at
    load and the worst case failed later, in the supervisor, naming the policy's fields."""
    doc = base()
    set_path(doc, "recovery.processor_reset_max", 11)
    assert load(doc).recovery.processor_reset_max == 11  # exactly enough
    set_path(doc, "recovery.processor_reset_max", 5)
    with pytest.raises(errors.ConfigError) as info:
        load(doc)
    message = str(info.value)
    assert message.startswith("mission.toml: partition 'classifier' may order up to 11 restarts")
    assert "only 5 restarts in 120 s" in message
    assert "[recovery] processor_reset_max" in message and "max_restarts 3" in message
    assert not FSM_NAMES.search(message), message


def test_policy_from_mission_checks_the_order_itself():
    """The order is part of the restart table: a mission built in code (not parsed) gets the
    same checks, in the mission's words."""
    import dataclasses

    from flight.recovery import policy_from_mission

    doc = base()
    second = copy.deepcopy(doc["partition"][0]) | {"name": "imager"}
    doc["partition"].append(second)
    doc["recovery"]["processor_reset_max"] = 30
    m = load(doc)
    assert policy_from_mission(m).names == ("classifier", "imager")
    for order, message in [
        (("imager", "imager", "classifier"), "[recovery] order lists partition 'imager' twice"),
        (("imager",), "[recovery] order leaves out partition 'classifier'"),
        (("imager", "classifier", "x"), "[recovery] order names unknown partition 'x'"),
    ]:
        bad = dataclasses.replace(m, recovery=dataclasses.replace(m.recovery, order=order))
        with pytest.raises(errors.ConfigError, match=re.escape(message)):
            policy_from_mission(bad)


RESTART_TABLE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({P + "restart_type": "forever"}, "partition 'classifier': restart_type must be one of"),
    ({P + "escalation": ["explode"]}, "partition 'classifier': escalation step must be"),
    ({P + "escalation": []}, "partition 'classifier': escalation is empty"),
    ({P + "escalation": ["reset", "disable"]}, "partition 'classifier': escalation steps must go"),
    ({P + "escalation": ["degrade"]}, "partition 'classifier': the escalation must end with"),
    ({P + "redundancy": "none"}, "(redundancy 'none') can do nothing"),
    ({P + "max_restarts": 13}, "lower the partition's max_restarts"),
    ({"recovery.processor_reset_max": 10}, "raise [recovery] processor_reset_max"),
    ({"recovery.safe_mode_max": 0}, "escalation goes to safe_mode but [recovery] safe_mode_max"),
    ({"recovery.strategy": "some"}, "[recovery] strategy must be one of"),
    ({"recovery.order": ["x", "classifier"]}, "[recovery] order names unknown partition 'x'"),
    ({"recovery.order": []}, "[recovery] order leaves out partition 'classifier'"),
]


@pytest.mark.parametrize(
    ("changes", "key"), RESTART_TABLE_ERRORS, ids=[k for _, k in RESTART_TABLE_ERRORS]
)
def test_restart_table_errors_name_the_mission_keys(changes: dict[str, Any], key: str):
    doc = base()
    for path, value in changes.items():
        set_path(doc, path, value)
    with pytest.raises(errors.ConfigError) as info:
        load(doc)
    message = str(info.value)
    assert message.startswith("mission.toml: ") and key in message
    assert not FSM_NAMES.search(message), message


STEPS = ["degrade", "disable", "safe_mode", "reset"]


@st.composite
def restart_tables(draw: st.DrawFn) -> dict[str, Any]:
    """Restart-table keys of one partition and [recovery], mostly well-formed, so that both
    outcomes are common (an invalid value anywhere comes from the noise fields)."""
    restart_type = draw(st.sampled_from(["permanent", "transient", "temporary"]))
    last = draw(st.sampled_from(["disable", "reset"]))
    escalation = [s for s in STEPS[: STEPS.index(last)] if draw(st.booleans())] + [last]
    if draw(st.integers(0, 3)) == 0:  # sometimes anything
        escalation = draw(st.lists(st.sampled_from([*STEPS, "x"]), max_size=5))
    return {
        P + "redundancy": draw(st.sampled_from(["tmr", "dwc", "none"])),
        P + "weight_copies": 3,
        P + "restart_type": restart_type,
        P + "max_restarts": 0 if restart_type == "temporary" else draw(st.integers(0, 12)),
        P + "escalation": escalation,
        P + "in_safe_mode": draw(st.booleans()),
        "recovery.processor_reset_max": draw(st.integers(1, 60)),
        "recovery.safe_mode_max": draw(st.integers(0, 2)),
        "recovery.strategy": draw(st.sampled_from(["one_for_one", "rest_for_one", "one_for_all"])),
    }


@given(
    restart_tables(),
    st.one_of(st.just({}), st.dictionaries(st.sampled_from(ALL_FIELDS), toml_values, max_size=2)),
)
def test_any_mission_that_loads_builds_its_policy(table: dict[str, Any], noise: dict[str, Any]):
    """Both policy builders (the supervisor's, until it imports the recovery package's, and the
    recovery package's) accept every mission that loads; a rejection names mission keys."""
    from flight import recovery, supervisor

    doc = base()
    for path, value in [*table.items(), *noise.items()]:
        set_path(doc, path, value)
    try:
        m = load(doc)
    except errors.ConfigError as exc:
        label("rejected")
        assert str(exc).startswith("mission.toml: ")
        assert not FSM_NAMES.search(str(exc)), str(exc)
        return
    label("loaded")
    policy = recovery.policy_from_mission(m)
    assert supervisor.policy_from_mission(m) == policy
    assert policy.names == m.recovery.order
    assert policy.max_restarts == m.recovery.processor_reset_max
    for spec, row in zip(m.partitions, policy.partitions, strict=True):
        assert (row.name, row.restart.value, row.max_restarts) == (
            spec.name,
            spec.restart_type,
            spec.max_restarts,
        )
        assert tuple(s.value for s in row.ladder) == spec.escalation
