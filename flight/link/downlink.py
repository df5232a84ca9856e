"""The downlink store: telemetry that waits for a contact, bounded, in priority classes.

A board sees its ground station a few minutes per orbit, and its memory is fixed, so each
priority class holds at most a set number of bytes. When a class is full its OLDEST packets are
dropped to make room (the newest telemetry says most about the board now), counted per class,
and announced by one TM_DROPPED event per burst of drops, not one per packet: the service turns
events into URGENT packets, and a store that complained once per lost packet would fill its own
URGENT class with complaints. A class never overflows into another.

Draining sends URGENT (verification reports, events) before HOUSEKEEPING before BULK (results,
dumps), first in first out within a class, whole packets only, within a byte budget per call.
A lower class never overtakes a waiting higher one, not even with a packet that would still
fit: the caller that carries its unused budget over from call to call (a token bucket) thus
always gets its largest packet out eventually. Packets are kept as the ``bytes`` objects that
were put, in a deque per class, so draining copies nothing.

The BULK class (inference results not yet sent) can be saved to a file and loaded back, so
pending results survive a supervisor restart; a file that is damaged or truncated is discarded
and counted, never trusted and never raised about.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Mapping
from enum import IntEnum

from flight import errors, events
from flight.atomic import write_atomically
from flight.crc import crc32c

__all__ = ["DownlinkStore", "Priority"]


class Priority(IntEnum):
    """Downlink priority classes; a lower value drains first."""

    URGENT = 0  #: verification reports, events
    HOUSEKEEPING = 1  #: periodic counters
    BULK = 2  #: inference results, dumps


# Saved BULK class: header, then per packet a u32 length and the packet, then the CRC-32C of
# everything before it (u32). Big-endian like the rest of the link.
_MAGIC = b"FLDL"
_VERSION = 1
_HEADER = struct.Struct(">4sHHQQI")  # magic, version, flags (0), dropped, refused, packet count
_LENGTH = struct.Struct(">I")
_CRC = struct.Struct(">I")


class DownlinkStore:
    """Bounded per-class FIFO queues of encoded packets; see the module docstring."""

    def __init__(self, capacity_bytes: Mapping[Priority, int], log: events.EventLog) -> None:
        self._capacity = _capacities(capacity_bytes)
        self._log = log
        self._queues: dict[Priority, deque[bytes]] = {p: deque() for p in Priority}
        self._bytes = dict.fromkeys(Priority, 0)
        self._put = dict.fromkeys(Priority, 0)
        self._drained = dict.fromkeys(Priority, 0)
        self._dropped = dict.fromkeys(Priority, 0)
        self._refused = dict.fromkeys(Priority, 0)
        self._restored = 0
        self._files_discarded = 0
        self._save_failures = 0
        # Classes in a drop burst (announced; quiet until drained to half their capacity), the
        # announcements not yet made, and whether one is being made (a listener may put()).
        self._in_burst: set[Priority] = set()
        self._unannounced: deque[tuple[Priority, str]] = deque()
        self._announcing = False

    # --- filling and draining ---------------------------------------------------------------

    def put(self, priority: Priority, packet: bytes) -> bool:
        """Queue ``packet`` in its class: True if queued (oldest packets of the class may have
        been dropped to make room), False if refused (larger than the whole class; counted)."""
        priority = Priority(priority)
        packet = _as_bytes(packet)
        self._put[priority] += 1
        if len(packet) > self._capacity[priority]:
            self._refused[priority] += 1
            self._note_loss(priority, "too_large")
            self._announce()
            return False
        self._queues[priority].append(packet)
        self._bytes[priority] += len(packet)
        if self._trim(priority):
            self._note_loss(priority, "full")
        self._announce()  # after the store is consistent again: a listener may put() here
        return True

    def drain(self, max_bytes: int) -> list[bytes]:
        """Take whole packets, most urgent class first and oldest first within a class, until
        the next one would exceed ``max_bytes`` in total."""
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an integer >= 0, not {max_bytes!r}")
        sent: list[bytes] = []
        budget = max_bytes
        for priority in Priority:
            queue = self._queues[priority]
            while queue and len(queue[0]) <= budget:
                packet = queue.popleft()
                budget -= len(packet)
                self._bytes[priority] -= len(packet)
                self._drained[priority] += 1
                sent.append(packet)
            if queue:  # a waiting packet of this class goes before any of a lower class
                break
        for priority in list(self._in_burst):
            if 2 * self._bytes[priority] <= self._capacity[priority]:
                self._in_burst.discard(priority)  # recovered: the next drop is a new burst
        return sent

    # --- state and counters -----------------------------------------------------------------

    def __len__(self) -> int:
        """Packets waiting, all classes."""
        return sum(len(q) for q in self._queues.values())

    @property
    def capacity_bytes(self) -> dict[Priority, int]:
        return dict(self._capacity)

    @property
    def queued(self) -> dict[Priority, int]:
        """Packets waiting, per class."""
        return {p: len(q) for p, q in self._queues.items()}

    @property
    def queued_bytes(self) -> dict[Priority, int]:
        return dict(self._bytes)

    @property
    def dropped(self) -> dict[Priority, int]:
        """Packets dropped (oldest first) to make room for newer ones, per class."""
        return dict(self._dropped)

    @property
    def refused(self) -> dict[Priority, int]:
        """Packets refused at put() because they are larger than their whole class, per class."""
        return dict(self._refused)

    @property
    def head_bytes(self) -> int:
        """Size of the packet the next drain() sends first (0 if empty): the budget it needs."""
        for queue in self._queues.values():
            if queue:
                return len(queue[0])
        return 0

    def counters(self) -> dict[str, int]:
        """Totals and per-class figures for housekeeping and the run summary."""
        out = {
            "queued": len(self),
            "queued_bytes": sum(self._bytes.values()),
            "put": sum(self._put.values()),
            "drained": sum(self._drained.values()),
            "dropped": sum(self._dropped.values()),
            "refused": sum(self._refused.values()),
            "restored": self._restored,
            "files_discarded": self._files_discarded,
            "save_failures": self._save_failures,
        }
        for p in Priority:
            name = p.name.lower()
            out[f"queued_{name}"] = len(self._queues[p])
            out[f"dropped_{name}"] = self._dropped[p]
            out[f"refused_{name}"] = self._refused[p]
        return out

    # --- surviving a supervisor restart -----------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> bool:
        """Write the pending BULK packets and BULK's drop counters to ``path``, atomically.
        False (counted) if the file could not be written: a full or failing disk is a fault."""
        queue = self._queues[Priority.BULK]
        parts = [
            _HEADER.pack(
                _MAGIC,
                _VERSION,
                0,
                self._dropped[Priority.BULK],
                self._refused[Priority.BULK],
                len(queue),
            )
        ]
        for packet in queue:
            parts.append(_LENGTH.pack(len(packet)))
            parts.append(packet)
        body = b"".join(parts)
        try:
            write_atomically(path, body + _CRC.pack(crc32c(body)), strict_directory_sync=False)
        except OSError:
            self._save_failures += 1
            return False
        return True

    def load(self, path: str | os.PathLike[str]) -> int:
        """Put the BULK packets saved in ``path`` back, before any queued since, and add its
        drop counters to BULK's (meant once, at start-up). Returns how many packets came back:
        0 for a missing file; a damaged, truncated or unreadable one is discarded and counted."""
        # Largest file this class can have written: each packet >= 1 byte plus a 4-byte length.
        limit = _HEADER.size + 5 * self._capacity[Priority.BULK] + _CRC.size
        try:
            with open(path, "rb") as file:
                data = file.read(limit + 1)
        except FileNotFoundError:
            return 0
        except OSError:
            self._files_discarded += 1
            return 0
        parsed = _parse_saved(data) if len(data) <= limit else None
        if parsed is None:
            self._files_discarded += 1
            return 0
        dropped, refused, packets = parsed
        priority = Priority.BULK
        self._dropped[priority] += dropped
        self._refused[priority] += refused
        fitting = []
        for packet in packets:
            if len(packet) > self._capacity[priority]:  # the class shrank since it was saved
                self._refused[priority] += 1
                self._note_loss(priority, "too_large")
            else:
                fitting.append(packet)
        queue = self._queues[priority]
        queue.extendleft(reversed(fitting))
        self._bytes[priority] += sum(len(p) for p in fitting)
        self._restored += len(packets)
        lost = self._trim(priority)  # the oldest go first: these, never newer ones
        if lost:
            self._note_loss(priority, "full")
        self._announce()
        return len(fitting) - lost

    # --- internals ----------------------------------------------------------------------------

    def _trim(self, priority: Priority) -> int:
        """Drop the oldest packets of ``priority`` until it fits its capacity; how many."""
        queue = self._queues[priority]
        lost = 0
        while self._bytes[priority] > self._capacity[priority]:
            self._bytes[priority] -= len(queue.popleft())
            lost += 1
        self._dropped[priority] += lost
        return lost

    def _note_loss(self, priority: Priority, reason: str) -> None:
        if priority not in self._in_burst:
            self._in_burst.add(priority)
            self._unannounced.append((priority, reason))

    def _announce(self) -> None:
        """Emit the pending TM_DROPPED events. A listener may put() the event as a packet; a
        loss that causes is queued here, not emitted from inside the listener, and each class
        is announced once per burst, so this ends after at most one event per class."""
        if self._announcing:
            return
        self._announcing = True
        try:
            while self._unannounced:
                priority, reason = self._unannounced.popleft()
                self._log.emit(
                    events.TM_DROPPED,
                    priority=priority.name,
                    reason=reason,
                    dropped=self._dropped[priority],
                    refused=self._refused[priority],
                    capacity_bytes=self._capacity[priority],
                )
        finally:
            self._announcing = False


def _capacities(capacity_bytes: Mapping[Priority, int]) -> dict[Priority, int]:
    try:
        capacity = {Priority(k): v for k, v in capacity_bytes.items()}
    except (ValueError, AttributeError) as exc:
        raise errors.ConfigError(f"downlink capacity: {exc}") from exc
    missing = [p.name for p in Priority if p not in capacity]
    if missing:
        raise errors.ConfigError(f"downlink capacity: no capacity for {', '.join(missing)}")
    for p, value in capacity.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise errors.ConfigError(
                f"downlink capacity: {p.name} must be a positive number of bytes, not {value!r}"
            )
    return capacity


def _as_bytes(packet: bytes) -> bytes:
    """The packet as an immutable ``bytes`` (one copy at put() for a mutable buffer, none for
    bytes); an empty packet or a non-buffer is a bug."""
    if not isinstance(packet, bytes):
        if not isinstance(packet, bytearray | memoryview):
            raise TypeError(f"a packet is bytes, not {type(packet).__name__}")
        packet = bytes(packet)
    if not packet:
        raise ValueError("an empty packet")
    return packet


def _parse_saved(data: bytes) -> tuple[int, int, list[bytes]] | None:
    """(dropped, refused, packets) from a saved file, or None if anything about it is wrong."""
    if len(data) < _HEADER.size + _CRC.size:
        return None
    body, (crc,) = data[: -_CRC.size], _CRC.unpack_from(data, len(data) - _CRC.size)
    if crc32c(body) != crc:
        return None
    magic, version, flags, dropped, refused, count = _HEADER.unpack_from(body)
    if magic != _MAGIC or version != _VERSION or flags != 0:
        return None
    packets = []
    offset = _HEADER.size
    view = memoryview(body)
    while offset < len(body):
        if offset + _LENGTH.size > len(body):
            return None
        (length,) = _LENGTH.unpack_from(body, offset)
        offset += _LENGTH.size
        if length == 0 or offset + length > len(body):
            return None
        packets.append(bytes(view[offset : offset + length]))
        offset += length
    if len(packets) != count:
        return None
    return dropped, refused, packets
