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
from flight.recovery.policy import (
    PartitionPolicy,
    SupervisorPolicy,
    policy_from_mission,
    worst_case_restarts,
)

__all__ = [
    "MODES",
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
    "PartitionPolicy",
    "PartitionStarted",
    "PartitionState",
    "PartitionStatus",
    "ProcessorReset",
    "Reason",
    "RecoveryError",
    "RecoveryFSM",
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
    "SupervisorPolicy",
    "SystemState",
    "Tick",
    "VoteAlarm",
    "policy_from_mission",
    "worst_case_restarts",
]
