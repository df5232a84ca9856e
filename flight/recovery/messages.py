"""The recovery machine's vocabulary: its inputs, its actions and the enums both use.

Inputs are what the supervisor reports (a hang, a crash, a vote alarm, a command); actions are
what the machine orders in reply. All are frozen dataclasses without behaviour, so the
supervisor, the tests and the critical data store share one definition of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

__all__ = [
    "Action",
    "Command",
    "Crashed",
    "DegradeRedundancy",
    "DisableCommanded",
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
    "ModelFailed",
    "PartitionStarted",
    "PartitionState",
    "ProcessorReset",
    "Reason",
    "Refusal",
    "RestartCommanded",
    "RestartCompleted",
    "RestartPartition",
    "RestartReplica",
    "RestartType",
    "ReverifyWeights",
    "RollBackModel",
    "SetRedundancy",
    "StartFailed",
    "Step",
    "Strategy",
    "SystemState",
    "Tick",
    "VoteAlarm",
]


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


class PartitionState(StrEnum):
    STARTING = "starting"  #: process spawned, not yet reported up
    NOMINAL = "nominal"  #: up, with its configured redundancy
    DEGRADED = "degraded"  #: up, with less redundancy than configured
    RESTARTING = "restarting"  #: restart ordered; the old process may still be dying
    DISABLED = "disabled"  #: stopped by escalation or command; not restarted until enabled
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
    #: restarted or disabled by a ground command (:class:`RestartCommanded`,
    #: :class:`SetRedundancy`, :class:`DisableCommanded`)
    COMMANDED = "commanded"
    #: restarted with the previous model after an uploaded one failed (:class:`ModelFailed`)
    MODEL_FAILED = "model_failed"


class Refusal(StrEnum):
    """Why the machine refuses a command (:meth:`RecoveryFSM.can`).

    The members share their names with the link's ``FailureCode`` members, so the link reports
    a refusal as ``FailureCode[refusal.name]`` without this package importing the link.
    """

    INVALID_ARGUMENT = "invalid_argument"  #: unknown partition, or a mode it cannot run
    NOT_ALLOWED = "not_allowed"  #: not in this state (disabled, stopped, suspended, reset, ...)
    BUSY = "busy"  #: a (re)start of the partition is in progress; try again later


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


@dataclass(frozen=True)
class SetRedundancy:
    """Command: run the partition with redundancy ``mode`` from now on (restarts it).

    ``mode`` may be the partition's configured mode or any lower one (no more replicas than
    it has weight copies): :attr:`PartitionPolicy.modes`. The mode is kept across supervisor
    restarts, and the ladder degrades from it as from any mode.
    """

    name: str
    mode: str


@dataclass(frozen=True)
class RestartCommanded:
    """Command: restart a running partition now (not counted against any restart intensity)."""

    name: str


@dataclass(frozen=True)
class DisableCommanded:
    """Command: stop the partition until an :class:`Enable` command."""

    name: str


@dataclass(frozen=True)
class ModelFailed:
    """An uploaded model failed to load, or its trial frames failed: go back to the previous
    model. A report from the model upload, not a ground command (never refused)."""

    name: str
    reason: str = ""


#: The ground commands the machine takes; :meth:`RecoveryFSM.can` says whether one applies.
Command = Enable | ExitSafeMode | SetRedundancy | RestartCommanded | DisableCommanded

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
    | SetRedundancy
    | RestartCommanded
    | DisableCommanded
    | ModelFailed
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
class RollBackModel:
    """Put the partition's previous model back in place of the uploaded one that failed. The
    restart that loads it follows as a separate :class:`RestartPartition` (unless the
    partition is disabled, stopped or suspended: it then starts with the previous model when
    it is started again)."""

    name: str
    reason: str


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
    | RollBackModel
    | EnterSafeMode
    | ProcessorReset
)
