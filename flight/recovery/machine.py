"""The recovery state machine: what to do when a partition hangs, crashes or keeps losing votes.

This module only *decides*. :meth:`RecoveryFSM.handle` takes one input (a fault report or a
command) and the current time, updates the machine's state and returns the actions the
supervisor must carry out (kill, restart, degrade, disable, safe mode, processor reset). It does
no I/O, reads no clock and starts no process, so every decision is unit-tested on its own with
an invented clock, and the state can be saved in the critical data store and restored
(:meth:`RecoveryFSM.to_dict`, :meth:`RecoveryFSM.from_dict`; the format is in
:mod:`flight.recovery.snapshot`).

The model is the Erlang/OTP supervisor's, adapted to a flight computer:

* restart strategies over the ordered partition list (``one_for_one``, ``rest_for_one``,
  ``one_for_all``) and restart types (``permanent``, ``transient``, ``temporary``);
* restart intensity: at most ``max_restarts`` restarts in ``period`` seconds, a sliding window;
* when a partition exceeds its intensity, the next step of its *escalation ladder* instead of a
  parent supervisor: degrade its redundancy (TMR -> DWC -> simplex), disable it, enter safe mode,
  and finally a processor reset, which the supervisor carries out by exiting with an
  :class:`ExitCode` so that the init system starts it again;
* supervisor-wide backstops: a restart intensity over all partitions (a common-mode fault) and a
  budget of safe-mode entries, each ending in a processor reset;
* ground commands (:class:`Enable`, :class:`ExitSafeMode`, :class:`SetRedundancy`,
  :class:`RestartCommanded`, :class:`DisableCommanded`) and model rollbacks
  (:class:`ModelFailed`) act at once and spend no restart budget; :meth:`RecoveryFSM.can` tells
  the link beforehand whether a command applies (a :class:`Refusal` if not).

Faults are data, bugs raise: a crash report for a partition that is already being restarted is
counted and otherwise ignored (it is the killed process's own exit), while an input naming an
unknown partition, an impossible replica or a clock going backwards raises
:class:`RecoveryError`. The policy it runs (:mod:`flight.recovery.policy`) is validated when
built. See docs/supervisor.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, get_args

from flight import errors, events
from flight.modes import MODES, REPLICAS
from flight.recovery import snapshot
from flight.recovery.messages import (
    Action,
    Command,
    Crashed,
    DegradeRedundancy,
    DisableCommanded,
    DisablePartition,
    Enable,
    EnterSafeMode,
    ExitCode,
    Exited,
    ExitSafeMode,
    HeartbeatMissed,
    Input,
    KillPartition,
    MemoryUpsets,
    ModelFailed,
    PartitionStarted,
    PartitionState,
    ProcessorReset,
    Reason,
    Refusal,
    RestartCommanded,
    RestartCompleted,
    RestartPartition,
    RestartReplica,
    RestartType,
    ReverifyWeights,
    RollBackModel,
    SetRedundancy,
    StartFailed,
    Step,
    Strategy,
    SystemState,
    Tick,
    VoteAlarm,
)
from flight.recovery.policy import SupervisorPolicy, _config
from flight.recovery.state import PartitionRecord, VoteTrack

__all__ = ["PartitionStatus", "RecoveryError", "RecoveryFSM"]


class RecoveryError(errors.FlightError, ValueError):
    """An input the state machine cannot apply: a bug in the caller, never a fault.

    Unknown partition names, replica indices the partition cannot have, a clock that goes
    backwards, or an input type the machine does not know.
    """


_RUNNING = frozenset({PartitionState.STARTING, PartitionState.NOMINAL, PartitionState.DEGRADED})
_COMMANDS = frozenset(get_args(Command))
_UP = frozenset({PartitionState.NOMINAL, PartitionState.DEGRADED})
_COMING_UP = frozenset({PartitionState.STARTING, PartitionState.RESTARTING})
# Per partition command: (the states it applies in, the states it is refused in as BUSY); every
# other state refuses it as NOT_ALLOWED. One table, read by RecoveryFSM.can and .handle alike.
_COMMAND_STATES: Mapping[type, tuple[frozenset[PartitionState], frozenset[PartitionState]]] = {
    Enable: (frozenset({PartitionState.DISABLED, PartitionState.STOPPED}), frozenset()),
    SetRedundancy: (_UP, _COMING_UP),
    RestartCommanded: (_UP, _COMING_UP),
    DisableCommanded: (_RUNNING | _COMING_UP | {PartitionState.SUSPENDED}, frozenset()),
}
_UPSET_BUCKETS = 64  # memory-upset reports are summed in buckets of vote_period / 64


@dataclass(frozen=True)
class PartitionStatus:
    """A read-only view of one partition (telemetry, tests)."""

    name: str
    state: PartitionState
    mode: str
    next_step: Step  #: the ladder step the next intensity excess takes
    restarts: Mapping[str, int]  #: by :class:`Reason`
    failures: Mapping[str, int]  #: by cause (hang, crash, exit, vote, start_failed, model_failed)
    escalations: int
    stale: int  #: reports ignored because the partition was not running, commands refused
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
            p.name: PartitionRecord(p, PartitionState.STARTING, p.redundancy, self._now)
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

    @property
    def stale_commands(self) -> int:
        """Commands that did not apply (:class:`ExitSafeMode` outside safe mode), for telemetry.
        Reports about a partition that was not running are counted per partition (``stale``)."""
        return self._stale

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

    def can(self, command: Command) -> Refusal | None:
        """Whether ``command`` applies now: ``None``, or why it would be refused.

        A pure query (it changes nothing and needs no time), for the link to ask before it
        executes a ground command and to report a refusal as a verification failure
        (``FailureCode[refusal.name]``). :meth:`handle` follows the same rules: a command
        refused as NOT_ALLOWED or BUSY is counted, logged and orders nothing, while one that
        would be refused as INVALID_ARGUMENT (an unknown partition, a mode the partition cannot
        run) raises :class:`RecoveryError` there: the caller should have asked.
        """
        if type(command) not in _COMMANDS:
            raise RecoveryError(f"not a recovery command: {command!r}")
        if hasattr(command, "name") and not (
            isinstance(command.name, str) and command.name in self._parts
        ):
            return Refusal.INVALID_ARGUMENT
        if isinstance(command, SetRedundancy) and not self._mode_allowed(command):
            return Refusal.INVALID_ARGUMENT
        return self._refusal(command)

    def _refusal(self, command: Command) -> Refusal | None:
        """The refusal that depends on the state (arguments already checked)."""
        if self._system is SystemState.RESET:
            return Refusal.NOT_ALLOWED
        if isinstance(command, ExitSafeMode):
            return None if self._system is SystemState.SAFE_MODE else Refusal.NOT_ALLOWED
        applies, busy = _COMMAND_STATES[type(command)]
        state = self._parts[command.name].state
        if state in applies:
            return None
        return Refusal.BUSY if state in busy else Refusal.NOT_ALLOWED

    def _mode_allowed(self, command: SetRedundancy) -> bool:
        return (
            isinstance(command.mode, str) and command.mode in self._parts[command.name].policy.modes
        )

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
        if hasattr(event, "name"):
            self._part(event.name)
        if isinstance(event, VoteAlarm):
            self._check_replica(event)
        if isinstance(event, SetRedundancy) and not self._mode_allowed(event):
            raise RecoveryError(
                f"partition {event.name!r} cannot run mode {event.mode!r} "
                f"(it can run {list(self._parts[event.name].policy.modes)})"
            )
        if isinstance(event, ModelFailed) and not isinstance(event.reason, str):
            raise RecoveryError(f"model failure reason must be a str, not {event.reason!r}")
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
        track = p.votes.setdefault(key, VoteTrack())
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
        if self._refused(p, event):
            return
        self._emit(events.PARTITION_ENABLED, p)
        p.window.clear()
        if self._system is SystemState.SAFE_MODE and not p.policy.in_safe_mode:
            self._suspend(p, alive=False)
        else:
            self._start(p, Reason.ENABLED, p.policy.name)

    def _on_exit_safe_mode(self, event: ExitSafeMode) -> None:
        if self._refusal(event) is not None:
            self._stale += 1
            return
        self._system = SystemState.NOMINAL
        self._emit(events.SAFE_MODE_EXITED, None)
        for p in self._order:
            if p.state is PartitionState.SUSPENDED:
                self._start(p, Reason.RESUMED, p.policy.name)

    def _on_set_redundancy(self, event: SetRedundancy) -> None:
        p = self._parts[event.name]
        if self._refused(p, event):
            return
        if event.mode != p.mode:
            p.votes.clear()  # replica numbering changes with the mode
            p.mode = event.mode
        # Ladder position and restart window are kept: the next failure escalates as it would
        # have, and a partition past its 'degrade' step does not get it back by command.
        self._start(p, Reason.COMMANDED, p.policy.name)

    def _on_restart_commanded(self, event: RestartCommanded) -> None:
        p = self._parts[event.name]
        if not self._refused(p, event):
            self._start(p, Reason.COMMANDED, p.policy.name)  # no window, no supervisor budget

    def _on_disable_commanded(self, event: DisableCommanded) -> None:
        p = self._parts[event.name]
        if self._refused(p, event):
            return
        name = p.policy.name
        if p.state is not PartitionState.SUSPENDED:  # a suspended partition has no process
            self._out.append(KillPartition(name, Reason.COMMANDED, name))
        self._out.append(DisablePartition(name, Reason.COMMANDED))
        p.state = PartitionState.DISABLED
        self._emit(events.PARTITION_DISABLED, p, cause=Reason.COMMANDED.value)

    def _on_model_failed(self, event: ModelFailed) -> None:
        p = self._parts[event.name]
        name = p.policy.name
        cause = Reason.MODEL_FAILED.value
        p.failures[cause] = p.failures.get(cause, 0) + 1
        self._out.append(RollBackModel(name, event.reason))
        self._emit(events.MODEL_ROLLED_BACK, p, reason=event.reason)
        # The previous model served before the upload: restarting with it is the remedy, not a
        # fault of the partition, so no window or supervisor budget is used. A partition that
        # is not running takes the previous model when it is started again.
        if p.state in _RUNNING or p.state is PartitionState.RESTARTING:
            self._start(p, Reason.MODEL_FAILED, name)

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
        SetRedundancy: _on_set_redundancy,
        RestartCommanded: _on_restart_commanded,
        DisableCommanded: _on_disable_commanded,
        ModelFailed: _on_model_failed,
    }

    # --- decisions ----------------------------------------------------------------------------
    def _failure(self, p: PartitionRecord, cause: Reason, alive: bool) -> None:
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

    def _escalate(self, p: PartitionRecord, cause: Reason, alive: bool) -> None:
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
        self, p: PartitionRecord, reason: Reason, alive: bool, cause: Reason | None = None
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

    def _start(self, p: PartitionRecord, reason: Reason, trigger: str) -> None:
        self._out.append(RestartPartition(p.policy.name, reason, p.mode, trigger))
        p.state = PartitionState.RESTARTING
        p.since = self._now
        p.restarts[reason.value] = p.restarts.get(reason.value, 0) + 1
        self._emit(events.PARTITION_RESTARTED, p, reason=reason.value, trigger=trigger)

    def _stop(self, p: PartitionRecord, reason: Reason, alive: bool) -> None:
        if alive:
            self._out.append(KillPartition(p.policy.name, reason, p.policy.name))
        p.state = PartitionState.STOPPED
        self._emit(events.PARTITION_STOPPED, p, reason=reason.value)

    def _suspend(self, p: PartitionRecord, alive: bool) -> None:
        if alive:
            self._out.append(KillPartition(p.policy.name, Reason.SAFE_MODE, p.policy.name))
        p.state = PartitionState.SUSPENDED
        self._emit(events.PARTITION_SUSPENDED, p)

    def _enter_safe_mode(self, trigger: PartitionRecord, reason: str) -> None:
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
    def _ignore(self, p: PartitionRecord, event: Input, **fields: Any) -> None:
        p.stale += 1
        self._emit(
            events.RECOVERY_STALE_EVENT,
            p,
            input=type(event).__name__,
            state=p.state.value,
            **fields,
        )

    def _refused(self, p: PartitionRecord, command: Command) -> bool:
        """True if ``command`` does not apply to ``p`` now; then counted and logged as stale
        (with ``refused``: the :class:`Refusal` value that :meth:`can` reports)."""
        refusal = self._refusal(command)
        if refusal is None:
            return False
        self._ignore(p, command, refused=refusal.value)
        return True

    def _emit(self, definition: events.EventDef, p: PartitionRecord | None, **fields: Any) -> None:
        if self.log is not None:
            if p is not None:
                fields["partition"] = p.policy.name
            self.log.emit(definition, at=self._now, **fields)

    def _part(self, name: str) -> PartitionRecord:
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

    # --- snapshot (flight.recovery.snapshot) ------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The machine's state as plain JSON-able data (for the critical data store)."""
        return snapshot.to_dict(self)

    @classmethod
    def from_dict(
        cls,
        policy: SupervisorPolicy,
        data: Mapping[str, Any],
        *,
        now: float | None = None,
        log: events.EventLog | None = None,
    ) -> RecoveryFSM:
        """Restore a machine saved by :meth:`to_dict` (see :func:`.snapshot.from_dict`)."""
        return snapshot.from_dict(cls, policy, data, now=now, log=log)
