"""The recovery state machine: what to do when a partition hangs, crashes or keeps losing votes.

This module only *decides*. :meth:`RecoveryFSM.handle` takes one input (a fault report or a
command) and the current time, updates the machine's state and returns the actions the
supervisor must carry out (kill, restart, degrade, disable, safe mode, processor reset). It does
no I/O, reads no clock and starts no process, so every decision is unit-tested on its own with
an invented clock, and the state can be saved in the critical data store and restored
(:meth:`RecoveryFSM.to_dict`, :meth:`RecoveryFSM.from_dict`).

The model is the Erlang/OTP supervisor's, adapted to a flight computer:

* restart strategies over the ordered partition list (``one_for_one``, ``rest_for_one``,
  ``one_for_all``) and restart types (``permanent``, ``transient``, ``temporary``);
* restart intensity: at most ``max_restarts`` restarts in ``period`` seconds, a sliding window;
* when a partition exceeds its intensity, the next step of its *escalation ladder* instead of a
  parent supervisor: degrade its redundancy (TMR -> DWC -> simplex), disable it, enter safe mode,
  and finally a processor reset, which the supervisor carries out by exiting with an
  :class:`ExitCode` so that the init system starts it again;
* supervisor-wide backstops: a restart intensity over all partitions (a common-mode fault) and a
  budget of safe-mode entries, each ending in a processor reset.

Faults are data, bugs raise: a crash report for a partition that is already being restarted is
counted and otherwise ignored (it is the killed process's own exit), while an input naming an
unknown partition, an impossible replica or a clock going backwards raises
:class:`RecoveryError`. Policies are validated when built and raise
:class:`flight.errors.ConfigError`. See docs/supervisor.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, ClassVar

from flight import errors, events
from flight.modes import MODES, REPLICAS

__all__ = [
    "MODES",
    "Action",
    "Crashed",
    "DegradeRedundancy",
    "DisablePartition",
    "Enable",
    "EnterSafeMode",
    "ExitCode",
    "ExitSafeMode",
    "Exited",
    "HeartbeatMissed",
    "Input",
    "KillPartition",
    "MemoryUpsets",
    "PartitionPolicy",
    "PartitionStarted",
    "PartitionState",
    "PartitionStatus",
    "ProcessorReset",
    "Reason",
    "RecoveryError",
    "RecoveryFSM",
    "RestartCompleted",
    "RestartPartition",
    "RestartReplica",
    "RestartType",
    "ReverifyWeights",
    "StartFailed",
    "Step",
    "Strategy",
    "SupervisorPolicy",
    "SystemState",
    "Tick",
    "VoteAlarm",
    "worst_case_restarts",
]

SNAPSHOT_VERSION = 1


class RecoveryError(errors.FlightError, ValueError):
    """An input the state machine cannot apply: a bug in the caller, never a fault.

    Unknown partition names, replica indices the partition cannot have, a clock that goes
    backwards, or an input type the machine does not know.
    """


class ExitCode(IntEnum):
    """Process exit codes of the supervisor, documented for the init system (docs/supervisor.md).

    Every non-zero code except :attr:`CONFIG` asks for a restart; :attr:`CONFIG` must not be
    restarted in a loop (systemd: ``RestartPreventExitStatus=78``), since the same mission
    configuration would fail again.
    """

    OK = 0  #: normal, commanded shutdown
    ESCALATION = 70  #: a partition's escalation ladder reached "reset"
    RESET_BUDGET = 71  #: more safe-mode entries than allowed within the safe-mode period
    RESTART_INTENSITY = 72  #: more restarts over all partitions than allowed within the period
    CONFIG = 78  #: the mission configuration is invalid (sysexits EX_CONFIG); do not restart


class RestartType(StrEnum):
    """OTP restart types: when a partition that ended is started again."""

    PERMANENT = "permanent"  #: always restarted, even after a normal exit
    TRANSIENT = "transient"  #: restarted only after an abnormal end (crash, hang, vote)
    TEMPORARY = "temporary"  #: never restarted


class Strategy(StrEnum):
    """OTP restart strategies over the ordered partition list."""

    ONE_FOR_ONE = "one_for_one"  #: restart only the failed partition
    REST_FOR_ONE = "rest_for_one"  #: ... and every partition after it (they depend on it)
    ONE_FOR_ALL = "one_for_all"  #: restart every partition


class Step(StrEnum):
    """Escalation ladder steps, in their only allowed order."""

    DEGRADE = "degrade"  #: one redundancy level down (tmr -> dwc -> none) and restart
    DISABLE = "disable"  #: stop the partition; only a command (:class:`Enable`) restarts it
    SAFE_MODE = "safe_mode"  #: enter safe mode, then restart the partition
    RESET = "reset"  #: processor reset (:attr:`ExitCode.ESCALATION`)


_LADDER_ORDER = tuple(Step)


class PartitionState(StrEnum):
    STARTING = "starting"  #: process spawned, not yet reported up
    NOMINAL = "nominal"  #: up, with its configured redundancy
    DEGRADED = "degraded"  #: up, with less redundancy than configured
    RESTARTING = "restarting"  #: restart ordered; the old process may still be dying
    DISABLED = "disabled"  #: stopped by escalation; not restarted until commanded
    STOPPED = "stopped"  #: ended by design (temporary, or transient after a normal exit)
    SUSPENDED = "suspended"  #: stopped for safe mode; restarted when safe mode is left


class SystemState(StrEnum):
    NOMINAL = "nominal"
    SAFE_MODE = "safe_mode"
    RESET = "reset"  #: a processor reset was requested; the machine accepts nothing more


class Reason(StrEnum):
    """Why a partition is killed or restarted (also the keys of the restart counters)."""

    HANG = "hang"  #: missed its heartbeat deadline
    CRASH = "crash"  #: died (abnormal exit status or signal)
    EXIT = "exit"  #: exited normally (a permanent partition is restarted anyway)
    VOTE = "vote"  #: a replica kept losing votes after reverification and replica restart
    START_FAILED = "start_failed"  #: a restart did not come up (in time)
    SIBLING = "sibling"  #: restarted because another partition failed (strategy)
    ESCALATION = "escalation"  #: restarted as part of a ladder step (degrade, safe mode)
    SAFE_MODE = "safe_mode"  #: stopped on entering safe mode
    ENABLED = "enabled"  #: started again by an :class:`Enable` command
    RESUMED = "resumed"  #: started again when safe mode was left


_RUNNING = frozenset({PartitionState.STARTING, PartitionState.NOMINAL, PartitionState.DEGRADED})
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_FAILURE_CAUSES = (Reason.HANG, Reason.CRASH, Reason.EXIT, Reason.VOTE, Reason.START_FAILED)
_UPSET_BUCKETS = 64  # memory-upset reports are summed in buckets of vote_period / 64


# --- inputs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionStarted:
    """The partition's (new) process is up: it reported ready or sent its first heartbeat."""

    name: str


