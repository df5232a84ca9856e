"""Telemetry: the counters a supervisor keeps, and the housekeeping built from them.

Every number ``flight run`` reports (its live progress line, its summary, the CDS counters that
survive a reset, and, next, the space link's housekeeping packets) comes from here: per-partition
:class:`PartitionStats`, the per-frame :class:`FrameReport`, and :func:`housekeeping`, which
gathers them with the scrubber's, the recovery machine's and the watchdog's counters into one
mapping. :class:`CounterCommitter` adds what grew since the last commit to the critical data
store, so counters accumulate across boots without double counting.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CounterCommitter",
    "FrameReport",
    "PartitionStats",
    "housekeeping",
    "partition_packet",
]


@dataclass
class PartitionStats:
    """Per-partition counters (housekeeping telemetry)."""

    frames: int = 0  # inferences attempted
    delivered: int = 0
    withheld: int = 0
    unavailable: int = 0  # frames skipped: partition restarting or disabled
    corrected: int = 0  # delivered outputs in which a vote corrected something
    correct: int = 0  # delivered outputs whose class matches the label
    labelled: int = 0
    sdc: int = 0
    dwc_reexecutions: int = 0
    replica_restarts: int = 0
    vote_point_corrections: int = 0  # words resynced at vote points
    vote_point_no_majority: int = 0  # words without a majority at vote points
    vote_point_unsafe: int = 0  # inferences withheld: a vote point wrote back a guess
    golden_reloads: int = 0  # unrepairable weight blocks rewritten from the golden image
    deadline_misses: int = 0
    lost: list[int] = field(default_factory=lambda: [0, 0, 0])
    restarts: Counter = field(default_factory=Counter)
    restart_seconds: list[float] = field(default_factory=list)  # kill -> first good output


@dataclass
class FrameReport:
    """What one minor frame did (the live progress line)."""

    frame: int
    delivered: int = 0
    withheld: int = 0
    corrected: int = 0
    sdc: int = 0
    faults: list[str] = field(default_factory=list)


def _kernel_path() -> str | None:
    """The vector ISA the inference kernels were built for (None: no kernel loaded here)."""
    isa = sys.modules.get("flight.kernels.isa")
    return isa.current()["name"] if isa is not None else None


def housekeeping(supervisor: Any, brief: bool = False) -> dict[str, Any]:
    """The supervisor's counters as one mapping (``flight run --json``, the CDS, the link).

    ``brief`` keeps the flat integer counters (cheap: the progress line and the CDS commit).
    """
    parts = supervisor.partitions
    stats = [p.stats for p in parts]
    restarts: Counter = Counter()
    for s in stats:
        restarts.update(s.restarts)
    labelled = sum(s.labelled for s in stats)
    scrub = supervisor.scrubber.counters
    test = supervisor.test_mode
    result: dict[str, Any] = {
        "frames": supervisor.frame,
        "inferences": sum(s.frames for s in stats),
        "accuracy": (sum(s.correct for s in stats) / labelled) if labelled else None,
        "delivered": sum(s.delivered for s in stats),
        "corrected": sum(s.corrected for s in stats),
        "withheld": sum(s.withheld for s in stats),
        "unavailable": sum(s.unavailable for s in stats),
        "scrub_repairs": scrub.repaired + scrub.table_repaired,
        "scrub_unrepairable": scrub.unrepairable,
        "golden_reloads": sum(s.golden_reloads for s in stats),
        "restarts": sum(restarts.values()),
        "sdc": sum(s.sdc for s in stats) if test is not None else None,
        "deadline_misses": sum(s.deadline_misses for s in stats),
    }
    if brief:
        return result
    fsm = supervisor.fsm
    result.update(
        {
            "restarts_by_cause": dict(restarts),
            "escalations": sum(c["escalations"] for c in fsm.counters().values()),
            "recovery": fsm.counters(),
            "system_state": str(fsm.system_state.value),
            "safe_mode": supervisor.safe_mode,
            "kernel_path": _kernel_path(),
            "exit_code": supervisor.exit_code or 0,
            "upsets": test.upsets() if test is not None else {},
            "oracle_upsets": test.oracle_upsets if test is not None else None,
            "scrub_passes": scrub.passes_completed,
            "watchdog": supervisor.watchdog.counters(),
            "boot_count": supervisor.boot,
            "last_reset_reason": supervisor.last_reset_reason,
            "recovery_state_restored": supervisor.restored,
            "cds_directory": supervisor.cds_directory,
            "weights_reverified": supervisor.reverified,
            "partitions": {p.name: _partition(p) for p in parts},
            "events": supervisor.log.counts(),
            "interrupted_start": supervisor.interrupted_start,
            "models_on_trial": sorted(supervisor.trials),
            "link": supervisor.link.summary() if supervisor.link is not None else None,
        }
    )
    return result


def _partition(p: Any) -> dict[str, Any]:
    s = p.stats
    return {
        "mode": p.mode,
        "placement": p.placement,
        "weight_copies": p.job.model.copies,
        "disabled": p.disabled,
        "delivered": s.delivered,
        "withheld": s.withheld,
        "lost_by_replica": list(s.lost),
        "replica_restarts": s.replica_restarts,
        "dwc_reexecutions": s.dwc_reexecutions,
        "vote_point_corrections": s.vote_point_corrections,
        "vote_point_no_majority": s.vote_point_no_majority,
        "vote_point_unsafe": s.vote_point_unsafe,
        "deadline_misses": s.deadline_misses,
        "restart_seconds": [round(t, 4) for t in s.restart_seconds],
    }


def partition_packet(p: Any, fsm: Any) -> dict[str, Any]:
    """One partition's PARTITION telemetry packet (flight.link.catalog), as values."""
    s = p.stats
    lost = [int(n) & 0xFFFFFFFF for n in s.lost]
    return {
        "partition": p.name,
        "mode": p.mode,
        "state": str(fsm.state(p.name).value),
        "disabled": bool(p.disabled),
        "delivered": s.delivered & 0xFFFFFFFF,
        "withheld": s.withheld & 0xFFFFFFFF,
        "restarts": sum(s.restarts.values()) & 0xFFFFFFFF,
        "replica_restarts": s.replica_restarts & 0xFFFFFFFF,
        "lost_0": lost[0],
        "lost_1": lost[1],
        "lost_2": lost[2],
        "model": p.spec.model_path.name if p.spec.model_path is not None else "",
        "model_crc": p.model_crc,
    }


class CounterCommitter:
    """Adds the growth of every integer counter since the last commit to the CDS counters."""

    def __init__(self) -> None:
        self._committed: dict[str, int] = {}

    def commit(self, cds: Any, counters: dict[str, Any]) -> None:
        for key, value in counters.items():
            if isinstance(value, int) and not isinstance(value, bool):
                delta = value - self._committed.get(key, 0)
                if delta > 0:
                    cds.add(key, delta)
                    self._committed[key] = value
