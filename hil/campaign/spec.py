"""The campaign spec: one TOML file that says what to inject, where, into which arms, and how
many times.

Everything is checked before anything runs (issue 10, "Bad input"): unknown keys and tables are
refused with the key named, values are typed and ranged, and combinations that cannot run (a
hang at model level, process memory without a board) are refused here rather than discovered an
hour into a campaign. The spec keeps its own text and SHA-256 so the store can refuse to resume
a campaign whose spec changed.

Sample size with a confidence level and margin follows Leveugle et al. 2009 ("Statistical fault
injection: quantified error and confidence", DATE 2009):
n = N t^2 p(1-p) / (e^2 (N-1) + t^2 p(1-p)).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any

from flight.errors import ConfigError
from flight.modes import MODES

__all__ = [
    "ArmSpec",
    "CampaignSpec",
    "FaultSpec",
    "SpecError",
    "TargetSpec",
    "file_sha256",
    "load_spec",
    "parse_spec",
    "sample_size",
]


class SpecError(ConfigError):
    """A campaign spec that cannot run: the message names the file and the key."""


LEVELS = ("model", "board")
FAULT_MODELS = ("seu", "mbu", "stuck-at", "hang", "crash")
#: Sites of bit-flip faults, and the levels that can reach them.
FLIP_SITES: dict[str, tuple[str, ...]] = {
    "weights": ("model", "board"),
    "activations": ("model", "board"),
    "outputs": ("model", "board"),
    "crc-tables": ("model", "board"),
    "cds": ("board",),
    "process-memory": ("board",),
}
#: The one site of hangs and crashes.
PARTITION_SITE = "partition"
SIGNALS = ("SIGKILL", "SIGSEGV")
PROCESSES = ("partition", "supervisor", "both")
DEFAULT_BATCH = {"model": 64, "board": 4}
DEFAULT_MODEL = "digits_cnn.flm"
DEFAULT_SITES = ("weights", "activations", "outputs")
INPUT_SUFFIXES = (".npy", ".npz")
MAX_RUNS = 10**9
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_REQUIRED: Any = object()


def sample_size(population: float, confidence: float, margin: float, p: float = 0.5) -> int:
    """Injections needed for ``margin`` at ``confidence`` in a fault space of ``population``
    (Leveugle et al. 2009; ``math.inf`` for an unbounded space), rounded up, never more than
    the population."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} is outside (0, 1)")
    if not 0 < margin < 1:
        raise ValueError(f"margin {margin} is outside (0, 1)")
    if not 0 < p < 1:
        raise ValueError(f"p {p} is outside (0, 1)")
    if not population >= 1:  # also refuses NaN
        raise ValueError(f"population {population} must be >= 1")
    t = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    tpq = t * t * p * (1 - p)
    if math.isinf(population):
        n = tpq / (margin * margin)
    else:
        n = population * tpq / (margin * margin * (population - 1) + tpq)
    # round up, but a float that is an integer up to rounding noise is that integer
    n = math.ceil(n - 1e-9)
    return int(max(1, min(n, population)))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, hex (the store's ``model_sha256``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetSpec:
    """``[target]``: what is injected into."""

    level: str = "model"
    model: Path = Path()  # resolved
    #: the inputs file, resolved if found; ``None`` = the default inputs (docs/hil.md)
    inputs: Path | None = None
    board: str = "spawn"  # board level: "spawn" or a link URL
    boards: int = 1  # board level, spawn
    mission: Path | None = None  # board level, spawn: None = the bundled mission in test mode
    key_file: Path | None = None  # board level, URL
    partition: str = "classifier"  # board level


@dataclass(frozen=True)
class FaultSpec:
    """``[fault]``: the fault model and where it lands."""

    model: str = "seu"
    sites: tuple[str, ...] = DEFAULT_SITES
    mbu_bits: int = 2
    signals: tuple[str, ...] = ("SIGKILL",)
    process: str = "partition"


@dataclass(frozen=True)
class ArmSpec:
    """``[[arm]]``: one configuration under test; every arm gets the same faults."""

    name: str
    redundancy: str = "none"
    vote_points: tuple[str, ...] = ()


@dataclass(frozen=True)
class CampaignSpec:
    """A parsed, checked campaign spec (frozen and picklable: it travels in every batch)."""

    name: str
    target: TargetSpec
    fault: FaultSpec
    arms: tuple[ArmSpec, ...]
    seed: int = 0
    runs: int | None = None  # per arm; None = from confidence and margin
    confidence: float = 0.95  # also the level of every reported interval
    margin: float | None = None  # Leveugle's e, and the early-stop half-width
    p: float = 0.5
    early_stop: bool = False
    batch: int = 64
    text: str = ""  # the spec file as read
    sha256: str = ""  # of ``text`` (UTF-8)
    source: str = ""  # where it came from (for messages)

    def arm(self, name: str) -> ArmSpec:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"campaign {self.name!r} has no arm {name!r}")

    def runs_for(self, arm: str, population: float) -> int:
        """Planned injections for ``arm`` in a fault space of ``population`` (identical for
        every arm, which is what pairs their faults; the argument checks the name)."""
        self.arm(arm)
        if self.runs is not None:
            return self.runs
        assert self.margin is not None  # parse_spec guarantees runs or confidence + margin
        return sample_size(population, self.confidence, self.margin, self.p)

    def check_files(self) -> None:
        """Refuse a spec whose inputs file does not exist (the runner calls this before the
        golden run; parsing leaves it so that a spec can be read, hashed and shown anywhere)."""
        if self.target.inputs is not None and not self.target.inputs.is_file():
            raise SpecError(f"{self.source}: [target] inputs: no such file {self.target.inputs}")

    def to_toml(self) -> str:
        """Canonical TOML for this spec: ``parse_spec(spec.to_toml())`` gives it back (up to
        ``text``, ``sha256`` and ``source``)."""
        lines = ["[campaign]", f"name = {_toml(self.name)}", f"seed = {self.seed}"]
        if self.runs is not None:
            lines.append(f"runs = {self.runs}")
        if self.runs is None or self.margin is not None:
            lines.append(f"confidence = {_toml(self.confidence)}")
        if self.margin is not None:
            lines.append(f"margin = {_toml(self.margin)}")
        if self.runs is None:
            lines.append(f"p = {_toml(self.p)}")
        lines += [f"early_stop = {_toml(self.early_stop)}", f"batch = {self.batch}", ""]
        t = self.target
        lines += ["[target]", f"level = {_toml(t.level)}", f"model = {_toml(str(t.model))}"]
        if t.inputs is not None:
            lines.append(f"inputs = {_toml(str(t.inputs))}")
        if t.level == "board":
            lines += [f"board = {_toml(t.board)}", f"partition = {_toml(t.partition)}"]
            if t.board == "spawn":
                lines.append(f"boards = {t.boards}")
                if t.mission is not None:
                    lines.append(f"mission = {_toml(str(t.mission))}")
            elif t.key_file is not None:
                lines.append(f"key_file = {_toml(str(t.key_file))}")
        f = self.fault
        lines += ["", "[fault]", f"model = {_toml(f.model)}", f"sites = {_toml(list(f.sites))}"]
        if f.model == "mbu":
            lines.append(f"mbu_bits = {f.mbu_bits}")
        if f.model == "crash":
            lines.append(f"signals = {_toml(list(f.signals))}")
        if "process-memory" in f.sites:
            lines.append(f"process = {_toml(f.process)}")
        for arm in self.arms:
            lines += ["", "[[arm]]", f"name = {_toml(arm.name)}"]
            lines.append(f"redundancy = {_toml(arm.redundancy)}")
            if arm.vote_points:
                lines.append(f"vote_points = {_toml(list(arm.vote_points))}")
        return "\n".join(lines) + "\n"


