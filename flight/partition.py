"""Partitions: forked worker processes, each a failure domain, driven through shared memory.

A partition's worker computes some replicas of a model (all three for *time* placement, one
each for *space* placement). It is forked from the supervisor after the kernels are compiled and
the weights, arenas and input buffer are in shared memory (flight.shm), so a (re)started worker
produces its first output within milliseconds, without importing or compiling anything.

Protocol (no pickling on the hot path):

* a control block of uint64 words in shared memory (:class:`Ctl` names the slots): the worker
  bumps ``HEARTBEAT`` as it takes a request and after each replica (or vote-point segment) it
  computes, and copies ``REQUEST`` to ``DONE`` when its outputs are written;
* a *wake* pipe (supervisor -> worker): one byte per request (``b"Q"`` asks it to exit);
* a *done* pipe (worker -> supervisor): one byte per finished request, so the supervisor waits
  with ``select`` and a deadline; end-of-file on it means the worker died.

The health monitor (:mod:`flight.health`) detects a hang as a request not done while the
heartbeat stands still for the heartbeat timeout, and a crash as end-of-file / a reaped exit
status.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from enum import IntEnum

import numpy as np

from flight.shm import shared_zeros

__all__ = ["Ctl", "PartitionProcess", "WorkerDied"]


class Ctl(IntEnum):
    """Slots of a worker's control block (readiness is the ``R`` byte on the done pipe)."""

    HEARTBEAT = 0  # bumped as a request is taken and after each replica / vote-point segment
    REQUEST = 1  # the request the supervisor released
    DONE = 2  # the request whose outputs are written
    DONE_NS = 3  # CLOCK_MONOTONIC (ns, system-wide) when the last request was done
    ACT_UPSETS = 4  # activation upsets to inject during the next request (test mode)
    ACT_SEED = 5
    VP_CORRECTED = 6  # words corrected at vote points (time-placement TMR)
    VP_NO_MAJORITY = 7  # words without a majority at vote points (written back voted bitwise)
    VP_UNSAFE = 8  # vote points whose write-back was no two replicas' whole tensor
    # One armed upset at a named node during the next request (test mode: the HIL agent).
    ACT_NODE = 9  # 1 + index in model.lives of the activation hit; 0: none armed
    ACT_REPLICA = 10  # which of this worker's replicas
    ACT_BIT = 11  # bit offset in that activation (flight.inject numbering)
    ACT_FAULT = 12  # kind (low byte: 1 flip, 2 stuck at 0, 3 stuck at 1) | bits << 8
    ACT_OLD = 13  # the bytes read back before and after (little-endian), written by the worker
    ACT_NEW = 14
    ACT_SPAN = 15  # how many bytes ACT_OLD / ACT_NEW hold; 0 until the upset is applied
    SIZE = 16


class WorkerDied(Exception):
    """Internal signal: the worker's done pipe reached end-of-file."""


