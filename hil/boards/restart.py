"""When a board's init system restarts ``flight run``: the documented systemd unit, as a pure
decision a local board applies (docs/operations.md, "systemd" and "Exit codes").

The unit says ``Restart=on-failure``, ``RestartPreventExitStatus=78``, ``SuccessExitStatus=0``,
``StartLimitIntervalSec=300``, ``StartLimitBurst=5``, ``StartLimitAction=reboot``. systemd's
rules for that (systemd.service(5)): an exit status other than a success status restarts, and
so does a death by a signal, except the four signals systemd counts as a clean stop (SIGHUP,
SIGINT, SIGTERM, SIGPIPE); a status in RestartPreventExitStatus never restarts. A start beyond
the burst within the interval triggers the start-limit action: a reboot, after which the unit
starts again (the local board records it as a reboot, not a refusal).

Kept apart from the process handling so the decisions are tested without processes.
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass

__all__ = ["SYSTEMD_UNIT", "Decision", "RestartPolicy", "describe_status"]

#: Signals after which systemd considers a service stopped cleanly (not restarted on-failure).
CLEAN_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE})


def describe_status(returncode: int) -> str:
    """``exit 124`` or ``signal SIGKILL`` for a Popen return code (negative: a signal)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


@dataclass(frozen=True)
class Decision:
    """What the init system does after the service exited: restart it (perhaps as a reboot
    when the start limit is hit), or leave it stopped."""

    restart: bool
    reboot: bool
    why: str


@dataclass(frozen=True)
class RestartPolicy:
    """The restart settings of a systemd unit (the subset flight's unit uses)."""

    restart: str = "on-failure"  # "no" | "on-failure" | "always"
    prevent_exit_status: frozenset[int] = frozenset({78})
    success_exit_status: frozenset[int] = frozenset({0})
    restart_sec: float = 0.1  # systemd's default RestartSec
    start_limit_interval_s: float = 300.0
    start_limit_burst: int = 5
    start_limit_action: str = "reboot"  # "reboot" | "none" (stay failed)

    def __post_init__(self) -> None:
        if self.restart not in ("no", "on-failure", "always"):
            raise ValueError(f"Restart={self.restart!r} is not one this policy knows")
        if self.start_limit_action not in ("reboot", "none"):
            raise ValueError(f"StartLimitAction={self.start_limit_action!r} is not known")

    def clean(self, returncode: int) -> bool:
        """Did the service stop cleanly, as systemd counts it?"""
        if returncode < 0:
            return -returncode in CLEAN_SIGNALS
        return returncode in self.success_exit_status

    def restarts(self, returncode: int) -> bool:
        """Does this exit restart the service (before the start limit)?"""
        if returncode >= 0 and returncode in self.prevent_exit_status:
            return False
        if self.restart == "always":
            return True
        if self.restart == "no":
            return False
        return not self.clean(returncode)


class StartLimiter:
    """systemd's start-rate limit: at most ``burst`` starts within ``interval_s``; a reboot
    clears the count (the unit's counters do not survive it)."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.starts: deque[float] = deque()

    def decide(self, returncode: int, now: float) -> Decision:
        """The decision after an exit at ``now`` (monotonic seconds); records the start."""
        why = describe_status(returncode)
        if not self.policy.restarts(returncode):
            return Decision(False, False, f"{why}: not restarted")
        window = self.policy.start_limit_interval_s
        while self.starts and now - self.starts[0] > window:
            self.starts.popleft()
        if len(self.starts) >= self.policy.start_limit_burst:
            if self.policy.start_limit_action == "none":
                return Decision(False, False, f"{why}: start limit hit, left failed")
            self.starts.clear()
            self.note_start(now)
            return Decision(True, True, f"{why}: start limit hit, reboot")
        self.note_start(now)
        return Decision(True, False, f"{why}: restarted")

    def note_start(self, now: float) -> None:
        self.starts.append(now)


#: The unit of docs/operations.md.
SYSTEMD_UNIT = RestartPolicy()
