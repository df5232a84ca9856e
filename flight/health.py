"""Health: did a partition's workers complete their request, hang, or crash?

The supervisor releases a request to every worker of a partition and then asks this module
what happened. The checks, in order:

* **completion**: the worker copied the request number to its ``DONE`` slot and wrote a byte
  on its done pipe (the supervisor waits on the pipe with ``select``, so a worker that finishes
  early costs no polling);
* **deadline**: done later than the partition's deadline after its release, by the worker's
  own completion stamp (CLOCK_MONOTONIC, system-wide), is a *deadline miss*, counted; a hung
  worker is late too;
* **hang**: the worker bumps its heartbeat when it takes a request and after each replica (or
  vote-point segment) it computes. A worker whose heartbeat has not moved for the heartbeat
  timeout while its request is not done is *hung* (SIGSTOP, a deadlock, an endless loop in a
  kernel); a slow worker that keeps proving progress is only late. After the timeout there is
  one last look at ``DONE``, so that a worker finishing just as the wait ran out is not killed;
* **crash**: end-of-file on the done pipe, or a reaped exit status (SIGKILL, SIGSEGV, an
  exception in the worker).

No decision is taken here: the outcome goes to the recovery state machine as an input.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from flight.partition import PartitionProcess, WorkerDied

__all__ = ["Execution", "Outcome", "describe_crash", "execute"]


class Outcome(StrEnum):
    OK = "ok"
    HANG = "hang"
    CRASH = "crash"


@dataclass(frozen=True)
class Execution:
    """What one request to a partition's workers came to."""

    outcome: Outcome
    late: bool = False  #: some worker missed the deadline (finished later, or hung)


@dataclass(frozen=True)
class CrashReport:
    """How the dead workers of a crashed partition ended (for the recovery input and log)."""

    detail: str
    exit_code: int | None
    signal: int | None


def execute(
    workers: Sequence[PartitionProcess],
    sequence: int,
    deadline_s: float,
    heartbeat_timeout_s: float,
    upsets: Sequence[int],
    seed: int,
) -> Execution:
    """Release request ``sequence`` to every worker and wait for its outcome."""
    try:
        released = time.monotonic()
        for worker, count in zip(workers, upsets, strict=True):
            worker.request(sequence, activation_upsets=count, seed=seed)
        for worker in workers:
            remaining = released + deadline_s - time.monotonic()
            if worker.wait_done(sequence, max(remaining, 0.0)):
                continue
            if not _progressing_until_done(worker, sequence, released, heartbeat_timeout_s):
                return Execution(Outcome.HANG, late=True)
    except WorkerDied:
        return Execution(Outcome.CRASH)
    # late by the workers' own completion stamps: a supervisor that only got round to
    # looking after the deadline must not hide (or invent) a deadline miss
    return Execution(Outcome.OK, late=any(w.done_after_s > deadline_s for w in workers))


def _progressing_until_done(
    worker: PartitionProcess, sequence: int, released: float, timeout_s: float
) -> bool:
    """Wait while the worker's heartbeat keeps moving; False once it stood still for
    ``timeout_s`` with the request not done (a hang)."""
    beat, since = worker.heartbeat_at_release, released
    while True:
        remaining = since + timeout_s - time.monotonic()
        if worker.wait_done(sequence, max(remaining, 0.0)):
            return True
        now_beat = worker.heartbeat
        if now_beat == beat:
            return worker.wait_done(sequence, 0.0)  # one last look: it may just have finished
        beat, since = now_beat, time.monotonic()


def describe_crash(workers: Sequence[PartitionProcess]) -> CrashReport:
    """The exit of the partition's dead workers: text, and exit code or signal."""
    dead = [w for w in workers if w.exited() or not w.alive]
    detail = ", ".join(w.describe_exit() for w in dead) or "pipe closed"
    status = next((w.exit_status for w in dead if w.exit_status not in (None, -1)), None)
    if status is not None and os.WIFSIGNALED(status):
        return CrashReport(detail, None, os.WTERMSIG(status))
    if status is not None:
        return CrashReport(detail, os.WEXITSTATUS(status), None)
    return CrashReport(detail, None, None)
