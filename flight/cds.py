"""Critical data store (CDS): the small record that must survive every kind of restart.

It holds the boot count, a bounded log of resets (reason, wall-clock time, partition, action),
event-style counters and the last good state (e.g. the recovery FSM snapshot, the scrubber
cursor). Partition restarts, a supervisor crash and power loss mid-write must all leave a
loadable record that is at most one commit old.

On disk: two slot files, ``<name>.0`` and ``<name>.1``, each a complete copy::

    offset size  field
    0      4     magic b"FCDS"
    4      2     format version (1), little-endian like every field
    6      2     flags (reserved, must be 0)
    8      8     sequence number (uint64, +1 per commit, across both slots)
    16     4     payload length (<= MAX_PAYLOAD)
    20     4     CRC-32C over bytes 0..19 and the payload (metadata *and* data)
    24     n     msgpack payload: {"boot_count": [v, ~v], "counters": {name: [v, ~v]},
                 "reset_log": [[reason, time, partition, action], ...], "state": {...},
                 "written_at": float}

Why this shape:

* **Two slots, alternating (ping-pong).** A commit writes the slot that does *not* hold the
  newest valid copy, so the newest good copy is never the one being written. A torn write, a
  rename that reached the disk without its data (power loss on a file system without
  rename-replace ordering), or later bit rot in one file leaves the other slot valid: the
  store loses at most the last commit. Writing both slots per commit would double the fsync
  cost for no gain against tearing; the price of alternating is that if the newest slot rots,
  the record loaded is one commit older (a counter can step back by one commit's increments).
  A corrupt slot is repaired for free: it is by construction the next one written.
* **Each slot atomic (temp file, fsync, rename, fsync directory).** Readers never see a
  half-written slot file under its real name; the temp name ``<name>.<slot>.tmp`` is never
  read, is fixed (so a crash leaves at most two), and is removed by the next commit.
* **CRC over header and payload.** A stale or bit-flipped sequence number would otherwise
  make an old copy win. The file size must equal 24 + payload length exactly, checked with
  ``fstat`` before anything is read, so a truncated, padded or hostile file costs at most
  ``MAX_PAYLOAD`` bytes of memory.
* **Counters with their bitwise complement.** The CRC catches what happens to the bytes after
  it was computed; the complement is an independent check over the value itself (it also
  catches a flip in the encoding buffer between msgpack and the CRC, and the rare multi-bit
  pattern the CRC misses). A CRC-valid slot whose complement disagrees is rejected whole.
  Every counter and the boot count carry one: they are few, and "which counters are
  critical" is a question nobody should have to answer in orbit.
* **Faults are data.** Loading never raises on what it reads: a bad slot is an event
  (``CDS_COPY_CORRUPT``, ``CDS_RECOVERED_FROM_BACKUP``), two bad slots start a fresh record
  (``CDS_FORMATTED``), a failed write is ``CDS_WRITE_FAILED`` and ``commit`` returns False
  (the supervisor must not die because its disk is full). Misuse raises
  :class:`CdsUsageError`: unserializable state, negative increments, an oversized record.

Single writer: one process (the supervisor) owns a store; others may load it read-only. The
owner calls :meth:`CriticalDataStore.claim`, an exclusive POSIX lock on ``<name>.lock``, so that
a second supervisor started on the same state directory (an overlapping service restart, a
ground test on a live board) fails at start with :class:`CdsBusyError` instead of alternating
commits with the first. POSIX (``lockf``) rather than ``flock`` locks, because forked partition
workers must not inherit the lock: a worker outliving a killed supervisor would otherwise keep
the next one from starting. The kernel drops the lock when the owner dies, however it dies.
The constructor loads; :meth:`CriticalDataStore.load` re-reads the disk (discarding uncommitted
changes). Helpers change the in-memory record only (except :meth:`begin_boot`) so several
changes share one fsync; call :meth:`commit` to make them durable.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import math
import os
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from flight import errors, events
from flight.atomic import write_atomically
from flight.crc import crc32c

__all__ = [
    "HEADER",
    "MAGIC",
    "MAX_PAYLOAD",
    "VERSION",
    "CdsBusyError",
    "CdsRecord",
    "CdsUsageError",
    "CriticalDataStore",
    "LoadReport",
    "ResetEntry",
    "encode_slot",
]

MAGIC = b"FCDS"
VERSION = 1
#: magic, version, flags, sequence, payload length, CRC-32C.
HEADER = struct.Struct("<4sHHQII")
_CRC_SPAN = HEADER.size - 4  # header bytes covered by the CRC (all but the CRC itself)
#: Largest payload accepted on load or written on commit.
MAX_PAYLOAD = 1 << 20
#: Longest reason / action / partition string kept in a reset log entry (longer ones are cut).
MAX_TEXT = 200
_MASK = (1 << 64) - 1
_STATE_MAX_DEPTH = 16
_PAYLOAD_KEYS = frozenset({"boot_count", "counters", "reset_log", "state", "written_at"})


class CdsUsageError(errors.FlightError, ValueError):
    """The caller misused the store (bad counter increment, unserializable or oversized state)."""


class CdsBusyError(errors.FlightError):
    """Another live process owns the store (holds its writer lock): two supervisors on one
    state directory would overwrite each other's record."""