@dataclass(frozen=True)
class RestartCompleted:
    """The old process of a restarting partition is gone and the new one spawned.

    Optional: without it a restart goes from RESTARTING straight to running on
    :class:`PartitionStarted`. With it, a crash after this point is the *new* process failing
    (counted as a failure), not the old one's exit (ignored as stale).
    """

    name: str


@dataclass(frozen=True)
class HeartbeatMissed:
    """The health monitor saw no heartbeat progress by the deadline: a hang."""

    name: str


@dataclass(frozen=True)
class Crashed:
    """The partition's process died: abnormal exit status or a signal."""

    name: str
    exit_code: int | None = None
    signal: int | None = None


@dataclass(frozen=True)
class Exited:
    """The partition's process exited; ``normal=False`` is the same as :class:`Crashed`."""

    name: str
    normal: bool = True


@dataclass(frozen=True)
class StartFailed:
    """A starting or restarting partition did not come up (the supervisor gave up waiting)."""

    name: str
    detail: str = ""


@dataclass(frozen=True)
class VoteAlarm:
    """A replica lost a vote (``replica``), or the culprit is unknown (``replica=None``: no
    majority in TMR, a DWC mismatch)."""

    name: str
    replica: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class MemoryUpsets:
    """The scrubber found ``count`` upsets in protected memory: evidence of radiation, which
    tells an upset storm (every replica outvoted now and then, and restarts cannot help) from a
    failing replica (the same one outvoted, with quiet memory)."""

    count: int


@dataclass(frozen=True)
class Tick:
    """Time passed: checks start deadlines (a restart that never comes up is a failure)."""


@dataclass(frozen=True)
class Enable:
    """Command: start a disabled or stopped partition again (its ladder position is kept)."""

    name: str


@dataclass(frozen=True)
class ExitSafeMode:
    """Command: leave safe mode and start the partitions suspended for it."""


Input = (
    PartitionStarted
    | RestartCompleted
    | HeartbeatMissed
    | Crashed
    | Exited
    | StartFailed
    | VoteAlarm
    | MemoryUpsets
    | Tick
    | Enable
    | ExitSafeMode
)


# --- actions ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KillPartition:
    """Kill the partition's process (it is hung, or a sibling is restarted, or safe mode)."""

    name: str
    reason: Reason
    trigger: str = ""  #: the partition whose failure caused this (itself unless a sibling)


@dataclass(frozen=True)
class RestartPartition:
    """Start the partition (again) with redundancy ``mode``; kill any old process first."""

    name: str
    reason: Reason
    mode: str
    trigger: str = ""


@dataclass(frozen=True)
class DegradeRedundancy:
    """Record that the partition now runs with ``to_mode``. The restart that applies it follows
    as a separate :class:`RestartPartition` (with ``mode=to_mode``)."""

    name: str
    from_mode: str
    to_mode: str


@dataclass(frozen=True)
class RestartReplica:
    """Restart one replica (reload its arena; respawn it under space placement)."""

    name: str
    replica: int


@dataclass(frozen=True)
class ReverifyWeights:
    """Ask the scrubber to verify and repair a replica's weight copy now (``None``: all)."""

    name: str
    replica: int | None


@dataclass(frozen=True)
class DisablePartition:
    """Stop the partition for good (until an :class:`Enable` command)."""

    name: str
    reason: Reason


@dataclass(frozen=True)
class EnterSafeMode:
    """Enter safe mode (partitions not marked ``in_safe_mode`` are killed separately)."""

    reason: str


@dataclass(frozen=True)
class ProcessorReset:
    """Give up in software: save state and exit with ``exit_code``. Always the last action."""

    reason: str
    exit_code: ExitCode


Action = (
    KillPartition
    | RestartPartition
    | DegradeRedundancy
    | RestartReplica
    | ReverifyWeights
    | DisablePartition
    | EnterSafeMode
    | ProcessorReset
)


# --- policies ---------------------------------------------------------------------------------
def _config(condition: bool, message: str) -> None:
    if not condition:
        raise errors.ConfigError(message)


def _count(what: str, value: Any, minimum: int) -> None:
    _config(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{what} must be an integer >= {minimum}, not {value!r}",
    )


