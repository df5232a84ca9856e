"""The recovery machine's mutable state, one record per partition.

Kept apart from the machine so that :mod:`flight.recovery.snapshot` can save and rebuild the
records without importing the machine (the machine imports the snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flight.recovery.messages import PartitionState
from flight.recovery.policy import PartitionPolicy

__all__ = ["PartitionRecord", "VoteTrack"]


@dataclass
class VoteTrack:
    """The vote alarms of one replica (or of "any" replica) and the remedy reached."""

    times: list[float] = field(default_factory=list)
    stage: int = 0  # 0: watching, 1: weights reverified, 2: replica restarted
    last: float | None = None


@dataclass
class PartitionRecord:
    """Everything the machine knows about one partition; saved whole by the snapshot."""

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
    votes: dict[str, VoteTrack] = field(default_factory=dict)  # "0".."2", "any"