def load_spec(path: str | os.PathLike[str], *, check_files: bool = False) -> CampaignSpec:
    """Read and check a spec file; relative paths in it resolve against its directory first."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the campaign spec: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: the campaign spec is not UTF-8 text: {exc}") from exc
    spec = parse_spec(text, str(path), path.resolve().parent)
    if check_files:
        spec.check_files()
    return spec


def parse_spec(
    text: str, source: str = "<spec>", base_dir: str | os.PathLike[str] | None = None
) -> CampaignSpec:
    """Check TOML ``text``. Relative paths resolve against ``base_dir`` (if given), then the
    working directory, then the installed ``flight/data``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: invalid TOML: {exc}") from exc
    spec = _Parser(source, None if base_dir is None else Path(base_dir)).spec(doc)
    return replace(spec, text=text, sha256=hashlib.sha256(text.encode()).hexdigest())


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _toml_char(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\u{ord(c):04x}"
    return c


class _Table:
    """One TOML table being read: typed getters that name the key in every error, and a final
    check that no key was left unread (typos)."""

    def __init__(self, source: str, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise SpecError(f"{source}: {where} must be a table")
        self.source, self.where, self.data = source, where, data
        self.read: set[str] = set()

    def error(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.source}: {self.where} {key}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: Any) -> Any:
        self.read.add(key)
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise self.error(key, "is required")
        return default

    def integer(self, key: str, lo: int, hi: int, default: Any = _REQUIRED) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {value!r}")
        if not lo <= value <= hi:
            raise self.error(key, f"{value} is out of range {lo} .. {hi}")
        return value

    def fraction(self, key: str, default: Any = _REQUIRED) -> float:
        """A number strictly between 0 and 1."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {value!r}")
        if not 0 < value < 1:  # also refuses nan
            raise self.error(key, f"{value} is out of range (0, 1)")
        return float(value)

    def boolean(self, key: str, default: Any = _REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {value!r}")
        return value

    def string(self, key: str, default: Any = _REQUIRED) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _REQUIRED) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; not {value!r}")
        return value

    def strings(
        self, key: str, choices: tuple[str, ...] | None = None, default: Any = _REQUIRED
    ) -> tuple[str, ...]:
        value = self._get(key, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of strings, not {value!r}")
        repeated = sorted({v for v in value if list(value).count(v) > 1})
        if repeated:
            raise self.error(key, f"lists {', '.join(map(repr, repeated))} more than once")
        if choices is not None:
            for v in value:
                if v not in choices:
                    raise self.error(key, f"{v!r} is not one of {', '.join(choices)}")
        return tuple(value)

    def refuse(self, key: str, why: str) -> None:
        """A key that is valid elsewhere but not in this combination."""
        if key in self.data:
            raise self.error(key, f"does not apply {why}")

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(self.read), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(self.read))
            raise SpecError(
                f"{self.source}: {self.where}: unknown key {key!r}{hint}; known keys: {known}"
            )


class _Parser:
    SECTIONS = ("campaign", "target", "fault", "arm")

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source, self.base_dir = source, base_dir

    def error(self, message: str) -> SpecError:
        return SpecError(f"{self.source}: {message}")

    def spec(self, doc: dict[str, Any]) -> CampaignSpec:
        for key in doc:
            if key not in self.SECTIONS:
                close = difflib.get_close_matches(key, self.SECTIONS, n=1)
                hint = f" (did you mean [{close[0]}]?)" if close else ""
                raise self.error(
                    f"unknown table or key {key!r}{hint}; known tables: "
                    "[campaign], [target], [fault], [[arm]]"
                )
        for name in ("campaign", "target", "fault"):
            if name not in doc:
                raise self.error(f"[{name}] is required")
        target = self.target(_Table(self.source, "[target]", doc["target"]))
        fault = self.fault(_Table(self.source, "[fault]", doc["fault"]), target.level)
        arms = self.arms(doc.get("arm"), target.level)
        return self.campaign(
            _Table(self.source, "[campaign]", doc["campaign"]), target, fault, arms
        )

    def campaign(
        self, t: _Table, target: TargetSpec, fault: FaultSpec, arms: tuple[ArmSpec, ...]
    ) -> CampaignSpec:
        name = t.string("name")
        if not name.strip():
            raise t.error("name", "must not be empty")
        seed = t.integer("seed", 0, 2**63 - 1, 0)
        early_stop = t.boolean("early_stop", False)
        runs = t.integer("runs", 1, MAX_RUNS, None) if t.has("runs") else None
        confidence = t.fraction("confidence", None) if t.has("confidence") else None
        margin = t.fraction("margin", None) if t.has("margin") else None
        p = t.fraction("p", None) if t.has("p") else None
        if runs is None:
            for key, value in (("confidence", confidence), ("margin", margin)):
                if value is None:
                    raise t.error(
                        key, "is required without runs (give runs, or confidence and margin)"
                    )
        else:
            if margin is not None and not early_stop:
                raise t.error(
                    "margin",
                    "given with runs: give runs, or confidence and margin, not both "
                    "(with runs, margin is only the early_stop target)",
                )
            if confidence is not None and margin is None:
                raise t.error("confidence", "given with runs: give runs, or confidence and margin")
            if p is not None:
                raise t.error("p", "only applies to a sample size from confidence and margin")
        if early_stop and margin is None:
            raise t.error("early_stop", "needs margin (the interval half-width to stop at)")
        batch = t.integer("batch", 1, 100_000, DEFAULT_BATCH[target.level])
        t.finish()
        return CampaignSpec(
            name=name,
            target=target,
            fault=fault,
            arms=arms,
            seed=seed,
            runs=runs,
            confidence=0.95 if confidence is None else confidence,
            margin=margin,
            p=0.5 if p is None else p,
            early_stop=early_stop,
            batch=batch,
            source=self.source,
        )

    def target(self, t: _Table) -> TargetSpec:
        level = t.choice("level", LEVELS, "model")
        model = self.path(t, "model", t.string("model", DEFAULT_MODEL), (".flm",), must_exist=True)
        inputs_text = t.string("inputs", "")
        inputs = (
            self.path(t, "inputs", inputs_text, INPUT_SUFFIXES, must_exist=False)
            if inputs_text
            else None
        )
        if level == "model":
            for key in ("board", "boards", "mission", "key_file", "partition"):
                t.refuse(key, 'at level = "model" (board level only)')
            t.finish()
            return TargetSpec(level=level, model=model, inputs=inputs)
        board = t.string("board", "spawn")
        partition = t.string("partition", "classifier")
        if not partition:
            raise t.error("partition", "must not be empty")
        if board == "spawn":
            t.refuse("key_file", 'with board = "spawn" (the spawned boards make their own keys)')
            boards = t.integer("boards", 1, 64, 1)
            mission_text = t.string("mission", "")
            mission = (
                self.path(t, "mission", mission_text, (".toml",), must_exist=True)
                if mission_text
                else None
            )
            t.finish()
            return TargetSpec(level, model, inputs, board, boards, mission, None, partition)
        from flight.link.transport import parse_url

        try:
            parse_url(board)
        except (ConfigError, ValueError) as exc:  # urlsplit's own ValueError ("udp://[")
            raise t.error("board", f'must be "spawn" or a link URL: {exc}') from None
        for key in ("boards", "mission"):
            t.refuse(key, 'with a board URL (only with board = "spawn")')
        key_text = t.string("key_file", "")
        key_file = self.path(t, "key_file", key_text, (), must_exist=True) if key_text else None
        t.finish()
        return TargetSpec(level, model, inputs, board, 1, None, key_file, partition)

    def fault(self, t: _Table, level: str) -> FaultSpec:
        model = t.choice("model", FAULT_MODELS, "seu")
        if model in ("hang", "crash"):
            if level != "board":
                raise t.error("model", f'{model!r} needs level = "board" (a partition process)')
            sites = t.strings("sites", (PARTITION_SITE,), (PARTITION_SITE,))
        else:
            sites = t.strings("sites", tuple(FLIP_SITES), DEFAULT_SITES)
            for site in sites:
                if level not in FLIP_SITES[site]:
                    raise t.error("sites", f'{site!r} needs level = "board"')
            if model == "stuck-at" and "process-memory" in sites:
                raise t.error("sites", "'process-memory' takes bit flips (seu, mbu), not stuck-at")
        if not sites:
            raise t.error("sites", "must name at least one site")
        if model == "mbu":
            mbu_bits = t.integer("mbu_bits", 2, 8, 2)
        else:
            t.refuse("mbu_bits", f"to fault model {model!r} (mbu only)")
            mbu_bits = 2
        if model == "crash":
            signals = t.strings("signals", SIGNALS, ("SIGKILL",))
            if not signals:
                raise t.error("signals", "must name at least one signal")
        else:
            t.refuse("signals", f"to fault model {model!r} (crash only)")
            signals = ("SIGKILL",)
        if "process-memory" in sites:
            process = t.choice("process", PROCESSES, "partition")
        else:
            t.refuse("process", "without 'process-memory' in sites")
            process = "partition"
        t.finish()
        return FaultSpec(model, sites, mbu_bits, signals, process)

    def arms(self, data: Any, level: str) -> tuple[ArmSpec, ...]:
        if data is None:
            raise self.error("at least one [[arm]] is required")
        if not isinstance(data, list) or not data:
            raise self.error("arm must be an array of tables ([[arm]]), at least one")
        arms: list[ArmSpec] = []
        for i, entry in enumerate(data):
            t = _Table(self.source, f"[[arm]] #{i + 1}", entry)
            name = t.string("name")
            if not _ARM_NAME.match(name):
                raise t.error(
                    "name", f"{name!r}: use 1-64 letters, digits, '_', '.', '-' (first alnum)"
                )
            if any(a.name == name for a in arms):
                raise t.error("name", f"{name!r} is used by another arm; arm names are unique")
            redundancy = t.choice("redundancy", MODES, "none")
            if level == "model" and redundancy == "tmr":
                vote_points = t.strings("vote_points", None, ())
            else:
                t.refuse("vote_points", 'outside a model-level arm with redundancy = "tmr"')
                vote_points = ()
            t.finish()
            arms.append(ArmSpec(name, redundancy, vote_points))
        return tuple(arms)

    def path(
        self, t: _Table, key: str, text: str, suffixes: tuple[str, ...], must_exist: bool
    ) -> Path:
        """Resolve against the spec's directory, the working directory, then the installed
        flight/data (where a bare or ``flight/data/...`` name of a bundled file is found from
        anywhere); the first existing file wins."""
        if not text:
            raise t.error(key, "must not be empty")
        if "\x00" in text:
            raise t.error(key, f"{text!r}: a path cannot contain a NUL character")
        try:
            given = Path(text).expanduser()
        except RuntimeError as exc:  # "~user" of no user, or no home directory
            raise t.error(key, f"{text!r}: {exc}") from None
        if suffixes and given.suffix not in suffixes:
            raise t.error(key, f"{text!r}: expected a {' or '.join(suffixes)} file")
        candidates = self.candidates(given)
        for candidate in candidates:
            try:
                if candidate.is_file():
                    return candidate.resolve()
            except OSError as exc:  # a name too long, a loop of links
                raise t.error(key, f"{text!r}: {exc.strerror or exc}") from None
        if must_exist:
            tried = ", ".join(str(c) for c in candidates)
            raise t.error(key, f"no such file {text!r} (tried {tried})")
        return candidates[0]

    def candidates(self, given: Path) -> list[Path]:
        if given.is_absolute():
            return [given]
        out = [self.base_dir / given] if self.base_dir is not None else []
        data = _data_dir()
        out += [Path.cwd() / given, data / given, data / given.name]
        unique: list[Path] = []
        for c in out:
            if c not in unique:
                unique.append(c)
        return unique


def _data_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("flight").joinpath("data")))


#: Field names per dataclass (for tests and the docs reference).
SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    cls.__name__: tuple(f.name for f in fields(cls))
    for cls in (CampaignSpec, TargetSpec, FaultSpec, ArmSpec)
}
