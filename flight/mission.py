"""Mission configuration: one TOML file, validated completely at load.

A board must not discover in orbit that a deadline is longer than its period or that a key was
misspelt, so :func:`load_mission` checks everything it can before anything runs and raises
:class:`flight.errors.ConfigError` naming the file, the section or partition, and the field.
Unknown keys and tables are errors (a typo is never silently ignored). The result is a tree of
frozen dataclasses (:class:`Mission`). A default mission ships in the package
(:func:`default_mission`, ``flight/data/default_mission.toml``).

Schema (every key is optional unless marked *required*; defaults in brackets)
----------------------------------------------------------------------------

``[mission]``
    ``name`` (*required*, str, 1-64 printable characters).
    ``seed`` [0] (int, 0 .. 2**64-1): seed of the simulated radiation and of any other
    randomness, so a run can be repeated.
    ``test_mode`` [false] (bool): enables fault injection and the HIL agent. Never true in flight.

``[schedule]`` (*required*)
    ``minor_frame_ms`` (*required*, int, 1 .. 10000 ms): length of a minor frame.
    ``minor_frames_per_major`` (*required*, int, 1 .. 1000): the major frame is
    ``minor_frame_ms * minor_frames_per_major``, at most 60 s.

``[[partition]]`` (at least one; order is the default start order)
    ``name`` (*required*, str, ``[a-z0-9_-]{1,32}``, unique).
    ``job`` (*required*, ``"model"``): what the partition runs; a ``model`` job runs inference.
    ``model`` (*required* for ``job = "model"``, str): a ``.flm`` file. A relative path is looked
    up next to the mission file first, then in the package data directory (``flight/data``).
    ``dataset`` [none] (str): a ``.npz`` input set (``x``, ``y``) for demo missions, looked up
    the same way.
    ``max_model_bytes`` [the loader's defaults: 256 MiB file, 128 MiB per tensor] (int, bytes,
    1 .. 4 GiB): the model file, any one tensor and all tensors may be this big
    (:meth:`flight.model.format.Limits.for_model_bytes`); for large models.
    ``period_frames`` [1] (int): runs every N minor frames; N divides ``minor_frames_per_major``.
    ``deadline_ms`` [the period] (number, ms, > 0): from release to result; at most the period
    (``period_frames * minor_frame_ms``).
    ``redundancy`` ["tmr"]: ``"none"`` | ``"dwc"`` (duplicate with compare) | ``"tmr"``.
    ``placement`` ["time"]: ``"time"`` (replicas run in turn in one process) | ``"space"``
    (one process per replica). Meaningless, and ignored, for ``redundancy = "none"``.
    ``weight_copies`` [replicas: 1 / 2 / 3] (int, replicas .. 3): protected copies of the weights;
    each replica needs its own copy, a spare copy lets the scrubber vote.
    ``vote_points`` [[]] (list of activation names): extra vote points with write-back after
    these layers (TMR only; the final output is always voted). The names are checked against
    the model when it is loaded.
    ``restart_type`` ["permanent"]: ``"permanent"`` (always restarted) | ``"transient"``
    (restarted after a crash or hang, not after a clean exit) | ``"temporary"`` (never).
    ``heartbeat_timeout_ms`` [3 periods] (number, ms): no heartbeat progress for this long is a
    hang; at least one period, and shorter than the watchdog timeout.
    ``max_restarts`` [3; 0 for temporary] (int, 0 .. 1000) and ``restart_period_s`` [60]
    (number, s, at least one period): restart intensity, at most ``max_restarts`` restarts in
    any ``restart_period_s`` window; one more climbs the escalation ladder.
    ``escalation`` [``["degrade", "disable", "safe_mode", "reset"]``; without ``"degrade"`` for
    ``redundancy = "none"``] (non-empty list, in that order of severity, no repeats, ending with
    ``"disable"`` or ``"reset"`` so that a partition that keeps failing always ends somewhere):
    what to do when the restart budget is exhausted, step by step. ``"degrade"`` needs
    redundancy to shed.
    ``in_safe_mode`` [true] (bool): keeps running in safe mode (otherwise stopped on entry and
    restarted on exit).
    ``start_deadline_s`` [10] (number, s, up to 3600): a (re)start that has not reported up
    within this time counts as a failed start.

``[recovery]``
    ``strategy`` ["one_for_one"]: ``"one_for_one"`` (restart the failed partition) |
    ``"rest_for_one"`` (it and every partition after it in ``order``) | ``"one_for_all"``.
    ``order`` [declaration order] (list of every partition name, once each): start order (the
    order ``rest_for_one`` follows).
    ``processor_reset_max`` [30] (int, 1 .. 10000) and ``processor_reset_period_s`` [60]
    (number, s, up to 30 days): the processor-reset budget, OTP's supervisor intensity: at most
    this many partition restarts, over all partitions, in any window of that length; one more
    and the supervisor asks for a processor reset (its exit code, for the init system).
    ``safe_mode_max`` [2] (int, 0 .. 1000) and ``safe_mode_period_s`` [3600] (number, s): at
    most this many safe-mode entries in the window; one more is a processor reset.
    ``vote_alarm_threshold`` [3] (int, >= 1) times one replica is outvoted within
    ``vote_alarm_period_s`` [10] (number, s, at least one major frame) raise a vote alarm (a
    replica that keeps losing has a persistent fault: re-verify its weights, then restart it).
    ``storm_upset_threshold`` [10] (int, >= 0): an upset storm is on while the scrubber has
    found at least this many upsets in the weights within ``vote_alarm_period_s``; a storm
    holds back the vote alarm's partition restart (and so any degradation it would lead to),
    because restarts cannot stop radiation and TMR masks what a degraded partition would
    deliver. 0 turns the guard off.

``[scrub]``
    ``block_size`` [4096] (int, bytes, multiple of 8, 64 .. 1 MiB): CRC block of the protected
    weights.
    ``bytes_per_frame`` [98304] (int, bytes, <= 1 GiB): scrub budget per minor frame, counting
    every copy; at least one block in every copy (``block_size * max weight_copies``), or the
    scrubber could never finish a block.

``[watchdog]``
    ``kind`` ["software"]: ``"none"`` | ``"software"`` | ``"hardware"`` (:mod:`flight.watchdog`).
    ``device`` ["/dev/watchdog"] (absolute path): used when ``kind = "hardware"``.
    ``timeout_s`` [2] (number, s, up to 3600): longer than the major frame; whole seconds for
    ``hardware`` (the Linux API takes an int).

``[cds]``
    ``directory`` [see below] (str): where the critical data store lives; relative to the
    mission file. Default, resolved at load: ``$FLIGHT_STATE_DIR`` when set, else
    ``/var/lib/flight`` when it exists writable or can be created, else the per-user
    persistent ``$XDG_STATE_HOME/flight`` (``~/.local/state/flight``); in test mode only, a
    per-user ``$TMPDIR/flight-state-<uid>`` (``/tmp`` without ``TMPDIR``) when neither is
    usable. A flight (non-test) mission keeps ``/var/lib/flight``
    anyway: a temporary directory would silently lose the boot and reset counts.
    :meth:`CdsConfig.ensure` creates the directory.

``[link]`` (the space link: docs/link.md)
    ``url`` [""] (str): the transport when ``flight run --link`` does not name one
    (``udp://HOST:PORT``, ``tcp://HOST:PORT``, ``serial:///dev/ttyX?baud=N``); empty: no link.
    ``key_file`` [""] (str): the telecommand keys (TOML, :mod:`flight.link.keys`), relative to
    the mission file; never the keys themselves. Without one every telecommand is refused
    (``NO_KEY``) and counted, and telemetry still flows.
    ``housekeeping_frames`` [20] (int, 1 .. 100000): a housekeeping packet every N minor frames.
    ``results`` [true] (bool): downlink every inference result (with its CRC-32C).
    ``event_severity`` ["info"]: the least severe event that goes down as an EVENT packet
    (``"debug"`` | ``"info"`` | ``"warning"`` | ``"error"`` | ``"critical"``); every event is
    counted in housekeeping whatever its severity.
    ``contact`` ["always"]: ``"always"`` | ``"command"`` (closed until an ``open_contact``
    command) | ``"windows"`` (the ``[[link.window]]`` tables: ``start``, an ISO-8601 UTC time,
    and ``duration_s``, 1 .. 86400).
    ``downlink_bytes_per_frame`` [65536] (int, 64 .. 16 MiB): what may leave per minor frame
    while the contact is open (the link's bandwidth).
    ``store_urgent_bytes`` [65536], ``store_housekeeping_bytes`` [65536], ``store_bulk_bytes``
    [1048576] (int, 1 KiB .. 256 MiB): the downlink store per priority class (verification
    reports and events; housekeeping; results and dumps). Full: its oldest packets go first.
    ``max_packets_per_frame`` [256] (int, 1 .. 100000): received items handled per frame; the
    rest wait in the socket (a flood cannot take a frame's time).
    ``upload_max_bytes`` [67108864] (int, 1 KiB .. 1 GiB): the largest file accepted over CFDP.

The restart table (``restart_type``, ``max_restarts``, ``restart_period_s``, ``escalation``,
``in_safe_mode``, ``start_deadline_s`` and the whole ``[recovery]`` section) is validated by
the recovery policy itself (:func:`flight.recovery.policy.policy_from_mission`, run at load, its
errors naming the keys above), so that a mission that loads always yields its policy. Its
cross-checks ("conflicting limits"): the worst case of a partition's ladder (the restarts a
crash loop can order before the ladder stops it, e.g. 11 for ``tmr``, ``max_restarts = 3`` and
the default ladder) may not exceed ``processor_reset_max`` (the processor would be reset before
the ladder could act); a ladder with ``"safe_mode"`` needs ``safe_mode_max >= 1``. This parser
checks the types and ranges of the keys, and the rules that involve the rest of the file:
``heartbeat_timeout_ms`` must be shorter than the watchdog timeout, or the watchdog
(withholding strokes for the hung partition) resets the board before the health monitor can
restart the partition; a ``temporary`` partition has no ``max_restarts``; and the rules above
relating periods, deadlines and budgets.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight import errors
from flight.link.contact import ALWAYS, ContactConfig, parse_contact
from flight.link.transport import parse_url
from flight.modes import MODES, REPLICAS
from flight.recovery.messages import Step
from flight.recovery.policy import policy_from_mission

__all__ = [
    "DEFAULT_MISSION",
    "CdsConfig",
    "LinkConfig",
    "Mission",
    "PartitionConfig",
    "RecoveryConfig",
    "Schedule",
    "ScrubConfig",
    "WatchdogConfig",
    "default_mission",
    "load_mission",
    "parse_mission",
]

DEFAULT_MISSION = "default_mission.toml"

JOBS = ("model",)
PLACEMENTS = ("time", "space")
WATCHDOG_KINDS = ("none", "software", "hardware")

# Same limits as flight.memory (checked by the tests); not imported, so validating a mission
# does not pull in numpy and the CRC extension.
MAX_COPIES = 3
MAX_MODEL_BYTES = 1 << 32  #: a partition's max_model_bytes: the .flm body is at most 4 GiB
MIN_BLOCK_SIZE = 64

_NAME = re.compile(r"[a-z0-9_-]{1,32}")
#: The persistent state directory of a flown board (the default CDS location).
SYSTEM_STATE_DIR = Path("/var/lib/flight")
_REQUIRED: Any = object()


# --- the configuration tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The frame schedule: a major frame of ``minor_frames_per_major`` minor frames."""

    minor_frame_ms: int
    minor_frames_per_major: int

    @property
    def major_frame_ms(self) -> int:
        return self.minor_frame_ms * self.minor_frames_per_major

    @property
    def minor_frame_s(self) -> float:
        return self.minor_frame_ms / 1000.0

    @property
    def major_frame_s(self) -> float:
        return self.major_frame_ms / 1000.0


