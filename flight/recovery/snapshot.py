"""The recovery machine's snapshot: its state as plain data for the critical data store.

:func:`to_dict` writes everything a supervisor restart must not forget (counters, redundancy
modes, ladder positions, restart windows, safe mode); :func:`from_dict` checks a saved snapshot
against the current policy and rebuilds the machine from it. A snapshot that is malformed or
does not fit the policy raises :class:`flight.errors.ConfigError`, never a bare ``KeyError``.
Reached through :meth:`RecoveryFSM.to_dict` and :meth:`RecoveryFSM.from_dict`; the machine
imports this module, so this one takes the machine (or its class) as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flight import errors, events
from flight.recovery.messages import PartitionState, Reason, SystemState
from flight.recovery.policy import SupervisorPolicy, _config
from flight.recovery.state import VoteTrack

__all__ = ["SNAPSHOT_VERSION", "from_dict", "to_dict"]

SNAPSHOT_VERSION = 1


def to_dict(fsm: Any) -> dict[str, Any]:
    """The machine's state as plain JSON-able data (for the critical data store)."""
    parts = {}
    for name, p in fsm._parts.items():
        parts[name] = {
            "state": p.state.value,
            "mode": p.mode,
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
    fsm._recent_upsets()  # drops expired upset reports before they are saved
    return {
        "version": SNAPSHOT_VERSION,
        "now": fsm._now,
        "system": fsm._system.value,
        "restart_times": list(fsm._restart_times),
        "safe_mode_times": list(fsm._safe_mode_times),
        "stale": fsm._stale,
        "upsets": [[t, n] for t, n in fsm._upsets],
        "partitions": parts,
    }


def from_dict(
    machine: type,
    policy: SupervisorPolicy,
    data: Mapping[str, Any],
    *,
    now: float | None = None,
    log: events.EventLog | None = None,
) -> Any:
    """Restore a ``machine`` (the :class:`RecoveryFSM` class) saved by :func:`to_dict`, after a
    supervisor restart.

    What survives: counters, redundancy modes, ladder positions, disabled and stopped
    partitions, restart windows and safe mode. The processes do not survive the
    supervisor, so every other partition is STARTING at ``now``, and a saved RESET (the
    reset has happened) becomes NOMINAL. If ``now`` is earlier than the saved time (the
    monotonic clock restarted with the board), saved times are shifted so the snapshot
    ends at ``now``: windows then count the old restarts as recent, erring on the safe side.
    A snapshot that does not match ``policy`` raises :class:`~flight.errors.ConfigError`.
    """
    try:
        return _restore(machine, policy, data, now, log)
    except errors.ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise errors.ConfigError(f"malformed recovery snapshot: {exc!r}") from None


def _restore(
    machine: type,
    policy: SupervisorPolicy,
    data: Mapping[str, Any],
    now: float | None,
    log: events.EventLog | None,
) -> Any:
    _config(
        data["version"] == SNAPSHOT_VERSION,
        f"recovery snapshot version {data['version']!r}, expected {SNAPSHOT_VERSION}",
    )
    saved = float(data["now"])
    now = saved if now is None else now
    machine._check_time(now)
    shift = 0.0 if now >= saved else now - saved

    def times(values: Iterable[Any]) -> list[float]:
        return [float(t) + shift for t in values]

    parts = data["partitions"]
    _config(
        sorted(parts) == sorted(policy.names),
        f"recovery snapshot is for partitions {sorted(parts)}, "
        f"the policy has {sorted(policy.names)}",
    )
    fsm = machine(policy, now=now, log=log)
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
            mode in p.policy.modes,
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
        p.since = fsm._now  # (re)starts begin now: the start deadline is not saved
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
            str(k): VoteTrack(
                times(v["times"]),
                int(v["stage"]),
                None if v["last"] is None else float(v["last"]) + shift,
            )
            for k, v in saved_part["votes"].items()
        }
    return fsm