def _worker_main(
    ctl: np.ndarray, wake_fd: int, done_fd: int, replicas, input_buffer, vote_points=()
) -> None:
    """The worker loop (runs in the forked child; never returns)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when workers stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    staged = None
    if vote_points:
        from flight.redundancy import VotePoints

        staged = VotePoints(list(replicas), list(vote_points))

    def beat() -> None:
        ctl[Ctl.HEARTBEAT] += 1

    os.write(done_fd, b"R")
    try:
        while True:
            byte = os.read(wake_fd, 1)
            if not byte or byte == b"Q":
                os._exit(0)
            request = int(ctl[Ctl.REQUEST])
            beat()
            upsets = int(ctl[Ctl.ACT_UPSETS])
            hooks = {}
            if upsets:  # test mode only: the supervisor's TestMode sets the count
                from flight.inject import activation_upset_hooks

                hooks = activation_upset_hooks(replicas, upsets, int(ctl[Ctl.ACT_SEED]))
                ctl[Ctl.ACT_UPSETS] = 0
            if ctl[Ctl.ACT_NODE]:  # test mode only: the HIL agent armed one upset
                hooks = _with_armed_upset(ctl, replicas, hooks)
                ctl[Ctl.ACT_NODE] = 0
            if staged is not None:
                staged.run(input_buffer, hooks, progress=beat)
                ctl[Ctl.VP_CORRECTED] = staged.corrected
                ctl[Ctl.VP_NO_MAJORITY] = staged.no_majority
                ctl[Ctl.VP_UNSAFE] = staged.unsafe
            else:
                for index, replica in enumerate(replicas):
                    replica.run(input_buffer, after=hooks.get(index))
                    beat()
            ctl[Ctl.DONE_NS] = time.monotonic_ns()
            ctl[Ctl.DONE] = request
            os.write(done_fd, b"D")
    except BaseException:  # a bug or a corrupted state: die loudly, the supervisor restarts us
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)


def _with_armed_upset(ctl: np.ndarray, replicas, hooks: dict) -> dict:
    """``hooks`` plus the armed upset (see :meth:`PartitionProcess.arm_upset`), which writes
    the bytes it read back before and after into the control block (runs in the worker)."""
    from flight import inject

    name = replicas[0].model.lives[int(ctl[Ctl.ACT_NODE]) - 1].name
    replica, bit = int(ctl[Ctl.ACT_REPLICA]), int(ctl[Ctl.ACT_BIT])
    kind, k = int(ctl[Ctl.ACT_FAULT]) & 0xFF, int(ctl[Ctl.ACT_FAULT]) >> 8
    if kind == 1:
        fault = inject.SingleBitUpset(bit) if k == 1 else inject.MultiBitUpset(k, 4, bit)
    else:
        fault = inject.StuckAt(kind - 2, bit)
    previous = hooks.get(replica, {}).get(name)

    def hook(buffer: np.ndarray) -> None:
        if previous is not None:
            previous(buffer)
        record = inject.apply(fault, buffer)
        ctl[Ctl.ACT_OLD] = int.from_bytes(record.old, "little")
        ctl[Ctl.ACT_NEW] = int.from_bytes(record.new, "little")
        ctl[Ctl.ACT_SPAN] = len(record.old)

    return {**hooks, replica: {**hooks.get(replica, {}), name: hook}}


class PartitionProcess:
    """The supervisor's handle on one worker process (fork, request, wait, kill, reap)."""

    def __init__(
        self,
        name: str,
        replicas: Sequence,
        input_buffer: np.ndarray,
        close_in_child=lambda: (),
        vote_points: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.vote_points = tuple(vote_points)
        self.replicas = list(replicas)
        self.input_buffer = input_buffer
        self.ctl = shared_zeros(int(Ctl.SIZE), np.uint64)
        self.pid: int | None = None
        self._wake_fd: int | None = None
        self._done_fd: int | None = None
        self._close_in_child = close_in_child
        self.exit_status: int | None = None  # os.waitpid status of the last worker
        #: the heartbeat as the last request was released (the health monitor's reference)
        self.heartbeat_at_release = 0
        #: when the last request was released (CLOCK_MONOTONIC ns, as the worker's DONE_NS)
        self.released_ns = 0

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Fork a fresh worker (the previous one must be gone)."""
        if self.pid is not None:
            raise RuntimeError(f"partition {self.name!r} already has worker {self.pid}")
        wake_r, wake_w = os.pipe()
        done_r, done_w = os.pipe()
        self.ctl[:] = 0
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(wake_w)
                os.close(done_r)
                for fd in self._close_in_child():
                    with contextlib.suppress(OSError):
                        os.close(fd)
                _worker_main(
                    self.ctl, wake_r, done_w, self.replicas, self.input_buffer, self.vote_points
                )
            finally:
                os._exit(4)
        os.close(wake_r)
        os.close(done_w)
        self.pid, self._wake_fd, self._done_fd = pid, wake_w, done_r
        self.exit_status = None

    def fds(self) -> list[int]:
        return [fd for fd in (self._wake_fd, self._done_fd) if fd is not None]

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the worker's ready byte; False on timeout or death."""
        try:
            return self._wait_byte(timeout) == b"R"
        except WorkerDied:
            return False

    def kill(self) -> None:
        """SIGKILL the worker (also un-stops a SIGSTOPped one) and reap it."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._reap(block=True)

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the worker to exit, then make sure it did."""
        if self.pid is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_fd, b"Q")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._reap(block=False):
            time.sleep(0.005)
        self.kill()

    def _reap(self, block: bool) -> bool:
        """Collect the worker's exit status; True once it is gone."""
        if self.pid is None:
            return True
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, -1
        if pid == 0:
            return False
        self.exit_status = status
        for fd in (self._wake_fd, self._done_fd):
            if fd is not None:
                os.close(fd)
        self.pid = self._wake_fd = self._done_fd = None
        return True

    def exited(self) -> bool:
        """Non-blocking: has the worker died (it is then reaped)?"""
        return self.pid is not None and self._reap(block=False)

    @property
    def alive(self) -> bool:
        return self.pid is not None

    def describe_exit(self) -> str:
        status = self.exit_status
        if status is None:
            return "running"
        if status == -1:
            return "unknown"
        if os.WIFSIGNALED(status):
            return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
        return f"exit code {os.WEXITSTATUS(status)}"

    # --- requests -----------------------------------------------------------------------------
    @property
    def heartbeat(self) -> int:
        return int(self.ctl[Ctl.HEARTBEAT])

    @property
    def done_after_s(self) -> float:
        """Seconds from the last request's release to its completion (by the worker's clock
        stamp, so a supervisor that looks late does not make the worker late)."""
        return (int(self.ctl[Ctl.DONE_NS]) - self.released_ns) / 1e9

    def request(self, sequence: int, activation_upsets: int = 0, seed: int = 0) -> None:
        """Ask the worker to compute its replicas on the current input buffer."""
        self.ctl[Ctl.ACT_UPSETS] = activation_upsets
        self.ctl[Ctl.ACT_SEED] = seed
        self.heartbeat_at_release = self.heartbeat
        self.released_ns = time.monotonic_ns()
        self.ctl[Ctl.REQUEST] = sequence
        try:
            os.write(self._wake_fd, b"W")
        except (BrokenPipeError, TypeError):
            raise WorkerDied(self.name) from None

    def arm_upset(self, node: int, replica: int, fault) -> None:
        """Test mode (the HIL agent): during the next request, apply ``fault`` (a
        :mod:`flight.inject` fault with its bit set; at most 8 bits) to activation ``node``
        (an index in ``model.lives``) of this worker's replica ``replica``, right after the
        node that writes it. A restart forgets it. :meth:`armed_upset` reads what it did."""
        from flight import inject

        if isinstance(fault, inject.StuckAt):
            code = (2 + fault.value) | (1 << 8)
        else:
            code = 1 | (getattr(fault, "k", 1) << 8)
        self.ctl[Ctl.ACT_REPLICA] = replica
        self.ctl[Ctl.ACT_BIT] = fault.bit
        self.ctl[Ctl.ACT_FAULT] = code
        self.ctl[Ctl.ACT_SPAN] = 0
        self.ctl[Ctl.ACT_NODE] = node + 1  # last: this arms it

    def armed_upset(self) -> tuple[bytes, bytes] | None:
        """The bytes the armed upset read back before and after, once it was applied."""
        span = int(self.ctl[Ctl.ACT_SPAN])
        if not span:
            return None
        old, new = (
            int(self.ctl[slot]).to_bytes(8, "little")[:span] for slot in (Ctl.ACT_OLD, Ctl.ACT_NEW)
        )
        return old, new

    def wait_done(self, sequence: int, timeout: float) -> bool:
        """Wait until the worker finished ``sequence``; False on deadline (maybe hung).

        Raises :class:`WorkerDied` when the worker's pipe closes (a crash).
        """
        deadline = time.monotonic() + timeout
        while int(self.ctl[Ctl.DONE]) != sequence:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._wait_byte(remaining) is None:
                return int(self.ctl[Ctl.DONE]) == sequence
        return True

    def _wait_byte(self, timeout: float) -> bytes | None:
        if self._done_fd is None:
            raise WorkerDied(self.name)
        ready, _, _ = select.select([self._done_fd], [], [], max(timeout, 0.0))
        if not ready:
            return None
        byte = os.read(self._done_fd, 1)
        if not byte:
            raise WorkerDied(self.name)
        return byte

    @property
    def vote_point_corrections(self) -> int:
        """Words corrected at vote points by the current worker since it started."""
        return int(self.ctl[Ctl.VP_CORRECTED])

    @property
    def vote_point_no_majority(self) -> int:
        """Words without a majority at vote points, by the current worker since it started."""
        return int(self.ctl[Ctl.VP_NO_MAJORITY])

    @property
    def vote_point_unsafe(self) -> int:
        """Vote points whose write-back was no two replicas' whole tensor (the current worker,
        since it started): an inference with one is withheld."""
        return int(self.ctl[Ctl.VP_UNSAFE])
