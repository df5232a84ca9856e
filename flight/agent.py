"""The HIL agent: the board's side of board-level fault injection (test mode only).

A harness on the ground asks, over the link (:mod:`flight.commanding`), for one injection at a
time; this module carries it out on the running supervisor and says what it did, with the
bytes read back before and after, so the harness can tell an injection that landed from one
that did not (a stuck-at bit already at its value, an armed upset whose worker restarted
first: *not injected*, never *masked*). The sites:

* ``weights`` / ``crc_table``: a bit of a weight copy or of a CRC-table copy, now;
* ``output``: armed: a bit of one replica's output buffer, after the workers computed the next
  inference of the partition and before the vote (:attr:`Supervisor.before_vote`);
* ``activation``: armed: a bit of the activation a named node writes, in one replica, during
  the next inference, applied by the worker itself through its control block
  (:meth:`flight.partition.PartitionProcess.arm_upset`);
* ``cds``: a bit of the newest critical-data-store slot file on disk;
* a worker hung (SIGSTOP) or crashed (SIGKILL, SIGSEGV);
* ``process-memory``: bits of a writable private anonymous or heap mapping of a worker or of
  the supervisor itself, through ``/proc/PID/mem``.

Offsets are taken modulo the site's size, so a harness can draw them without knowing the
sizes. The gate is here, in the library: every function raises ConfigError unless the
mission is in test mode, whatever its caller checked before.
"""

from __future__ import annotations

import os
import signal as signals
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from flight import errors, inject
from flight.link.codes import FailureCode
from flight.modes import REPLICAS
from flight.testmode import require_test_mode

__all__ = [
    "AgentError",
    "Mapping",
    "Signalled",
    "choose_address",
    "crash_partition",
    "describe",
    "flip_memory",
    "hang_partition",
    "inject_fault",
    "telemetry",
    "writable_mappings",
]

#: Sites of :func:`inject_fault` (the ``inject`` command's ``site`` labels).
NOW_SITES = ("weights", "crc_table", "cds")
ARMED_SITES = ("output", "activation")
#: Fault models (the ``inject`` command's ``fault`` labels).
FAULTS = ("seu", "mbu", "stuck0", "stuck1")
#: Crash signals (the ``crash_partition`` command's ``signal`` labels).
CRASH_SIGNALS = ("SIGKILL", "SIGSEGV")
#: How long a signalled worker may take to show its new state (never a timing assert: the
#: record says what /proc showed when it did, or when this ran out).
SETTLE_S = 5.0


class AgentError(errors.FlightError, ValueError):
    """An injection request that names nothing, or does not fit its site, or whose target
    cannot take it now; ``code`` is the failure code the link reports."""

    def __init__(self, detail: str, code: FailureCode = FailureCode.INVALID_ARGUMENT) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class Signalled:
    """A worker sent a signal (hang, crash), with its state letter from /proc/PID/stat
    before and after ("S" sleeping, "T" stopped, "Z" dead and not yet reaped, "" gone)."""

    target: str
    pid: int
    signal: str
    old: bytes
    new: bytes

    @property
    def changed(self) -> bool:
        return self.old != self.new


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps that process-memory injections may hit."""

    start: int
    end: int
    name: str  # "[heap]", or "" for an anonymous mapping

    @property
    def size(self) -> int:
        return self.end - self.start


# --- the gate and the targets --------------------------------------------------------------------
def _gate(sup: Any, what: str) -> None:
    require_test_mode(sup.mission, what)


def _partition(sup: Any, name: str) -> Any:
    p = sup.by_name.get(name)
    if p is None:
        raise AgentError(f"no partition {name!r}")
    return p


def _worker(p: Any, replica: int) -> tuple[Any, int]:
    """The worker computing ``replica`` of ``p`` and the replica's index in that worker."""
    active = REPLICAS[p.mode]
    if not 0 <= replica < active:
        raise AgentError(f"{p.name} runs {p.mode}: replicas 0..{active - 1}, not {replica}")
    if p.placement == "space":
        worker, local = (p.workers[replica] if replica < len(p.workers) else None), 0
    else:
        worker, local = (p.workers[0] if p.workers else None), replica
    if worker is None or not worker.alive:
        raise AgentError(f"{p.name} replica {replica} has no running worker", FailureCode.BUSY)
    return worker, local