@dataclass(frozen=True)
class PartitionConfig:
    """One partition: its job, timing, redundancy and restart policy."""

    name: str
    job: str
    model_path: Path | None
    dataset_path: Path | None
    period_frames: int
    period_ms: int
    deadline_ms: float
    redundancy: str
    placement: str
    weight_copies: int
    vote_points: tuple[str, ...]
    restart_type: str
    heartbeat_timeout_ms: float
    max_restarts: int
    restart_period_s: float
    escalation: tuple[str, ...]
    in_safe_mode: bool = True
    start_deadline_s: float = 10.0
    max_model_bytes: int | None = None  #: None: the loader's default Limits

    @property
    def replicas(self) -> int:
        return REPLICAS[self.redundancy]


@dataclass(frozen=True)
class RecoveryConfig:
    """System-level recovery: restart strategy and order, the processor-reset budget (restarts
    over all partitions per window), the safe-mode budget, vote alarms."""

    strategy: str
    order: tuple[str, ...]
    processor_reset_max: int
    processor_reset_period_s: float
    safe_mode_max: int
    safe_mode_period_s: float
    vote_alarm_threshold: int
    vote_alarm_period_s: float
    storm_upset_threshold: int


@dataclass(frozen=True)
class ScrubConfig:
    """Scrubbing budget per minor frame (all copies counted) and CRC block size."""

    bytes_per_frame: int
    block_size: int