def _seconds(what: str, value: Any) -> None:
    _config(
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0,
        f"{what} must be a finite number of seconds > 0, not {value!r}",
    )


def _enum(kind: type[StrEnum], what: str, value: Any) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise errors.ConfigError(
            f"{what} must be one of {[k.value for k in kind]}, not {value!r}"
        ) from None


@dataclass(frozen=True)
class PartitionPolicy:
    """How one partition is restarted and escalated (one row of the restart table).

    ``max_restarts`` restarts are allowed within any ``period`` seconds; the next failure takes
    the next ``ladder`` step, and every step gives the partition a fresh window. Strings are
    accepted for the enum fields (mission files are TOML).
    """

    name: str
    restart: RestartType = RestartType.PERMANENT
    max_restarts: int = 3
    period: float = 60.0
    redundancy: str = "tmr"
    ladder: tuple[Step, ...] = (Step.DEGRADE, Step.DISABLE)
    #: seconds a (re)start may take before it counts as failed (checked on :class:`Tick`)
    start_deadline: float | None = 10.0
    #: keeps running in safe mode (otherwise killed on entry and restarted on exit)
    in_safe_mode: bool = True

    def __post_init__(self) -> None:
        _config(
            isinstance(self.name, str) and _NAME.fullmatch(self.name) is not None,
            f"partition name must be letters, digits, '_', '.', '-', not {self.name!r}",
        )
        where = f"partition {self.name!r}"
        object.__setattr__(self, "restart", _enum(RestartType, f"{where}: restart", self.restart))
        _count(f"{where}: max_restarts", self.max_restarts, 0)
        _seconds(f"{where}: period", self.period)
        _config(
            self.redundancy in MODES,
            f"{where}: redundancy must be one of {MODES}, not {self.redundancy!r}",
        )
        if self.start_deadline is not None:
            _seconds(f"{where}: start_deadline", self.start_deadline)
        _config(isinstance(self.in_safe_mode, bool), f"{where}: in_safe_mode must be a bool")
        _config(
            not isinstance(self.ladder, str | bytes) and isinstance(self.ladder, Iterable),
            f"{where}: ladder must be a list of steps, not {self.ladder!r}",
        )
        ladder = tuple(_enum(Step, f"{where}: ladder step", s) for s in self.ladder)
        object.__setattr__(self, "ladder", ladder)
        _config(len(ladder) > 0, f"{where}: the escalation ladder is empty")
        _config(len(set(ladder)) == len(ladder), f"{where}: a ladder step appears twice")
        order = [_LADDER_ORDER.index(s) for s in ladder]
        _config(
            order == sorted(order),
            f"{where}: ladder steps must go in the order {[s.value for s in _LADDER_ORDER]}, "
            f"each at most once; got {[s.value for s in ladder]}",
        )
        _config(
            ladder[-1] in (Step.DISABLE, Step.RESET),
            f"{where}: the ladder must end with 'disable' or 'reset', so that a partition that "
            f"keeps failing always has somewhere to go (got {[s.value for s in ladder]})",
        )
        _config(
            not (Step.DEGRADE in ladder and self.redundancy == "none"),
            f"{where}: 'degrade' on a simplex partition (redundancy 'none') can do nothing",
        )


def worst_case_restarts(policy: PartitionPolicy) -> int:
    """Restarts a crash-looping partition can order before its ladder stops it.

    A fast crash loop puts all of them inside any supervisor-wide window, so this is what the
    supervisor's own restart intensity must allow for the ladder to play out. Commanded
    restarts (:class:`Enable`) are not counted, so each stretch between two 'disable' steps is
    a separate run.
    """
    if policy.restart is RestartType.TEMPORARY:
        return 0
    r = policy.max_restarts
    worst = current = r
    levels = MODES.index("none") - MODES.index(policy.redundancy)
    for step in policy.ladder:
        if step is Step.DEGRADE:
            current += levels * (1 + r)
        elif step is Step.SAFE_MODE and policy.in_safe_mode:
            current += 1 + r
        elif step in (Step.SAFE_MODE, Step.DISABLE):  # stopped until a command restarts it
            worst = max(worst, current)
            current = r
        elif step is Step.RESET:
            break
    return max(worst, current)