def _fault(fault: str, offset: int, bit: int, cluster: int, nbytes: int) -> inject.Fault:
    """The fault at bit ``8 * offset + bit`` modulo the site's ``nbytes``."""
    if nbytes <= 0:
        raise AgentError("the site is empty")
    position = (8 * offset + bit) % (8 * nbytes)
    if fault == "seu":
        return inject.SingleBitUpset(position)
    if fault in ("stuck0", "stuck1"):
        return inject.StuckAt(int(fault[-1]), position)
    if fault != "mbu":
        raise AgentError(f"unknown fault {fault!r}; one of {FAULTS}")
    if not 2 <= cluster <= 8:
        raise AgentError(f"an mbu cluster is 2..8 bits, not {cluster}")
    try:
        upset = inject.MultiBitUpset(cluster, 4, position)
    except ValueError as exc:
        raise AgentError(str(exc)) from None
    if position + cluster > 8 * nbytes:
        raise AgentError(f"a {cluster}-bit cluster at bit {position} runs past the site")
    return upset


def _apply(fault: inject.Fault, buffer: Any, site: str) -> inject.Injection:
    """Apply, then read the bytes back from the buffer itself (not what was meant)."""
    record = inject.apply(fault, buffer, site=site)
    view = inject.as_bytes(buffer)
    start = record.byte_offset
    return replace(record, new=view[start : start + len(record.old)].tobytes())


# --- weights, CRC tables, outputs, activations, the CDS ------------------------------------------
def inject_fault(
    sup: Any,
    site: str,
    partition: str = "",
    copy: int = 0,
    offset: int = 0,
    bit: int = 0,
    fault: str = "seu",
    cluster: int = 2,
    node: str = "",
    on_fire: Callable[[inject.Injection], None] | None = None,
) -> inject.Injection | None:
    """One upset at ``site`` (see the module docstring); ``copy`` is the weight or CRC-table
    copy, or the replica for an output or an activation.

    Returns the record of an injection done now; an armed one (output, activation) returns
    None and calls ``on_fire`` with its record after the next inference of the partition (a
    record with ``applied=False`` and no bytes if its worker restarted before applying it).
    One armed upset per partition and site at a time (AgentError BUSY otherwise).
    """
    _gate(sup, f"the HIL agent's {site} injection")
    if site == "cds":
        return _inject_cds(sup, offset, bit, fault, cluster)
    if site not in NOW_SITES + ARMED_SITES:
        raise AgentError(f"unknown site {site!r}; one of {NOW_SITES + ARMED_SITES}")
    p = _partition(sup, partition)
    if site in ("weights", "crc_table"):
        region = p.job.weights
        try:
            buffer = region.raw(copy) if site == "weights" else region.crc_table(copy)
        except errors.RegionError as exc:
            raise AgentError(str(exc)) from None
        upset = _fault(fault, offset, bit, cluster, buffer.nbytes)
        name = "weights" if site == "weights" else "crc"
        return _apply(upset, buffer, f"{p.name}/{name}[{copy}]")
    if any(getattr(h, "key", None) == (p.name, site) for h in sup.before_vote):
        raise AgentError(f"an {site} upset is already armed on {p.name}", FailureCode.BUSY)
    worker, local = _worker(p, copy)
    if site == "output":
        upset = _fault(fault, offset, bit, cluster, p.job.outputs[copy].nbytes)
        sup.before_vote.append(_ArmedOutput(sup, p.name, copy, upset, on_fire))
        return None
    lives = p.job.model.lives
    index = next((i for i, life in enumerate(lives) if life.name == node), None)
    if index is None or node in p.job.model.input_names:
        names = [life.name for life in lives if life.name not in p.job.model.input_names]
        raise AgentError(f"no activation {node!r} in {p.name}; one of {names}")
    upset = _fault(fault, offset, bit, cluster, lives[index].nbytes)
    worker.arm_upset(index, local, upset)
    target = f"{p.name}/{node}[{copy}]"
    sup.before_vote.append(_ArmedActivation(sup, p.name, worker, target, upset, on_fire))
    return None


class _Armed:
    """A one-shot :attr:`Supervisor.before_vote` hook for one partition and site."""

    site = ""

    def __init__(self, sup: Any, partition: str, on_fire: Callable | None) -> None:
        self.sup, self.partition, self.on_fire = sup, partition, on_fire
        self.key = (partition, self.site)

    def __call__(self, p: Any) -> None:
        if p.name != self.partition:
            return
        self.sup.before_vote.remove(self)
        record = self.fire(p)
        if self.on_fire is not None:
            self.on_fire(record)

    def fire(self, p: Any) -> inject.Injection:
        raise NotImplementedError