# Writer locks this process holds: resolved lock path -> [fd, claims]. POSIX locks belong to
# the process, and closing *any* descriptor of the file drops them, so a second claim in the
# same process shares the descriptor instead of opening (and later closing) its own.
_HELD_LOCKS: dict[str, list[int]] = {}


@dataclass(frozen=True)
class ResetEntry:
    """One reset: why, when (wall clock, seconds since the epoch), which partition (None for
    the whole processor) and what was done (restart, disable, safe mode, boot...)."""

    reason: str
    time: float
    partition: str | None
    action: str


@dataclass
class CdsRecord:
    """The persistent record. ``sequence`` and ``written_at`` describe the last commit (0 and
    None for a fresh store)."""

    boot_count: int = 0
    reset_log: list[ResetEntry] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    last_good_state: dict[str, Any] = field(default_factory=dict)
    sequence: int = 0
    written_at: float | None = None


@dataclass(frozen=True)
class LoadReport:
    """What the last load found: per slot "ok", "missing" or "corrupt: <why>", the slot the
    record came from (None when formatted) and whether the store started fresh."""

    slots: tuple[str, str]
    source: int | None
    formatted: bool


class _Invalid(Exception):
    """A slot failed validation (internal: never escapes this module)."""

    def __init__(self, reason: str, *, complement: bool = False) -> None:
        super().__init__(reason)
        self.complement = complement


# --- encoding ---------------------------------------------------------------------------------


def _pair(value: int) -> list[int]:
    return [value, value ^ _MASK]