@dataclass(frozen=True)
class WatchdogConfig:
    """Which watchdog the supervisor strokes (:func:`flight.watchdog.make_watchdog`)."""

    kind: str
    device: str
    timeout_s: float


@dataclass(frozen=True)
class CdsConfig:
    """Where the critical data store lives; ``explicit`` when the mission file named it."""

    directory: Path
    explicit: bool = False

    def ensure(self) -> Path:
        """Create the directory (mode 0700) if needed and return it."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.ConfigError(
                f"CDS directory {self.directory}: cannot create it ({exc.strerror or exc}); "
                "set [cds] directory or FLIGHT_STATE_DIR to a writable, persistent directory"
            ) from exc
        return self.directory


@dataclass(frozen=True)
class LinkConfig:
    """The space link (:mod:`flight.link`); ``url`` empty: no link unless ``--link`` names one."""

    url: str = ""
    key_file: Path | None = None
    housekeeping_frames: int = 20
    results: bool = True
    event_severity: str = "info"
    contact: ContactConfig = ALWAYS
    downlink_bytes_per_frame: int = 65536
    store_urgent_bytes: int = 65536
    store_housekeeping_bytes: int = 65536
    store_bulk_bytes: int = 1 << 20
    max_packets_per_frame: int = 256
    upload_max_bytes: int = 64 << 20


@dataclass(frozen=True)
class Mission:
    """A validated mission. ``source`` names where it came from (file path or ``<string>``)."""

    name: str
    seed: int
    test_mode: bool
    schedule: Schedule
    partitions: tuple[PartitionConfig, ...]
    recovery: RecoveryConfig
    scrub: ScrubConfig
    watchdog: WatchdogConfig
    cds: CdsConfig
    link: LinkConfig = LinkConfig()
    source: str = "<string>"

    def partition(self, name: str) -> PartitionConfig:
        for p in self.partitions:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def partition_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.partitions)

    def with_test_mode(self, env: Mapping[str, str] | None = None) -> Mission:
        """This mission with ``test_mode = true`` (fault injection, simulated radiation); a
        default CDS directory is resolved again under the test-mode rule."""
        cds = self.cds if self.cds.explicit else _default_cds(True, env)
        return dataclasses.replace(self, test_mode=True, cds=cds)


# --- loading ------------------------------------------------------------------------------------


def load_mission(source: str | os.PathLike[str] | bytes) -> Mission:
    """Load and validate a mission: a path (``str`` without a newline, or ``PathLike``), or TOML
    text (``str`` containing a newline, or ``bytes``)."""
    if isinstance(source, bytes):
        try:
            return parse_mission(source.decode("utf-8"), source="<bytes>")
        except UnicodeDecodeError as exc:
            raise errors.ConfigError(f"<bytes>: mission is not UTF-8: {exc}") from exc
    if isinstance(source, str) and "\n" in source:
        return parse_mission(source)
    path = Path(source)
    name = os.fspath(source)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"{name}: cannot read mission: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise errors.ConfigError(f"{name}: mission is not UTF-8: {exc}") from exc
    return parse_mission(text, source=name, base_dir=path.resolve().parent)


def default_mission() -> Mission:
    """The mission shipped in the package (``flight/data/default_mission.toml``)."""
    path = _data_dir() / DEFAULT_MISSION
    return load_mission(path)


def parse_mission(
    text: str,
    *,
    source: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Mission:
    """Validate TOML text. Relative paths resolve against ``base_dir`` (then the package data);
    ``env`` (default ``os.environ``) is read for the default CDS directory."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"{source}: invalid TOML: {exc}") from exc
    return _Parser(source, None if base_dir is None else Path(base_dir), env).mission(doc)