class _ArmedOutput(_Armed):
    site = "output"

    def __init__(self, sup: Any, partition: str, replica: int, fault: Any, on_fire: Any) -> None:
        super().__init__(sup, partition, on_fire)
        self.replica, self.fault = replica, fault

    def fire(self, p: Any) -> inject.Injection:
        return _apply(self.fault, p.job.outputs[self.replica], f"{p.name}/output[{self.replica}]")


class _ArmedActivation(_Armed):
    site = "activation"

    def __init__(
        self, sup: Any, partition: str, worker: Any, target: str, fault: Any, on_fire: Any
    ) -> None:
        super().__init__(sup, partition, on_fire)
        self.worker, self.target, self.fault = worker, target, fault

    def fire(self, p: Any) -> inject.Injection:
        read = self.worker.armed_upset()
        first = self.fault.bit >> 3
        bits = tuple(range(self.fault.bit, self.fault.bit + getattr(self.fault, "k", 1)))
        if read is None:  # its worker restarted before the upset was applied
            return inject.Injection(self.target, self.fault, first, bits, b"", b"", False)
        return inject.Injection(self.target, self.fault, first, bits, read[0], read[1])


def newest_cds_slot(sup: Any) -> Path:
    """The CDS slot file on disk with the highest sequence number (by its header)."""
    from flight import cds

    best: tuple[int, Path] | None = None
    for slot in (0, 1):
        path = sup.cds.slot_path(slot)
        try:
            header = path.read_bytes()[: cds.HEADER.size]
        except FileNotFoundError:
            continue
        if len(header) == cds.HEADER.size and header[:4] == cds.MAGIC:
            sequence = cds.HEADER.unpack(header)[3]
            if best is None or sequence > best[0]:
                best = (sequence, path)
    if best is None:
        raise AgentError("the CDS has no slot file on disk yet", FailureCode.BUSY)
    return best[1]


def _inject_cds(sup: Any, offset: int, bit: int, fault: str, cluster: int) -> inject.Injection:
    """Flip bits of the newest slot file in place (bit rot on the disk), read back from it."""
    path = newest_cds_slot(sup)
    fd = os.open(path, os.O_RDWR)
    try:
        data = bytearray(os.pread(fd, os.fstat(fd).st_size, 0))
        planned = inject.plan(_fault(fault, offset, bit, cluster, len(data)), data, site=path.name)
        if os.pwrite(fd, planned.new, planned.byte_offset) != len(planned.new):
            raise OSError(f"short write to {path}")
        os.fsync(fd)
        new = os.pread(fd, len(planned.new), planned.byte_offset)
    finally:
        os.close(fd)
    return replace(planned, new=new, applied=True)


# --- hangs and crashes ---------------------------------------------------------------------------
def hang_partition(sup: Any, partition: str, replica: int) -> Signalled:
    """SIGSTOP the worker computing ``replica`` (the health monitor must see a hang)."""
    _gate(sup, "the HIL agent's hang")
    p = _partition(sup, partition)
    worker, _ = _worker(p, replica)
    return _signal(f"{p.name}[{replica}]", worker.pid, signals.SIGSTOP, "T")


def crash_partition(sup: Any, partition: str, replica: int, signal: str) -> Signalled:
    """Kill the worker computing ``replica`` with SIGKILL or SIGSEGV."""
    _gate(sup, "the HIL agent's crash")
    if signal not in CRASH_SIGNALS:
        raise AgentError(f"crash signal {signal!r}: one of {CRASH_SIGNALS}")
    p = _partition(sup, partition)
    worker, _ = _worker(p, replica)
    return _signal(f"{p.name}[{replica}]", worker.pid, signals.Signals[signal], "ZX")


