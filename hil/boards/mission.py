"""The mission a local board runs: the user's (or the bundled) mission, made fit for a rig.

A spawned board must be in test mode (the HIL agent refuses otherwise), must accept the
harness's commands (its own generated key file) and must find its model and data set wherever
it is started from. So the mission file is read, validated by flight itself, and written again
with: ``test_mode = true``; ``[link] key_file`` naming the generated keys (its ``url`` dropped:
``--link`` names the port); every partition's model and data set as the absolute paths flight
resolved; the ``[cds]`` table dropped (``--state-dir`` names the state). Optionally the restart
budgets are widened, so that a campaign of many hangs and crashes measures recovery instead of
climbing the escalation ladder after the third one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["board_mission", "dumps_toml"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def board_mission(
    source: str | os.PathLike[str] | None,
    key_file: str | os.PathLike[str],
    *,
    restart_budget: int | None = None,
) -> str:
    """The TOML text of the rig's mission (see the module docstring); ``source`` None is the
    bundled demo mission. ``restart_budget`` (1 .. 1000): every partition's ``max_restarts``
    becomes at least this, and the processor-reset budget room for it. Raises ConfigError for
    an invalid mission."""
    from importlib.resources import files

    from flight.mission import DEFAULT_MISSION, load_mission

    bundled = Path(str(files("flight").joinpath("data", DEFAULT_MISSION)))
    path = Path(source) if source is not None else bundled
    mission = load_mission(path)  # flight's own validation, and its path resolution
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    doc.setdefault("mission", {})["test_mode"] = True
    link = doc.setdefault("link", {})
    link.pop("url", None)
    link["key_file"] = str(Path(key_file).resolve())
    doc.pop("cds", None)
    resolved = {p.name: p for p in mission.partitions}
    for table in doc.get("partition", []):
        partition = resolved[table["name"]]
        if partition.model_path is not None:
            table["model"] = str(partition.model_path)
        if partition.dataset_path is not None:
            table["dataset"] = str(partition.dataset_path)
        if restart_budget is not None:
            table["max_restarts"] = max(restart_budget, int(table.get("max_restarts", 0)))
    if restart_budget is not None:
        recovery = doc.setdefault("recovery", {})
        # room for every partition's whole ladder (flight checks it: worst_case_restarts),
        # a few times max_restarts; 10,000 is the most flight accepts
        recovery["processor_reset_max"] = min(
            10_000, max(10 * restart_budget, int(recovery.get("processor_reset_max", 0)))
        )
    return dumps_toml(doc)


def dumps_toml(doc: dict[str, Any]) -> str:
    """TOML text for a document as :mod:`tomllib` reads one (tables, arrays of tables, strings,
    numbers, booleans, dates and arrays of those); ``tomllib.loads`` gives ``doc`` back."""
    lines: list[str] = []
    _table(lines, (), doc)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(lines: list[str], name: tuple[str, ...], table: dict[str, Any]) -> None:
    children = []
    for key, value in table.items():
        if isinstance(value, dict) or _is_table_array(value):
            children.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in children:
        path = (*name, key)
        header = ".".join(_key(k) for k in path)
        if isinstance(value, dict):
            lines += ["", f"[{header}]"]
            _table(lines, path, value)
        else:
            for item in value:
                lines += ["", f"[[{header}]]"]
                _table(lines, path, item)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # ASCII with \uXXXX escapes: a valid TOML basic string
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__} {value!r}")
