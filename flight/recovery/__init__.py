"""Recovery: what the supervisor does when a partition hangs, crashes or keeps losing votes.

One concern per module, all pure (no I/O, no clock: every input carries ``now``):

* :mod:`.messages`: the vocabulary, i.e. inputs, actions and the enums they use;
* :mod:`.policy`: the restart table (:class:`PartitionPolicy`, :class:`SupervisorPolicy`), its
  one validator, and :func:`policy_from_mission`, which the mission parser runs at load;
* :mod:`.state`: the machine's per-partition records;
* :mod:`.machine`: :class:`RecoveryFSM`, the decisions;
* :mod:`.snapshot`: the records as plain data for the critical data store.

This package re-exports the public names, so ``from flight.recovery import RecoveryFSM`` and
``recovery.Tick`` work as before. See docs/supervisor.md.
"""

from __future__ import annotations

from flight.modes import MODES
from flight.recovery.machine import PartitionStatus, RecoveryError, RecoveryFSM
from flight.recovery.messages import (
    Action,
    Crashed,
    DegradeRedundancy,
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
    PartitionStarted,
    PartitionState,
    ProcessorReset,
    Reason,
    RestartCompleted,
    RestartPartition,
    RestartReplica,
    RestartType,
    ReverifyWeights,
    StartFailed,
    Step,
    Strategy,
    SystemState,
    Tick,
    VoteAlarm,
)
from flight.recovery.policy import (
    PartitionPolicy,
    SupervisorPolicy,
    policy_from_mission,
    worst_case_restarts,
)

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
    "policy_from_mission",
    "worst_case_restarts",
]