def _state(pid: int) -> bytes:
    """The state letter of /proc/PID/stat ("" once the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return b""
    return stat[stat.rindex(b")") + 2 :][:1]


def _signal(target: str, pid: int, sig: signals.Signals, settled: str) -> Signalled:
    old = _state(pid)
    os.kill(pid, sig)
    deadline = time.monotonic() + SETTLE_S
    new = _state(pid)
    while new and new.decode() not in settled and time.monotonic() < deadline:
        time.sleep(0.001)
        new = _state(pid)
    return Signalled(target, pid, sig.name, old, new)


# --- process memory ------------------------------------------------------------------------------
def writable_mappings(pid: int) -> list[Mapping]:
    """The private writable anonymous and heap mappings of process ``pid``: its own data
    (heap, arenas, Python objects), not files and not memory shared with other processes."""
    out = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        perms, name = parts[1], (parts[5].strip() if len(parts) > 5 else "")
        if perms[1] != "w" or perms[3] != "p" or name not in ("", "[heap]"):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        out.append(Mapping(start, end, name))
    return out


def choose_address(mappings: list[Mapping], draw: int, bits: int) -> tuple[Mapping, int, int]:
    """(mapping, address of an aligned 32-bit word, lowest bit of a ``bits``-bit cluster in
    it), from ``draw`` alone: the mapping weighted by size, the word and bit uniform."""
    if not mappings:
        raise AgentError("no writable anonymous or heap mapping")
    if not 1 <= bits <= 8:
        raise AgentError(f"bits must be 1..8, not {bits}")
    rng = np.random.default_rng(draw)
    sizes = np.array([m.size // 4 for m in mappings], dtype=np.float64)
    mapping = mappings[int(rng.choice(len(mappings), p=sizes / sizes.sum()))]
    address = mapping.start + 4 * int(rng.integers(mapping.size // 4))
    return mapping, address, int(rng.integers(0, 32 - bits + 1))


def flip_memory(
    sup: Any, target: str, partition: str = "", replica: int = 0, draw: int = 0, bits: int = 1
) -> inject.Injection:
    """Flip ``bits`` adjacent bits in a writable mapping of a worker (``target`` "partition")
    or of the supervisor itself ("supervisor"), chosen from ``draw``; read back through
    ``/proc/PID/mem`` before and after. The record's bit offsets count from address 0."""
    _gate(sup, "the HIL agent's process-memory injection")
    if target == "supervisor":
        pid, who = os.getpid(), "supervisor"
    elif target == "partition":
        worker, _ = _worker(_partition(sup, partition), replica)
        pid, who = worker.pid, f"{partition}[{replica}]"
    else:
        raise AgentError(f"target {target!r}: partition or supervisor")
    mapping, word, bit = choose_address(writable_mappings(pid), draw, bits)
    old = inject.read_process_memory(pid, word, 4)
    fault = inject.SingleBitUpset(bit) if bits == 1 else inject.MultiBitUpset(bits, 4, bit)
    planned = inject.plan(fault, bytearray(old))
    address = word + planned.byte_offset
    fd = os.open(f"/proc/{pid}/mem", os.O_RDWR)
    try:
        if os.pwrite(fd, planned.new, address) != len(planned.new):
            raise OSError(f"short write to process {pid} memory at {address:#x}")
    finally:
        os.close(fd)
    new = inject.read_process_memory(pid, address, len(planned.new))
    absolute = tuple(8 * word + b for b in planned.bits)
    site = f"{who} pid {pid} {mapping.name or 'anon'}"
    return inject.Injection(
        site, replace(fault, bit=absolute[0]), address, absolute, planned.old, new
    )


# --- what goes down ------------------------------------------------------------------------------
def telemetry(site: str, record: inject.Injection | Signalled) -> dict[str, Any]:
    """The INJECTION packet's values for a record (all but ``request_seq``)."""
    from flight.link.schema import Str

    if isinstance(record, Signalled):
        target = f"{record.target} pid {record.pid} {record.signal}"
        address, bit, applied = record.pid, 0, True
    else:
        target, address = record.site, record.byte_offset
        bit = record.bits[0] - 8 * record.byte_offset if record.bits else 0
        applied = record.applied
    return {
        "site": Str(16).fit(site),
        "target": Str(64).fit(target),
        "address": address,
        "bit": bit,
        "applied": applied,
        "old": record.old[:16],
        "new": record.new[:16],
    }


def describe(record: inject.Injection | Signalled) -> str:
    """One line for a completion report."""
    if isinstance(record, Signalled):
        old, new = record.old.decode() or "gone", record.new.decode() or "gone"
        return f"{record.target} pid {record.pid} {record.signal}: state {old} -> {new}"
    state = "" if record.applied else " (not applied)"
    return (
        f"{record.site} byte {record.byte_offset:#x} bits {list(record.bits)}: "
        f"{record.old.hex()} -> {record.new.hex()}{state}"
    )