def _check_json_like(value: Any, depth: int = 0) -> None:
    """Raise _Invalid unless ``value`` is None/bool/int/float/str or lists/str-keyed dicts of
    them (bounded depth): what msgpack round-trips unchanged and a ground tool can print."""
    if depth > _STATE_MAX_DEPTH:
        raise _Invalid("state nested too deep")
    if value is None or isinstance(value, bool | str | float):
        return
    if isinstance(value, int):
        if not -(1 << 63) <= value <= _MASK:
            raise _Invalid("state integer out of 64-bit range")
        return
    if isinstance(value, list):
        for item in value:
            _check_json_like(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Invalid("state key is not a string")
            _check_json_like(item, depth + 1)
        return
    raise _Invalid(f"state value of type {type(value).__name__}")


def encode_slot(record: CdsRecord, sequence: int, written_at: float) -> bytes:
    """The bytes of one slot file for ``record`` (header + payload)."""
    payload = msgpack.packb(
        {
            "boot_count": _pair(record.boot_count),
            "counters": {name: _pair(value) for name, value in record.counters.items()},
            "reset_log": [[e.reason, e.time, e.partition, e.action] for e in record.reset_log],
            "state": record.last_good_state,
            "written_at": written_at,
        },
        use_bin_type=True,
    )
    if len(payload) > MAX_PAYLOAD:
        raise CdsUsageError(f"CDS record is {len(payload)} bytes, more than {MAX_PAYLOAD}")
    head = HEADER.pack(MAGIC, VERSION, 0, sequence, len(payload), 0)[:_CRC_SPAN]
    crc = crc32c(payload, crc32c(head))
    return head + struct.pack("<I", crc) + payload


def _counter(pair: Any, what: str) -> int:
    if not (
        isinstance(pair, list)
        and len(pair) == 2
        and all(type(x) is int and 0 <= x <= _MASK for x in pair)
    ):
        raise _Invalid(f"{what} is not a [value, complement] pair of uint64")
    value, complement = pair
    if value ^ _MASK != complement:
        raise _Invalid(f"{what} disagrees with its complement", complement=True)
    return value


def _text(value: Any, what: str, *, optional: bool = False) -> Any:
    if (value is None and optional) or (isinstance(value, str) and len(value) <= MAX_TEXT):
        return value
    raise _Invalid(f"reset log {what} is not a string of <= {MAX_TEXT} characters")


def _number(value: Any, what: str) -> float:
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    raise _Invalid(f"{what} is not a finite number")


def _decode_slot(blob: bytes, max_reset_log: int) -> CdsRecord:
    """Validate one slot file's bytes and return its record; raises _Invalid (internal)."""
    if len(blob) < HEADER.size:
        raise _Invalid(f"{len(blob)} bytes, shorter than the header")
    magic, version, flags, sequence, length, crc = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise _Invalid("bad magic")
    if version != VERSION or flags != 0:
        raise _Invalid(f"unknown format version {version} / flags {flags}")
    if length > MAX_PAYLOAD or len(blob) != HEADER.size + length:
        raise _Invalid(f"payload length {length} does not match file size {len(blob)}")
    payload = memoryview(blob)[HEADER.size :]
    if crc32c(payload, crc32c(memoryview(blob)[:_CRC_SPAN])) != crc:
        raise _Invalid("CRC mismatch")
    try:
        data = msgpack.unpackb(payload, raw=False, strict_map_key=True, timestamp=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise _Invalid(f"payload does not decode: {exc}") from None
    if not isinstance(data, dict) or set(data) != _PAYLOAD_KEYS:
        raise _Invalid("payload keys do not match the schema")
    counters_raw, log_raw, state = data["counters"], data["reset_log"], data["state"]
    if not isinstance(counters_raw, dict) or not isinstance(log_raw, list):
        raise _Invalid("counters or reset log of the wrong type")
    if not isinstance(state, dict):
        raise _Invalid("state is not a map")
    _check_json_like(state)
    counters = {}
    for name, pair in counters_raw.items():
        if not isinstance(name, str):
            raise _Invalid("counter name is not a string")
        counters[name] = _counter(pair, f"counter {name!r}")
    reset_log = []
    for entry in log_raw[-max_reset_log:]:  # older entries (a larger ring once) are dropped
        if not isinstance(entry, list) or len(entry) != 4:
            raise _Invalid("reset log entry is not a 4-list")
        reason, when, partition, action = entry
        reset_log.append(
            ResetEntry(
                _text(reason, "reason"),
                _number(when, "reset time"),
                _text(partition, "partition", optional=True),
                _text(action, "action"),
            )
        )
    return CdsRecord(
        boot_count=_counter(data["boot_count"], "boot count"),
        reset_log=reset_log,
        counters=counters,
        last_good_state=state,
        sequence=sequence,
        written_at=_number(data["written_at"], "write time"),
    )


# --- the store --------------------------------------------------------------------------------


class CriticalDataStore:
    """Two-slot, CRC-checked, atomically written record in ``directory`` (which must exist).

    ``log`` receives the CDS events; ``wall_clock`` stamps reset entries and commits (wall
    clock, not monotonic: the record outlives the process and the boot).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str = "cds",
        *,
        max_reset_log: int = 64,
        log: events.EventLog | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise errors.ConfigError(f"CDS directory {self.directory} does not exist")
        if not name or "/" in name or name.startswith("."):
            raise errors.ConfigError(f"bad CDS name {name!r}")
        if max_reset_log < 1:
            raise errors.ConfigError("max_reset_log must be >= 1")
        self.name = name
        self.max_reset_log = max_reset_log
        self.log = log if log is not None else events.EventLog()
        self._clock = wall_clock
        self._record = CdsRecord()
        self._newest_slot: int | None = None
        self._stale_tmp = True
        self._lock_path: str | None = None
        self.last_load = LoadReport(("missing", "missing"), None, True)
        self.load()

    # ownership
    def claim(self) -> None:
        """Become the store's single writer, or raise :class:`CdsBusyError` naming the process
        that is. Held until :meth:`release` or the process ends."""
        if self._lock_path is not None:
            return
        path = str((self.directory / f"{self.name}.lock").resolve())
        held = _HELD_LOCKS.get(path)
        if held is None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise CdsBusyError(
                    f"the critical data store in {self.directory} is in use by another "
                    f"process (pid {holder}): one supervisor per state directory"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            held = _HELD_LOCKS[path] = [fd, 0]
        held[1] += 1
        self._lock_path = path

    def release(self) -> None:
        """Give up the writer lock taken by :meth:`claim` (no-op if not claimed)."""
        path, self._lock_path = self._lock_path, None
        if path is None:
            return
        held = _HELD_LOCKS[path]
        held[1] -= 1
        if held[1] == 0:
            del _HELD_LOCKS[path]
            os.close(held[0])  # drops the lock

    # paths
    def slot_path(self, slot: int) -> Path:
        return self.directory / f"{self.name}.{slot}"

    def _tmp_path(self, slot: int) -> Path:
        return self.directory / f"{self.name}.{slot}.tmp"

    # reading
    def _read_slot(self, slot: int) -> bytes | None:
        """The slot file's bytes, None if missing; raises _Invalid for unreadable or
        impossible sizes without reading more than the header + MAX_PAYLOAD."""
        try:
            fd = os.open(self.slot_path(slot), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _Invalid(f"cannot open: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if not HEADER.size <= size <= HEADER.size + MAX_PAYLOAD:
                raise _Invalid(f"file size {size} out of bounds")
            chunks, remaining = [], size
            while remaining:
                chunk = os.read(fd, remaining)
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise _Invalid(f"cannot read: {exc.strerror}") from None
        finally:
            os.close(fd)

    def load(self) -> CdsRecord:
        """Read both slots and adopt the valid one with the highest sequence number.

        Never raises on what it finds: corrupt slots become events, no valid slot gives a
        fresh record (boot count 0) and ``CDS_FORMATTED``. Returns a copy of the record.
        """
        found: list[CdsRecord | None] = [None, None]
        status = ["missing", "missing"]
        for slot in (0, 1):
            try:
                blob = self._read_slot(slot)
                if blob is not None:
                    found[slot] = _decode_slot(blob, self.max_reset_log)
                    status[slot] = "ok"
            except _Invalid as exc:
                status[slot] = f"corrupt: {exc}"
                fields = {"store": self.name, "slot": slot, "reason": str(exc)}
                if exc.complement:
                    self.log.emit(events.CDS_COUNTER_COMPLEMENT_MISMATCH, **fields)
                self.log.emit(events.CDS_COPY_CORRUPT, **fields)
        valid = [(rec.sequence, slot, rec) for slot, rec in enumerate(found) if rec is not None]
        if not valid:
            self._record, self._newest_slot = CdsRecord(), None
            self.log.emit(events.CDS_FORMATTED, store=self.name, slots=tuple(status))
        else:
            _, newest, self._record = max(valid, key=lambda v: (v[0], -v[1]))
            self._newest_slot = newest
            other = 1 - newest
            if status[other].startswith("corrupt"):
                self.log.emit(
                    events.CDS_RECOVERED_FROM_BACKUP, store=self.name, slot=newest, bad_slot=other
                )
        self._stale_tmp = True  # a crashed writer may have left temp files; next commit looks
        self.last_load = LoadReport(
            (status[0], status[1]), self._newest_slot, self._newest_slot is None
        )
        return self.record

    # the record
    @property
    def record(self) -> CdsRecord:
        """A deep copy of the in-memory record (change it through the helpers)."""
        return copy.deepcopy(self._record)

    @property
    def boot_count(self) -> int:
        return self._record.boot_count

    def counter(self, name: str) -> int:
        return self._record.counters.get(name, 0)

    def state(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(self._record.last_good_state.get(key, default))

    # changes (in memory until commit)
    def add(self, counter: str, n: int = 1) -> int:
        """Add ``n`` (>= 0) to a counter; saturates at 2**64 - 1 (a count that high is not a
        reason to crash). Returns the new value."""
        if not isinstance(counter, str) or type(n) is not int or n < 0:
            raise CdsUsageError(f"counter must be a str and n an int >= 0, got {counter!r}, {n!r}")
        value = min(self._record.counters.get(counter, 0) + n, _MASK)
        self._record.counters[counter] = value
        return value

    def set_state(self, key: str, value: Any) -> None:
        """Remember ``value`` (JSON-like: None, bool, int, float, str, lists, str-keyed dicts)
        under ``key`` in the last good state. The value is copied."""
        if not isinstance(key, str):
            raise CdsUsageError(f"state key must be a str, got {key!r}")
        try:
            _check_json_like(value)
        except _Invalid as exc:
            raise CdsUsageError(f"state {key!r} is not storable: {exc}") from None
        self._record.last_good_state[key] = copy.deepcopy(value)

    def log_reset(
        self, reason: str, partition: str | None, action: str, now: float | None = None
    ) -> ResetEntry:
        """Append a reset to the bounded log (oldest entries drop out); texts are cut to
        MAX_TEXT characters so the record stays small."""
        if not isinstance(reason, str) or not isinstance(action, str):
            raise CdsUsageError("reason and action must be strings")
        if partition is not None and not isinstance(partition, str):
            raise CdsUsageError("partition must be a string or None")
        when = float(self._clock() if now is None else now)
        if not math.isfinite(when):
            raise CdsUsageError(f"reset time must be finite, got {when}")
        cut = None if partition is None else partition[:MAX_TEXT]
        entry = ResetEntry(reason[:MAX_TEXT], when, cut, action[:MAX_TEXT])
        ring = deque(self._record.reset_log, maxlen=self.max_reset_log)
        ring.append(entry)
        self._record.reset_log = list(ring)
        return entry

    def begin_boot(self, reason: str, now: float | None = None) -> int:
        """Count a boot, log it as a reset (``action="boot"``) and commit. Returns the new
        boot count (1 on the first boot of a fresh store)."""
        self._record.boot_count = min(self._record.boot_count + 1, _MASK)
        self.log_reset(reason, None, "boot", now)
        self.commit()
        return self._record.boot_count

    # writing
    def _cleanup_tmp(self) -> None:
        for slot in (0, 1):
            with contextlib.suppress(OSError):
                os.unlink(self._tmp_path(slot))
        self._stale_tmp = False

    def commit(self) -> bool:
        """Write the record to the slot not holding the newest valid copy, atomically.

        Returns True when the copy is durable. On an I/O error emits ``CDS_WRITE_FAILED`` and
        returns False: the record stays in memory and the newest valid copy is untouched.
        Raises :class:`CdsUsageError` if the record is too large (a bug, not a fault).
        """
        sequence = self._record.sequence + 1
        written_at = float(self._clock())
        blob = encode_slot(self._record, sequence, written_at)
        slot = 0 if self._newest_slot is None else 1 - self._newest_slot
        try:
            if self._stale_tmp:
                self._cleanup_tmp()
            write_atomically(self.slot_path(slot), blob, tmp=self._tmp_path(slot))
        except OSError as exc:
            self._record.sequence = sequence  # never reuse a number that may be on disk
            self.log.emit(
                events.CDS_WRITE_FAILED, store=self.name, slot=slot, error=str(exc.strerror)
            )
            self._stale_tmp = True
            return False
        self._record.sequence, self._record.written_at = sequence, written_at
        self._newest_slot = slot
        return True