@dataclass(frozen=True)
class SupervisorPolicy:
    """Supervisor-wide policy: the ordered partitions, the strategy and the backstops.

    * ``max_restarts`` in ``period``: restarts over all partitions (one per decision, however
      many siblings the strategy restarts); one more is a processor reset
      (:attr:`ExitCode.RESTART_INTENSITY`).
    * ``max_safe_mode_entries`` in ``safe_mode_period``: safe-mode ladder steps (including one
      taken while already in safe mode); one more is a processor reset
      (:attr:`ExitCode.RESET_BUDGET`).
    * ``vote_alarms`` alarms of one replica within ``vote_period``: reverify its weights; the
      same again: restart the replica; again: restart the partition (cause "vote").
    * ``storm_upsets``: an *upset storm* is on while the scrubber has found at least this many
      upsets in protected memory (:class:`MemoryUpsets`) within the last ``vote_period``. A
      storm holds the last vote remedy (the partition restart that leads to degradation): a
      restart cannot stop radiation, and a degraded partition would deliver what TMR masked.
      Reverification and replica restarts still happen. 0 turns the guard off.
    """

    partitions: tuple[PartitionPolicy, ...]
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 30
    period: float = 60.0
    max_safe_mode_entries: int = 2
    safe_mode_period: float = 3600.0
    vote_alarms: int = 3
    vote_period: float = 10.0
    storm_upsets: int = 0

    def __post_init__(self) -> None:
        _config(
            not isinstance(self.partitions, str | bytes | Mapping)
            and isinstance(self.partitions, Iterable),
            "partitions must be a list of PartitionPolicy",
        )
        partitions = tuple(self.partitions)
        object.__setattr__(self, "partitions", partitions)
        _config(len(partitions) > 0, "the supervisor needs at least one partition")
        for p in partitions:
            _config(isinstance(p, PartitionPolicy), f"not a PartitionPolicy: {p!r}")
        names = [p.name for p in partitions]
        _config(len(set(names)) == len(names), f"partition names must be unique: {names}")
        object.__setattr__(self, "strategy", _enum(Strategy, "strategy", self.strategy))
        _count("max_restarts", self.max_restarts, 1)
        _seconds("period", self.period)
        _count("max_safe_mode_entries", self.max_safe_mode_entries, 0)
        _seconds("safe_mode_period", self.safe_mode_period)
        _count("vote_alarms", self.vote_alarms, 1)
        _seconds("vote_period", self.vote_period)
        _count("storm_upsets", self.storm_upsets, 0)
        for p in partitions:
            worst = worst_case_restarts(p)
            _config(
                worst <= self.max_restarts,
                f"partition {p.name!r} may order up to {worst} restarts before its escalation "
                f"ladder stops it ({p.max_restarts} per window, ladder "
                f"{[s.value for s in p.ladder]}), but the supervisor allows only "
                f"{self.max_restarts} restarts in {self.period:g} s over all partitions: a "
                f"crash loop would reset the processor before the ladder plays out; raise "
                f"max_restarts or lower the partition's",
            )
            _config(
                Step.SAFE_MODE not in p.ladder or self.max_safe_mode_entries > 0,
                f"partition {p.name!r} escalates to safe mode but max_safe_mode_entries is 0: "
                f"every safe-mode step would be a processor reset",
            )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.partitions)


# --- the machine ------------------------------------------------------------------------------
@dataclass
class _VoteTrack:
    times: list[float] = field(default_factory=list)
    stage: int = 0  # 0: watching, 1: weights reverified, 2: replica restarted
    last: float | None = None


@dataclass
class _Partition:
    policy: PartitionPolicy
    state: PartitionState
    mode: str
    since: float  # when the current (re)start was ordered
    level: int = 0  # index of the next ladder step
    window: list[float] = field(default_factory=list)  # restart times at this ladder level
    restarts: dict[str, int] = field(default_factory=dict)  # by Reason
    failures: dict[str, int] = field(default_factory=dict)  # by cause
    escalations: int = 0
    stale: int = 0
    vote_alarms: int = 0
    reverifies: int = 0
    replica_restarts: int = 0
    storm_holds: int = 0  # partition restarts for votes held back during upset storms
    votes: dict[str, _VoteTrack] = field(default_factory=dict)  # "0".."2", "any"


@dataclass(frozen=True)
class PartitionStatus:
    """A read-only view of one partition (telemetry, tests)."""

    name: str
    state: PartitionState
    mode: str
    next_step: Step  #: the ladder step the next intensity excess takes
    restarts: Mapping[str, int]  #: by :class:`Reason`
    failures: Mapping[str, int]  #: by cause (hang, crash, exit, vote, start_failed)
    escalations: int
    stale: int  #: reports ignored because the partition was not running
    vote_alarms: int
    reverifies: int
    replica_restarts: int
    storm_holds: int  #: vote escalations held back during upset storms


class _Reset(Exception):
    """Internal: unwinds a decision that ended in a processor reset."""

    def __init__(self, action: ProcessorReset) -> None:
        super().__init__(action.reason)
        self.action = action