def _data_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("flight").joinpath("data")))


def _default_cds(test_mode: bool, env: Mapping[str, str] | None) -> CdsConfig:
    env = os.environ if env is None else env
    if env.get("FLIGHT_STATE_DIR"):
        return CdsConfig(Path(env["FLIGHT_STATE_DIR"]))
    system = SYSTEM_STATE_DIR
    if system.exists():
        usable = system.is_dir() and os.access(system, os.W_OK | os.X_OK)
    else:
        usable = system.parent.is_dir() and os.access(system.parent, os.W_OK | os.X_OK)
    if usable:
        return CdsConfig(system)
    # a user without /var/lib/flight (a laptop, a CI runner): a persistent per-user directory
    home = env.get("XDG_STATE_HOME") or (
        str(Path(env["HOME"]) / ".local" / "state") if env.get("HOME") else None
    )
    if home and _creatable(Path(home) / "flight"):
        return CdsConfig(Path(home) / "flight")
    if not test_mode:
        return CdsConfig(system)  # ensure() then says clearly what to configure
    # not tempfile.gettempdir(): it raises when no temporary directory is writable
    return CdsConfig(Path(env.get("TMPDIR") or "/tmp") / f"flight-state-{os.getuid()}")


def _creatable(path: Path) -> bool:
    """The directory exists writable, or its nearest existing parent is writable."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class _Table:
    """One TOML table being read: typed getters that name the place in every error, and a
    final check that no key was left unread (typos)."""

    def __init__(self, source: str, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise errors.ConfigError(f"{source}: {where} must be a table")
        self.source, self.where, self.data = source, where, data
        self.read: set[str] = set()

    def error(self, message: str) -> errors.ConfigError:
        return errors.ConfigError(f"{self.source}: {self.where}: {message}")

    def _get(self, key: str, default: Any) -> Any:
        self.read.add(key)
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise self.error(f"{key} is required")
        return default

    def integer(self, key: str, lo: int, hi: int, default: Any = _REQUIRED) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"{key} must be an integer, not {value!r}")
        if not lo <= value <= hi:
            raise self.error(f"{key} {value} is out of range {lo} .. {hi}")
        return value

    def number(self, key: str, hi: float, default: Any = _REQUIRED, unit: str = "") -> float:
        """A finite number > 0 and <= hi, as float."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"{key} must be a number, not {value!r}")
        if not (isinstance(value, int) or math.isfinite(value)):
            raise self.error(f"{key} must be finite, not {value}")
        if not 0 < value <= hi:
            raise self.error(f"{key} {_fmt(value)} is out of range (0, {_fmt(hi)}]{unit}")
        return float(value)

    def boolean(self, key: str, default: Any = _REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{key} must be true or false, not {value!r}")
        return value

    def string(self, key: str, default: Any = _REQUIRED) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.error(f"{key} must be a string, not {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _REQUIRED) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise self.error(f"{key} must be one of {', '.join(choices)}; not {value!r}")
        return value

    def strings(self, key: str, default: Any = _REQUIRED) -> tuple[str, ...]:
        value = self._get(key, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.error(f"{key} must be a list of strings, not {value!r}")
        repeated = sorted({v for v in value if list(value).count(v) > 1})
        if repeated:
            raise self.error(f"{key} lists {', '.join(map(repr, repeated))} more than once")
        return tuple(value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(self.read), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(self.read))
            raise self.error(f"unknown key {key!r}{hint}; known keys: {known}")


class _Parser:
    SECTIONS = ("mission", "schedule", "partition", "recovery", "scrub", "watchdog", "cds", "link")

    def __init__(self, source: str, base_dir: Path | None, env: Mapping[str, str] | None):
        self.source, self.base_dir, self.env = source, base_dir, env

    def error(self, message: str) -> errors.ConfigError:
        return errors.ConfigError(f"{self.source}: {message}")

    def table(self, doc: dict[str, Any], name: str, required: bool = False) -> _Table:
        if required and name not in doc:
            raise self.error(f"[{name}] is required")
        return _Table(self.source, f"[{name}]", doc.get(name, {}))

    def mission(self, doc: dict[str, Any]) -> Mission:
        top = _Table(self.source, "top level", doc)
        top.read.update(self.SECTIONS)
        top.finish()

        m = self.table(doc, "mission", required=True)
        name = m.string("name")
        if not 1 <= len(name) <= 64 or not name.isprintable():
            raise m.error(f"name must be 1-64 printable characters, not {name!r}")
        seed = m.integer("seed", 0, 2**64 - 1, 0)
        test_mode = m.boolean("test_mode", False)
        m.finish()

        schedule = self.schedule(self.table(doc, "schedule", required=True))

        raw_partitions = doc.get("partition")
        if raw_partitions is None or raw_partitions == []:
            raise self.error("at least one [[partition]] is required")
        if not isinstance(raw_partitions, list):
            raise self.error(
                "partitions are an array of tables: write [[partition]], not [partition]"
            )

        watchdog = self.watchdog(self.table(doc, "watchdog"), schedule)
        partitions = tuple(
            self.partition(i, raw, schedule, watchdog) for i, raw in enumerate(raw_partitions)
        )
        names = [p.name for p in partitions]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise self.error(f"partition {n!r} is defined twice")

        recovery = self.recovery(self.table(doc, "recovery"), schedule, partitions)
        scrub = self.scrub(self.table(doc, "scrub"), partitions)
        cds = self.cds(self.table(doc, "cds"), test_mode)
        link = self.link(self.table(doc, "link"))
        result = Mission(
            name=name,
            seed=seed,
            test_mode=test_mode,
            schedule=schedule,
            partitions=partitions,
            recovery=recovery,
            scrub=scrub,
            watchdog=watchdog,
            cds=cds,
            link=link,
            source=self.source,
        )
        try:  # the restart table's one validator (flight.recovery.policy), at load
            policy_from_mission(result)
        except errors.ConfigError as exc:
            raise self.error(str(exc)) from None
        return result

    def schedule(self, t: _Table) -> Schedule:
        minor = t.integer("minor_frame_ms", 1, 10_000)
        count = t.integer("minor_frames_per_major", 1, 1000)
        t.finish()
        if minor * count > 60_000:
            raise t.error(
                f"the major frame ({minor} ms x {count} = {minor * count} ms) exceeds 60 s"
            )
        return Schedule(minor, count)

    def watchdog(self, t: _Table, schedule: Schedule) -> WatchdogConfig:
        kind = t.choice("kind", WATCHDOG_KINDS, "software")
        device = t.string("device", "/dev/watchdog")
        if not os.path.isabs(device):
            raise t.error(f"device must be an absolute path, not {device!r}")
        timeout = t.number("timeout_s", 3600, 2.0, " s")
        t.finish()
        if timeout * 1000 <= schedule.major_frame_ms:
            raise t.error(
                f"timeout_s {_fmt(timeout)} is not longer than the major frame "
                f"({schedule.major_frame_ms} ms): the watchdog would fire between strokes"
            )
        if kind == "hardware" and not timeout.is_integer():
            raise t.error(
                f"timeout_s {_fmt(timeout)} must be whole seconds for a hardware watchdog "
                "(the Linux watchdog API takes an int)"
            )
        return WatchdogConfig(kind, device, timeout)

    def partition(
        self, index: int, raw: Any, schedule: Schedule, watchdog: WatchdogConfig
    ) -> PartitionConfig:
        t = _Table(self.source, f"[[partition]] #{index + 1}", raw)
        name = t.string("name")
        if not _NAME.fullmatch(name):
            raise t.error(f"name {name!r} must match [a-z0-9_-]{{1,32}}")
        t.where = f"partition {name!r}"

        job = t.choice("job", JOBS)
        model_path = dataset_path = None
        if job == "model":
            model_path = self.data_file(t, "model", t.string("model"), ".flm")
            if "dataset" in t.data:
                dataset_path = self.data_file(t, "dataset", t.string("dataset"), ".npz")
        max_model_bytes = None
        if "max_model_bytes" in t.data:
            max_model_bytes = t.integer("max_model_bytes", 1, MAX_MODEL_BYTES)

        per_major = schedule.minor_frames_per_major
        period_frames = t.integer("period_frames", 1, per_major, 1)
        if per_major % period_frames:
            raise t.error(
                f"period_frames {period_frames} does not divide minor_frames_per_major "
                f"{per_major}: the schedule would not repeat every major frame"
            )
        period_ms = period_frames * schedule.minor_frame_ms
        deadline = t.number("deadline_ms", 3_600_000, period_ms, " ms")
        if deadline > period_ms:
            raise t.error(f"deadline_ms {_fmt(deadline)} exceeds its period ({period_ms} ms)")

        redundancy = t.choice("redundancy", MODES, "tmr")
        placement = t.choice("placement", PLACEMENTS, "time")
        replicas = REPLICAS[redundancy]
        copies = t.integer("weight_copies", 1, MAX_COPIES, replicas)
        if copies < replicas:
            raise t.error(
                f"weight_copies {copies} is fewer than the {replicas} replicas of "
                f"{redundancy}: each replica needs its own copy"
            )
        vote_points = t.strings("vote_points", ())
        if vote_points and redundancy != "tmr":
            raise t.error(f'vote_points need redundancy = "tmr" (it is {redundancy!r})')
        if any(not v for v in vote_points):
            raise t.error("vote_points may not contain an empty name")

        restart_type = t.string("restart_type", "permanent")
        heartbeat = t.number("heartbeat_timeout_ms", 3_600_000, 3.0 * period_ms, " ms")
        if heartbeat < period_ms:
            raise t.error(
                f"heartbeat_timeout_ms {_fmt(heartbeat)} is shorter than its period "
                f"({period_ms} ms): the partition would always look hung"
            )
        if watchdog.kind != "none" and heartbeat >= watchdog.timeout_s * 1000:
            raise t.error(
                f"heartbeat_timeout_ms {_fmt(heartbeat)} is not shorter than the watchdog "
                f"timeout ({_fmt(watchdog.timeout_s)} s): the watchdog would reset the board "
                "before the health monitor notices the hang"
            )
        max_restarts = t.integer("max_restarts", 0, 1000, 0 if restart_type == "temporary" else 3)
        if restart_type == "temporary" and max_restarts:
            raise t.error(
                f'max_restarts {max_restarts} conflicts with restart_type "temporary" '
                "(never restarted)"
            )
        restart_period = t.number("restart_period_s", 30 * 86400, 60.0, " s")
        if restart_period * 1000 < period_ms:
            raise t.error(
                f"restart_period_s {_fmt(restart_period)} is shorter than its period "
                f"({period_ms} ms)"
            )
        default_ladder = tuple(s.value for s in Step if s is not Step.DEGRADE or replicas > 1)
        ladder = t.strings("escalation", default_ladder)
        in_safe_mode = t.boolean("in_safe_mode", True)
        start_deadline = t.number("start_deadline_s", 3600, 10.0, " s")
        t.finish()
        return PartitionConfig(
            name=name,
            job=job,
            model_path=model_path,
            dataset_path=dataset_path,
            period_frames=period_frames,
            period_ms=period_ms,
            deadline_ms=deadline,
            redundancy=redundancy,
            placement=placement,
            weight_copies=copies,
            vote_points=vote_points,
            restart_type=restart_type,
            heartbeat_timeout_ms=heartbeat,
            max_restarts=max_restarts,
            restart_period_s=restart_period,
            escalation=ladder,
            in_safe_mode=in_safe_mode,
            max_model_bytes=max_model_bytes,
            start_deadline_s=start_deadline,
        )

    def data_file(self, t: _Table, key: str, value: str, suffix: str) -> Path:
        if not value:
            raise t.error(f"{key} must name a file")
        if not value.endswith(suffix):
            hint = " (convert ONNX with `flight model convert`)" if suffix == ".flm" else ""
            raise t.error(f"{key} {value!r} must be a {suffix} file{hint}")
        path = Path(value)
        if path.is_absolute():
            candidates = [path]
        else:
            candidates = [] if self.base_dir is None else [self.base_dir / path]
            candidates.append(_data_dir() / path)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        looked = ", ".join(str(c) for c in candidates)
        raise t.error(f"{key} {value!r} not found (looked at {looked})")

    def recovery(
        self, t: _Table, schedule: Schedule, partitions: tuple[PartitionConfig, ...]
    ) -> RecoveryConfig:
        strategy = t.string("strategy", "one_for_one")
        order = t.strings("order", tuple(p.name for p in partitions))
        reset_max = t.integer("processor_reset_max", 1, 10_000, 30)
        reset_period = t.number("processor_reset_period_s", 30 * 86400, 60.0, " s")
        safe_max = t.integer("safe_mode_max", 0, 1000, 2)
        safe_period = t.number("safe_mode_period_s", 30 * 86400, 3600.0, " s")
        alarm_threshold = t.integer("vote_alarm_threshold", 1, 10**9, 3)
        alarm_period = t.number("vote_alarm_period_s", 30 * 86400, 10.0, " s")
        storm_threshold = t.integer("storm_upset_threshold", 0, 10**9, 10)
        t.finish()
        if alarm_period * 1000 < schedule.major_frame_ms:
            raise t.error(
                f"vote_alarm_period_s {_fmt(alarm_period)} is shorter than the major frame "
                f"({schedule.major_frame_ms} ms)"
            )
        return RecoveryConfig(
            strategy=strategy,
            order=order,
            processor_reset_max=reset_max,
            processor_reset_period_s=reset_period,
            safe_mode_max=safe_max,
            safe_mode_period_s=safe_period,
            vote_alarm_threshold=alarm_threshold,
            vote_alarm_period_s=alarm_period,
            storm_upset_threshold=storm_threshold,
        )

    def scrub(self, t: _Table, partitions: tuple[PartitionConfig, ...]) -> ScrubConfig:
        block = t.integer("block_size", MIN_BLOCK_SIZE, 1 << 20, 4096)
        if block % 8:
            raise t.error(f"block_size {block} must be a multiple of 8")
        budget = t.integer("bytes_per_frame", 1, 1 << 30, 96 * 1024)
        t.finish()
        copies = max(p.weight_copies for p in partitions)
        if budget < block * copies:
            raise t.error(
                f"bytes_per_frame {budget} is less than one block in every copy "
                f"({block} B x {copies} copies = {block * copies} B): the scrubber could never "
                "check a block"
            )
        return ScrubConfig(bytes_per_frame=budget, block_size=block)

    def link(self, t: _Table) -> LinkConfig:
        url = t.string("url", "")
        if url:
            try:
                parse_url(url)
            except errors.ConfigError as exc:
                raise t.error(str(exc)) from None
        key_name = t.string("key_file", "")
        key_file = None
        if key_name:
            key_file = Path(key_name).expanduser()
            if not key_file.is_absolute() and self.base_dir is not None:
                key_file = self.base_dir / key_file
        mib = 1 << 20
        config = LinkConfig(
            url=url,
            key_file=key_file,
            housekeeping_frames=t.integer("housekeeping_frames", 1, 100_000, 20),
            results=t.boolean("results", True),
            event_severity=t.choice(
                "event_severity", ("debug", "info", "warning", "error", "critical"), "info"
            ),
            contact=self.contact(t),
            downlink_bytes_per_frame=t.integer("downlink_bytes_per_frame", 64, 16 * mib, 65536),
            store_urgent_bytes=t.integer("store_urgent_bytes", 1024, 256 * mib, 65536),
            store_housekeeping_bytes=t.integer("store_housekeeping_bytes", 1024, 256 * mib, 65536),
            store_bulk_bytes=t.integer("store_bulk_bytes", 1024, 256 * mib, mib),
            max_packets_per_frame=t.integer("max_packets_per_frame", 1, 100_000, 256),
            upload_max_bytes=t.integer("upload_max_bytes", 1024, 1024 * mib, 64 * mib),
        )
        t.finish()
        return config

    def contact(self, t: _Table) -> ContactConfig:
        mode = t.choice("contact", ("always", "command", "windows"), "always")
        windows = t.data.get("window")
        t.read.add("window")
        if mode != "windows":
            if windows is not None:
                raise t.error(f'[[link.window]] given, but contact = "{mode}"; say "windows"')
            return parse_contact(mode, f"{self.source}: {t.where}")
        if windows is None:
            raise t.error('contact = "windows" needs at least one [[link.window]]')
        return parse_contact(windows, f"{self.source}: {t.where}")

    def cds(self, t: _Table, test_mode: bool) -> CdsConfig:
        if "directory" not in t.data:
            t.finish()
            return _default_cds(test_mode, self.env)
        directory = t.string("directory")
        t.finish()
        if not directory:
            raise t.error("directory may not be empty")
        path = Path(directory).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return CdsConfig(path, explicit=True)