class RecoveryFSM:
    """Per-partition recovery state machines under one supervisor policy.

    Construct at boot (every partition STARTING at ``now``), or restore with
    :meth:`from_dict`. Feed every input with :meth:`handle`; carry out the returned actions in
    order. If a ``log`` is given, every transition is emitted there as an event (IDs 300+).
    """

    def __init__(
        self, policy: SupervisorPolicy, now: float = 0.0, log: events.EventLog | None = None
    ) -> None:
        _config(isinstance(policy, SupervisorPolicy), "policy must be a SupervisorPolicy")
        self._check_time(now)
        self.policy = policy
        self.log = log
        self._now = float(now)
        self._system = SystemState.NOMINAL
        self._restart_times: list[float] = []  # supervisor-wide restart decisions
        self._safe_mode_times: list[float] = []
        self._stale = 0  # commands that did not apply (e.g. ExitSafeMode when nominal)
        self._upsets: list[tuple[float, int]] = []  # (time, count) of recent memory upsets
        self._parts = {
            p.name: _Partition(p, PartitionState.STARTING, p.redundancy, self._now)
            for p in policy.partitions
        }
        self._order = list(self._parts.values())
        self._out: list[Action] = []

    # --- queries ------------------------------------------------------------------------------
    @property
    def system_state(self) -> SystemState:
        return self._system

    @property
    def now(self) -> float:
        """The latest time the machine has seen."""
        return self._now

    def state(self, name: str) -> PartitionState:
        return self._part(name).state

    def mode(self, name: str) -> str:
        """The redundancy the partition runs (or will restart) with."""
        return self._part(name).mode

    def status(self, name: str) -> PartitionStatus:
        p = self._part(name)
        ladder = p.policy.ladder
        return PartitionStatus(
            name=name,
            state=p.state,
            mode=p.mode,
            next_step=ladder[min(p.level, len(ladder) - 1)],
            restarts=dict(p.restarts),
            failures=dict(p.failures),
            escalations=p.escalations,
            stale=p.stale,
            vote_alarms=p.vote_alarms,
            reverifies=p.reverifies,
            replica_restarts=p.replica_restarts,
            storm_holds=p.storm_holds,
        )

    @property
    def storm(self) -> bool:
        """True while an upset storm is on (see :class:`SupervisorPolicy` ``storm_upsets``)."""
        return self.policy.storm_upsets > 0 and self._recent_upsets() >= self.policy.storm_upsets

    def _recent_upsets(self) -> int:
        """Memory upsets reported within the last ``vote_period`` (older reports dropped)."""
        cutoff = self._now - self.policy.vote_period
        self._upsets = [(t, n) for t, n in self._upsets if t > cutoff]
        return sum(n for _, n in self._upsets)

    def counters(self) -> dict[str, dict[str, Any]]:
        """Per-partition counters, JSON-able (housekeeping telemetry)."""
        result = {}
        for name, p in self._parts.items():
            result[name] = {
                "state": p.state.value,
                "mode": p.mode,
                "restarts": dict(p.restarts),
                "failures": dict(p.failures),
                "escalations": p.escalations,
                "stale": p.stale,
                "vote_alarms": p.vote_alarms,
                "reverifies": p.reverifies,
                "replica_restarts": p.replica_restarts,
                "storm_holds": p.storm_holds,
            }
        return result

    # --- the decision -------------------------------------------------------------------------
    def handle(self, event: Input, now: float) -> tuple[Action, ...]:
        """Apply one input at time ``now`` (monotonic seconds); return the actions, in order.

        After a :class:`ProcessorReset` (always alone and last) every input returns ``()``.
        """
        handler = self._HANDLERS.get(type(event))
        if handler is None:
            raise RecoveryError(f"not a recovery input: {event!r}")
        self._check_time(now)
        if now < self._now:
            raise RecoveryError(f"the clock went backwards: {now} after {self._now}")
        name = getattr(event, "name", None)
        if name is not None:
            self._part(name)
        if isinstance(event, VoteAlarm):
            self._check_replica(event)
        if isinstance(event, MemoryUpsets) and (
            not isinstance(event.count, int) or isinstance(event.count, bool) or event.count < 0
        ):
            raise RecoveryError(f"memory upset count must be an int >= 0, not {event.count!r}")
        self._now = float(now)
        if self._system is SystemState.RESET:
            return ()
        self._out = []
        try:
            handler(self, event)
        except _Reset as reset:
            self._out = []
            return (reset.action,)
        out, self._out = self._out, []
        return tuple(out)

    # --- input handlers -----------------------------------------------------------------------
    def _on_started(self, event: PartitionStarted) -> None:
        p = self._parts[event.name]
        if p.state not in (PartitionState.STARTING, PartitionState.RESTARTING):
            self._ignore(p, event)
            return
        degraded = p.mode != p.policy.redundancy
        p.state = PartitionState.DEGRADED if degraded else PartitionState.NOMINAL
        self._emit(events.PARTITION_STARTED, p, mode=p.mode)

    def _on_restart_completed(self, event: RestartCompleted) -> None:
        p = self._parts[event.name]
        if p.state is not PartitionState.RESTARTING:
            self._ignore(p, event)
            return
        p.state = PartitionState.STARTING

    def _on_missed(self, event: HeartbeatMissed) -> None:
        p = self._parts[event.name]
        if p.state not in _RUNNING:
            self._ignore(p, event)
            return
        self._emit(events.PARTITION_HUNG, p)
        self._failure(p, Reason.HANG, alive=True)

    def _on_crashed(self, event: Crashed) -> None:
        p = self._parts[event.name]
        if p.state not in _RUNNING:
            self._ignore(p, event)
            return
        self._emit(events.PARTITION_CRASHED, p, exit_code=event.exit_code, signal=event.signal)
        self._failure(p, Reason.CRASH, alive=False)

    def _on_exited(self, event: Exited) -> None:
        if not event.normal:
            self._on_crashed(Crashed(event.name))
            return
        p = self._parts[event.name]
        if p.state not in _RUNNING:
            self._ignore(p, event)
            return
        self._emit(events.PARTITION_EXITED, p)
        if p.policy.restart is RestartType.PERMANENT:
            self._failure(p, Reason.EXIT, alive=False)
        else:
            p.failures[Reason.EXIT.value] = p.failures.get(Reason.EXIT.value, 0) + 1
            self._stop(p, Reason.EXIT, alive=False)

    def _on_start_failed(self, event: StartFailed) -> None:
        p = self._parts[event.name]
        if p.state not in (PartitionState.STARTING, PartitionState.RESTARTING):
            self._ignore(p, event)
            return
        self._emit(events.PARTITION_START_FAILED, p, detail=event.detail)
        self._failure(p, Reason.START_FAILED, alive=True)

    def _on_tick(self, event: Tick) -> None:
        for p in self._order:
            deadline = p.policy.start_deadline
            if (
                deadline is not None
                and p.state in (PartitionState.STARTING, PartitionState.RESTARTING)
                and self._now - p.since >= deadline
            ):
                self._emit(events.PARTITION_START_FAILED, p, detail="start deadline")
                self._failure(p, Reason.START_FAILED, alive=True)

    def _on_vote(self, event: VoteAlarm) -> None:
        p = self._parts[event.name]
        replica = event.replica
        if p.state not in _RUNNING or p.mode == "none" or (replica or 0) >= REPLICAS[p.mode]:
            self._ignore(p, event)  # e.g. a late alarm from a replica dropped by degradation
            return
        p.vote_alarms += 1
        self._emit(events.REPLICA_VOTE_ALARM, p, replica=replica, reason=event.reason)
        key = "any" if replica is None else str(replica)
        track = p.votes.setdefault(key, _VoteTrack())
        period = self.policy.vote_period
        if track.last is not None and self._now - track.last > period:
            track.stage = 0  # quiet for a whole period: the last remedy worked
        track.last = self._now
        track.times = [t for t in track.times if t > self._now - period]
        track.times.append(self._now)
        if len(track.times) < self.policy.vote_alarms:
            return
        track.times = []
        if track.stage == 0:
            track.stage = 1
            p.reverifies += 1
            self._out.append(ReverifyWeights(p.policy.name, replica))
            self._emit(events.REPLICA_REVERIFY_REQUESTED, p, replica=replica)
        elif track.stage == 1 and replica is not None:
            track.stage = 2
            p.replica_restarts += 1
            self._out.append(RestartReplica(p.policy.name, replica))
            self._emit(events.REPLICA_RESTARTED, p, replica=replica)
        elif self.storm:
            # stage kept: held again at the next threshold while the storm lasts
            p.storm_holds += 1
            self._emit(
                events.VOTE_ESCALATION_HELD, p, replica=replica, upsets=self._recent_upsets()
            )
        else:
            del p.votes[key]
            self._failure(p, Reason.VOTE, alive=True)

    def _on_memory_upsets(self, event: MemoryUpsets) -> None:
        if not event.count:
            return
        # Reports are summed into buckets of 1/64 of the window, so the record stays small (it
        # is saved in the CDS every major frame) however long a storm lasts and however long the
        # window is; a bucket expires with its first report, up to 1/64 of the window early.
        self._recent_upsets()  # drops the expired buckets
        width = self.policy.vote_period / _UPSET_BUCKETS
        if self._upsets and self._now - self._upsets[-1][0] < width:
            start, count = self._upsets[-1]
            self._upsets[-1] = (start, count + event.count)
        else:
            self._upsets.append((self._now, event.count))

    def _on_enable(self, event: Enable) -> None:
        p = self._parts[event.name]
        if p.state not in (PartitionState.DISABLED, PartitionState.STOPPED):
            self._ignore(p, event)
            return
        self._emit(events.PARTITION_ENABLED, p)
        p.window.clear()
        if self._system is SystemState.SAFE_MODE and not p.policy.in_safe_mode:
            self._suspend(p, alive=False)
        else:
            self._start(p, Reason.ENABLED, p.policy.name)

    def _on_exit_safe_mode(self, event: ExitSafeMode) -> None:
        if self._system is not SystemState.SAFE_MODE:
            self._stale += 1
            return
        self._system = SystemState.NOMINAL
        self._emit(events.SAFE_MODE_EXITED, None)
        for p in self._order:
            if p.state is PartitionState.SUSPENDED:
                self._start(p, Reason.RESUMED, p.policy.name)

    _HANDLERS: ClassVar[Mapping[type, Any]] = {
        PartitionStarted: _on_started,
        RestartCompleted: _on_restart_completed,
        HeartbeatMissed: _on_missed,
        Crashed: _on_crashed,
        Exited: _on_exited,
        StartFailed: _on_start_failed,
        Tick: _on_tick,
        VoteAlarm: _on_vote,
        MemoryUpsets: _on_memory_upsets,
        Enable: _on_enable,
        ExitSafeMode: _on_exit_safe_mode,
    }

    # --- decisions ----------------------------------------------------------------------------
    def _failure(self, p: _Partition, cause: Reason, alive: bool) -> None:
        """A running partition failed: restart it within its intensity, else escalate."""
        p.failures[cause.value] = p.failures.get(cause.value, 0) + 1
        if p.policy.restart is RestartType.TEMPORARY:
            self._stop(p, cause, alive)
            return
        p.window = [t for t in p.window if t > self._now - p.policy.period]
        if len(p.window) < p.policy.max_restarts:
            p.window.append(self._now)
            self._restart(p, cause, alive)
            return
        self._emit(
            events.RESTART_INTENSITY_EXCEEDED,
            p,
            cause=cause.value,
            restarts=len(p.window),
            period=p.policy.period,
        )
        self._escalate(p, cause, alive)

    def _escalate(self, p: _Partition, cause: Reason, alive: bool) -> None:
        ladder = p.policy.ladder
        while True:
            step = ladder[min(p.level, len(ladder) - 1)]
            if step is Step.DEGRADE and p.mode == "none":
                p.level += 1  # nothing left to degrade: the next step (never the last one)
                continue
            break
        p.escalations += 1
        p.window.clear()
        name = p.policy.name
        if step is Step.DEGRADE:
            lower = MODES[MODES.index(p.mode) + 1]
            self._out.append(DegradeRedundancy(name, p.mode, lower))
            self._emit(events.REDUNDANCY_DEGRADED, p, from_mode=p.mode, to_mode=lower)
            p.mode = lower
            p.votes.clear()  # replica numbering changes with the mode
            self._restart(p, Reason.ESCALATION, alive, cause)
        elif step is Step.DISABLE:
            p.level = min(p.level + 1, len(ladder) - 1)
            if alive:
                self._out.append(KillPartition(name, cause, name))
            self._out.append(DisablePartition(name, cause))
            p.state = PartitionState.DISABLED
            self._emit(events.PARTITION_DISABLED, p, cause=cause.value)
        elif step is Step.SAFE_MODE:
            p.level += 1
            self._enter_safe_mode(p, f"{name}: repeated {cause.value}")
            if p.policy.in_safe_mode:
                self._restart(p, Reason.ESCALATION, alive, cause)
            else:
                self._suspend(p, alive)
        else:
            self._reset(ExitCode.ESCALATION, f"{name}: escalation ladder reached reset")

    def _restart(
        self, p: _Partition, reason: Reason, alive: bool, cause: Reason | None = None
    ) -> None:
        """Restart ``p`` and, by the strategy, its siblings (kill in reverse order, start in
        order, as OTP does). ``cause`` is the failure behind an escalation restart."""
        self._restart_times = [t for t in self._restart_times if t > self._now - self.policy.period]
        if len(self._restart_times) >= self.policy.max_restarts:
            self._reset(
                ExitCode.RESTART_INTENSITY,
                f"more than {self.policy.max_restarts} restarts in {self.policy.period:g} s",
            )
        self._restart_times.append(self._now)
        index = self._order.index(p)
        if self.policy.strategy is Strategy.ONE_FOR_ONE:
            group = [p]
        elif self.policy.strategy is Strategy.REST_FOR_ONE:
            group = self._order[index:]
        else:
            group = list(self._order)
        siblings = {id(q) for q in group if q is not p and q.state in _RUNNING}
        trigger = p.policy.name
        for q in reversed(group):
            if q is p and alive:
                self._out.append(KillPartition(trigger, cause or reason, trigger))
            elif id(q) in siblings:
                self._out.append(KillPartition(q.policy.name, Reason.SIBLING, trigger))
        for q in group:
            if q is p:
                self._start(p, reason, trigger)
            elif id(q) in siblings:
                if q.policy.restart is RestartType.TEMPORARY:
                    self._stop(q, Reason.SIBLING, alive=False)  # OTP: never restarted
                else:
                    self._start(q, Reason.SIBLING, trigger)

    def _start(self, p: _Partition, reason: Reason, trigger: str) -> None:
        self._out.append(RestartPartition(p.policy.name, reason, p.mode, trigger))
        p.state = PartitionState.RESTARTING
        p.since = self._now
        p.restarts[reason.value] = p.restarts.get(reason.value, 0) + 1
        self._emit(events.PARTITION_RESTARTED, p, reason=reason.value, trigger=trigger)

    def _stop(self, p: _Partition, reason: Reason, alive: bool) -> None:
        if alive:
            self._out.append(KillPartition(p.policy.name, reason, p.policy.name))
        p.state = PartitionState.STOPPED
        self._emit(events.PARTITION_STOPPED, p, reason=reason.value)

    def _suspend(self, p: _Partition, alive: bool) -> None:
        if alive:
            self._out.append(KillPartition(p.policy.name, Reason.SAFE_MODE, p.policy.name))
        p.state = PartitionState.SUSPENDED
        self._emit(events.PARTITION_SUSPENDED, p)

    def _enter_safe_mode(self, trigger: _Partition, reason: str) -> None:
        period = self.policy.safe_mode_period
        self._safe_mode_times = [t for t in self._safe_mode_times if t > self._now - period]
        if len(self._safe_mode_times) >= self.policy.max_safe_mode_entries:
            self._reset(
                ExitCode.RESET_BUDGET,
                f"more than {self.policy.max_safe_mode_entries} safe-mode entries in "
                f"{period:g} s ({reason})",
            )
        self._safe_mode_times.append(self._now)
        already = self._system is SystemState.SAFE_MODE
        self._emit(events.SAFE_MODE_ENTERED, trigger, reason=reason, already=already)
        if already:
            return
        self._system = SystemState.SAFE_MODE
        self._out.append(EnterSafeMode(reason))
        for q in reversed(self._order):
            active = q.state in _RUNNING or q.state is PartitionState.RESTARTING
            if q is not trigger and not q.policy.in_safe_mode and active:
                self._suspend(q, alive=True)

    def _reset(self, code: ExitCode, reason: str) -> None:
        self._system = SystemState.RESET
        if self.log is not None:
            self.log.emit(
                events.PROCESSOR_RESET_REQUESTED, reason=reason, exit_code=int(code), at=self._now
            )
        raise _Reset(ProcessorReset(reason, code))

    # --- helpers ------------------------------------------------------------------------------
    def _ignore(self, p: _Partition, event: Input) -> None:
        p.stale += 1
        self._emit(events.RECOVERY_STALE_EVENT, p, input=type(event).__name__, state=p.state.value)

    def _emit(self, definition: events.EventDef, p: _Partition | None, **fields: Any) -> None:
        if self.log is not None:
            if p is not None:
                fields["partition"] = p.policy.name
            self.log.emit(definition, at=self._now, **fields)

    def _part(self, name: str) -> _Partition:
        try:
            return self._parts[name]
        except (KeyError, TypeError):
            raise RecoveryError(
                f"unknown partition {name!r} (known: {list(self._parts)})"
            ) from None

    def _check_replica(self, event: VoteAlarm) -> None:
        replicas = REPLICAS[self._parts[event.name].policy.redundancy]
        if replicas == 1:
            raise RecoveryError(f"vote alarm for simplex partition {event.name!r}: no voter")
        r = event.replica
        if r is not None and (
            not isinstance(r, int) or isinstance(r, bool) or not 0 <= r < replicas
        ):
            raise RecoveryError(f"partition {event.name!r} has no replica {r!r}")

    @staticmethod
    def _check_time(now: Any) -> None:
        if not isinstance(now, int | float) or isinstance(now, bool) or not math.isfinite(now):
            raise RecoveryError(f"now must be a finite number of seconds, not {now!r}")

    # --- snapshot -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The machine's state as plain JSON-able data (for the critical data store)."""
        parts = {}
        for name, p in self._parts.items():
            parts[name] = {
                "state": p.state.value,
                "mode": p.mode,
                "since": p.since,
                "level": p.level,
                "window": list(p.window),
                "restarts": dict(p.restarts),
                "failures": dict(p.failures),
                "escalations": p.escalations,
                "stale": p.stale,
                "vote_alarms": p.vote_alarms,
                "reverifies": p.reverifies,
                "replica_restarts": p.replica_restarts,
                "storm_holds": p.storm_holds,
                "votes": {
                    k: {"times": list(v.times), "stage": v.stage, "last": v.last}
                    for k, v in p.votes.items()
                },
            }
        self._recent_upsets()  # drops expired upset reports before they are saved
        return {
            "version": SNAPSHOT_VERSION,
            "now": self._now,
            "system": self._system.value,
            "restart_times": list(self._restart_times),
            "safe_mode_times": list(self._safe_mode_times),
            "stale": self._stale,
            "upsets": [[t, n] for t, n in self._upsets],
            "partitions": parts,
        }

    @classmethod
    def from_dict(
        cls,
        policy: SupervisorPolicy,
        data: Mapping[str, Any],
        *,
        now: float | None = None,
        log: events.EventLog | None = None,
    ) -> RecoveryFSM:
        """Restore a machine saved by :meth:`to_dict`, after a supervisor restart.

        What survives: counters, redundancy modes, ladder positions, disabled and stopped
        partitions, restart windows and safe mode. The processes do not survive the
        supervisor, so every other partition is STARTING at ``now``, and a saved RESET (the
        reset has happened) becomes NOMINAL. If ``now`` is earlier than the saved time (the
        monotonic clock restarted with the board), saved times are shifted so the snapshot
        ends at ``now``: windows then count the old restarts as recent, erring on the safe side.
        A snapshot that does not match ``policy`` raises :class:`~flight.errors.ConfigError`.
        """
        try:
            return cls._restore(policy, data, now, log)
        except errors.ConfigError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise errors.ConfigError(f"malformed recovery snapshot: {exc!r}") from None

    @classmethod
    def _restore(
        cls,
        policy: SupervisorPolicy,
        data: Mapping[str, Any],
        now: float | None,
        log: events.EventLog | None,
    ) -> RecoveryFSM:
        _config(
            data["version"] == SNAPSHOT_VERSION,
            f"recovery snapshot version {data['version']!r}, expected {SNAPSHOT_VERSION}",
        )
        saved = float(data["now"])
        now = saved if now is None else now
        cls._check_time(now)
        shift = 0.0 if now >= saved else now - saved

        def times(values: Iterable[Any]) -> list[float]:
            return [float(t) + shift for t in values]

        parts = data["partitions"]
        _config(
            sorted(parts) == sorted(policy.names),
            f"recovery snapshot is for partitions {sorted(parts)}, "
            f"the policy has {sorted(policy.names)}",
        )
        fsm = cls(policy, now=now, log=log)
        system = SystemState(data["system"])
        fsm._system = SystemState.NOMINAL if system is SystemState.RESET else system
        fsm._restart_times = times(data["restart_times"])
        fsm._safe_mode_times = times(data["safe_mode_times"])
        fsm._stale = int(data["stale"])
        # absent from snapshots written before the storm guard existed
        fsm._upsets = [(float(t) + shift, int(n)) for t, n in data.get("upsets", [])]
        kept = (PartitionState.DISABLED, PartitionState.STOPPED, PartitionState.SUSPENDED)
        for name, saved_part in parts.items():
            p = fsm._parts[name]
            mode = saved_part["mode"]
            _config(
                mode in MODES and MODES.index(mode) >= MODES.index(p.policy.redundancy),
                f"recovery snapshot: partition {name!r} mode {mode!r} is not reachable from "
                f"its policy's {p.policy.redundancy!r}",
            )
            level = int(saved_part["level"])
            _config(
                0 <= level < len(p.policy.ladder),
                f"recovery snapshot: partition {name!r} ladder level {level} is out of range",
            )
            state = PartitionState(saved_part["state"])
            if state is PartitionState.SUSPENDED and fsm._system is not SystemState.SAFE_MODE:
                state = PartitionState.STARTING
            p.state = state if state in kept else PartitionState.STARTING
            p.mode = mode
            p.since = fsm._now
            p.level = level
            p.window = times(saved_part["window"])
            p.restarts = {str(Reason(k)): int(v) for k, v in saved_part["restarts"].items()}
            p.failures = {str(Reason(k)): int(v) for k, v in saved_part["failures"].items()}
            p.escalations = int(saved_part["escalations"])
            p.stale = int(saved_part["stale"])
            p.vote_alarms = int(saved_part["vote_alarms"])
            p.reverifies = int(saved_part["reverifies"])
            p.replica_restarts = int(saved_part["replica_restarts"])
            p.storm_holds = int(saved_part.get("storm_holds", 0))
            p.votes = {
                str(k): _VoteTrack(
                    times(v["times"]),
                    int(v["stage"]),
                    None if v["last"] is None else float(v["last"]) + shift,
                )
                for k, v in saved_part["votes"].items()
            }
        return fsm
