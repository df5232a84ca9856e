"""Downlink store: priority order, byte budget, drop-oldest policy and its counters, one
TM_DROPPED per burst (also when a listener puts that event back into the store), save/load of
the BULK class and damaged files, and conservation of packets under any sequence of operations.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight import errors, events
from flight.crc import crc32c
from flight.link.downlink import DownlinkStore, Priority

U, H, B = Priority.URGENT, Priority.HOUSEKEEPING, Priority.BULK
BIG = 1 << 30


def _store(urgent: int = 1000, housekeeping: int = 1000, bulk: int = 1000, log=None):
    log = log if log is not None else events.EventLog()
    return DownlinkStore({U: urgent, H: housekeeping, B: bulk}, log), log


def _packet(tag: str, size: int = 10) -> bytes:
    return tag.encode().ljust(size, b".")


def _drops(log: events.EventLog) -> list[events.Event]:
    return [e for e in log if e.definition is events.TM_DROPPED]


# --- order and budget --------------------------------------------------------------------------


def test_drain_sends_urgent_then_housekeeping_then_bulk_each_first_in_first_out():
    store, _ = _store()
    for tag, priority in [("b1", B), ("h1", H), ("u1", U), ("b2", B), ("u2", U), ("h2", H)]:
        assert store.put(priority, _packet(tag))
    assert [p[:2] for p in store.drain(BIG)] == [b"u1", b"u2", b"h1", b"h2", b"b1", b"b2"]
    assert len(store) == 0 and store.drain(BIG) == []


def test_drain_stays_within_its_byte_budget_and_sends_whole_packets():
    store, _ = _store()
    for i in range(6):
        store.put(B, _packet(f"b{i}", 10))
    first = store.drain(25)
    assert [p[:2] for p in first] == [b"b0", b"b1"]  # a third would need 30 > 25
    assert all(len(p) == 10 for p in first)
    assert [p[:2] for p in store.drain(30)] == [b"b2", b"b3", b"b4"]  # exactly the budget
    assert store.drain(9) == []  # never a part of a packet
    assert store.queued[B] == 1 and store.queued_bytes[B] == 10


def test_a_waiting_higher_class_packet_is_not_overtaken_by_a_lower_class_one():
    store, _ = _store()
    store.put(U, _packet("u", 100))
    store.put(U, _packet("v", 20))
    store.put(B, _packet("b", 10))
    assert store.head_bytes == 100
    assert store.drain(50) == []  # the BULK packet would fit, but URGENT waits first
    assert [p[:1] for p in store.drain(130)] == [b"u", b"v", b"b"]
    assert store.head_bytes == 0


def test_drain_hands_out_the_packets_that_were_put_without_copying_them():
    store, _ = _store()
    packet = _packet("x", 50)
    store.put(H, packet)
    (sent,) = store.drain(BIG)
    assert sent is packet


# --- drop policy ---------------------------------------------------------------------------------


def test_a_full_class_drops_its_own_oldest_packets_and_counts_them():
    store, _ = _store(urgent=100, housekeeping=100, bulk=30)
    store.put(U, _packet("u"))
    store.put(H, _packet("h"))
    for i in range(3):
        assert store.put(B, _packet(f"b{i}"))
    assert store.put(B, _packet("b3"))  # one 10-byte packet must go: the oldest
    assert store.dropped == {U: 0, H: 0, B: 1}
    assert store.put(B, _packet("b4", 20))  # needs 20 bytes: the two oldest go
    assert store.dropped == {U: 0, H: 0, B: 3}
    assert [p[:2] for p in store.drain(BIG)] == [b"u.", b"h.", b"b3", b"b4"]
    counters = store.counters()
    assert counters["dropped"] == 3 and counters["dropped_bulk"] == 3
    assert counters["put"] == 7 and counters["drained"] == 4 and counters["queued"] == 0


def test_a_packet_larger_than_its_class_is_refused_counted_and_announced():
    store, log = _store(urgent=100, bulk=30)
    store.put(B, _packet("b0", 30))
    assert store.put(B, _packet("huge", 31)) is False
    assert store.refused == {U: 0, H: 0, B: 1} and store.dropped[B] == 0
    assert [p[:2] for p in store.drain(BIG)] == [b"b0"]  # the queue kept what it had
    (event,) = _drops(log)
    assert event.fields["priority"] == "BULK" and event.fields["reason"] == "too_large"


def test_one_tm_dropped_event_per_burst_until_the_class_has_drained_to_half():
    store, log = _store(bulk=100)
    for i in range(30):  # 10 fit, 20 drops: one burst
        store.put(B, _packet(f"{i}"))
    assert store.dropped[B] == 20
    assert len(_drops(log)) == 1
    assert _drops(log)[0].fields["reason"] == "full"
    store.drain(40)  # 60 of 100 bytes left: still more than half full, still the same burst
    for i in range(4):
        store.put(B, _packet(f"again{i}"))
    assert len(_drops(log)) == 1 and store.dropped[B] == 20
    store.put(B, _packet("over"))
    assert len(_drops(log)) == 1 and store.dropped[B] == 21
    store.drain(50)  # 50 of 100 left: recovered, the next drop starts a new burst
    for i in range(6):
        store.put(B, _packet(f"late{i}"))
    assert len(_drops(log)) == 2 and store.dropped[B] == 22
    assert log.count(events.TM_DROPPED) == 2


def test_an_event_listener_that_puts_the_event_back_cannot_recurse_or_loop():
    log = events.EventLog()
    store, _ = _store(urgent=50, housekeeping=100, bulk=20, log=log)
    seen = []
    depth = [0]

    def to_packet(event: events.Event) -> None:
        # What the link service does: every event becomes an URGENT packet.
        seen.append(event.fields.get("priority"))
        assert len(seen) < 10, "the store keeps announcing: a loop"  # fail, don't hang
        assert depth[0] == 0, "an event emitted from inside the listener: recursion"
        for p in Priority:  # the store is consistent when the listener runs
            assert store.queued_bytes[p] <= store.capacity_bytes[p]
        depth[0] += 1
        try:
            store.put(U, _packet(f"ev{len(seen)}", 20))
        finally:
            depth[0] -= 1

    log.subscribe(to_packet)
    store.put(U, _packet("u0", 20))
    store.put(U, _packet("u1", 20))
    store.put(B, _packet("b0", 20))
    store.put(B, _packet("b1", 20))  # BULK drops b0 -> event -> URGENT packet -> URGENT drops
    # One event for BULK; its packet overflowed URGENT: one event for URGENT, whose packet
    # overflowed URGENT again, announced by nobody (URGENT is already in its burst).
    assert seen == ["BULK", "URGENT"]
    assert store.dropped == {U: 2, H: 0, B: 1}
    assert [p[:3] for p in store.drain(BIG)] == [b"ev1", b"ev2", b"b1."]
    # A listener whose packet is always refused (larger than URGENT) ends as well.
    log2 = events.EventLog()
    store2, _ = _store(urgent=10, bulk=10, log=log2)
    calls = []

    def refused_packet(event: events.Event) -> None:
        calls.append(event)
        assert len(calls) < 10, "the store keeps announcing: a loop"
        store2.put(U, _packet("too big for URGENT", 40))

    log2.subscribe(refused_packet)
    store2.put(B, _packet("b", 11))
    assert [e.fields["priority"] for e in _drops(log2)] == ["BULK", "URGENT"]
    assert store2.refused == {U: 2, H: 0, B: 1}  # the listener ran twice, refused twice


# --- bad use -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "capacity, words",
    [
        ({U: 10, H: 10}, "no capacity for BULK"),
        ({U: 10, H: 10, B: 0}, "BULK must be a positive"),
        ({U: 10, H: True, B: 10}, "HOUSEKEEPING must be a positive"),
        ({U: 10, H: 10, B: 10, 7: 10}, "7"),
    ],
)
def test_bad_capacities_are_refused_with_a_specific_error(capacity, words):
    with pytest.raises(errors.ConfigError, match=words):
        DownlinkStore(capacity, events.EventLog())


def test_bad_arguments_are_bugs_and_raise():
    store, _ = _store()
    with pytest.raises(TypeError):
        store.put(U, "text")
    with pytest.raises(ValueError, match="empty"):
        store.put(U, b"")
    with pytest.raises(ValueError):
        store.put(7, b"x")
    with pytest.raises(ValueError):
        store.drain(-1)
    buffer = bytearray(b"abc")
    assert store.put(H, buffer)
    buffer[0] = ord("X")  # the caller reuses its buffer: the queued packet must not change
    (packet,) = store.drain(BIG)
    assert type(packet) is bytes and packet == b"abc"


# --- surviving a restart -------------------------------------------------------------------------


def _saved_store(tmp_path: Path) -> tuple[Path, list[bytes]]:
    store, _ = _store(bulk=40)
    store.put(U, _packet("urgent"))
    store.put(H, _packet("hk"))
    for i in range(5):  # 4 fit: b0 is dropped
        store.put(B, _packet(f"b{i}"))
    store.put(B, _packet("huge", 41))  # refused
    path = tmp_path / "downlink.bin"
    assert store.save(path)
    return path, [_packet(f"b{i}") for i in range(1, 5)]


def test_save_and_load_bring_back_the_pending_bulk_packets_and_their_counters(tmp_path):
    path, pending = _saved_store(tmp_path)
    store, _ = _store(bulk=40)
    store.put(B, _packet("new"))  # queued before the load: newer than the saved ones
    assert store.load(path) == 3  # 4 saved + 1 new > 40 bytes: the oldest saved one goes
    assert store.drain(BIG) == [*pending[1:], _packet("new")]  # no URGENT, no HOUSEKEEPING
    assert store.dropped[B] == 1 + 1 and store.refused[B] == 1  # saved ones plus this one
    counters = store.counters()
    assert counters["restored"] == 4 and counters["files_discarded"] == 0


def test_a_missing_file_loads_nothing_and_is_not_a_fault(tmp_path):
    store, _ = _store()
    assert store.load(tmp_path / "none") == 0
    assert store.counters()["files_discarded"] == 0


def test_every_damaged_or_truncated_saved_file_is_discarded_and_counted(tmp_path):
    path, _ = _saved_store(tmp_path)
    good = path.read_bytes()
    damaged = [good[:n] for n in range(len(good))]  # every truncation
    for i in range(len(good)):  # every single flipped bit position's byte
        flipped = bytearray(good)
        flipped[i] ^= 0x01 << (i % 8)
        damaged.append(bytes(flipped))
    damaged.append(good + b"\x00")  # trailing garbage
    for n, data in enumerate(damaged):
        path.write_bytes(data)
        store, _ = _store(bulk=40)
        assert store.load(path) == 0, n
        assert len(store) == 0 and store.dropped[B] == 0
        assert store.counters()["files_discarded"] == 1


_HEADER = struct.Struct(">4sHHQQI")


def _sealed(body: bytes) -> bytes:
    return body + struct.pack(">I", crc32c(body))


def _saved_file(*packets: bytes, dropped: int = 0, refused: int = 0) -> bytes:
    body = _HEADER.pack(b"FLDL", 1, 0, dropped, refused, len(packets))
    return _sealed(body + b"".join(struct.pack(">I", len(p)) + p for p in packets))


def test_a_well_formed_file_with_wrong_contents_is_discarded(tmp_path):
    """A valid CRC over a bad layout (another version, a count that disagrees, a zero-length
    packet) is discarded too: the CRC is not the only check."""
    header, sealed = _HEADER, _sealed
    cases = [
        sealed(header.pack(b"FLDL", 2, 0, 0, 0, 0)),
        sealed(header.pack(b"XXXX", 1, 0, 0, 0, 0)),
        sealed(header.pack(b"FLDL", 1, 0, 0, 0, 2) + struct.pack(">I", 1) + b"a"),
        sealed(header.pack(b"FLDL", 1, 0, 0, 0, 1) + struct.pack(">I", 0)),
        sealed(header.pack(b"FLDL", 1, 0, 0, 0, 1) + struct.pack(">I", 5) + b"abc"),
    ]
    for data in cases:
        path = tmp_path / "f"
        path.write_bytes(data)
        store, _ = _store()
        assert store.load(path) == 0
        assert store.counters()["files_discarded"] == 1
    path.write_bytes(sealed(header.pack(b"FLDL", 1, 0, 3, 4, 1) + struct.pack(">I", 1) + b"a"))
    store, _ = _store()
    assert store.load(path) == 1 and store.dropped[B] == 3 and store.refused[B] == 4


def test_an_unreadable_or_oversized_file_is_discarded_without_raising(tmp_path):
    store, _ = _store()
    assert store.load(tmp_path) == 0  # a directory: an OSError, counted
    assert store.counters()["files_discarded"] == 1
    # A BULK class of 4 bytes writes at most 28 (header) + 5 * 4 + 4 (CRC) = 52 bytes: a
    # longer file is not this store's and is discarded, even well formed (not read whole).
    path = tmp_path / "f"
    path.write_bytes(_saved_file(b"p" * 17))  # 53 bytes
    small, _ = _store(bulk=4)
    assert small.load(path) == 0
    assert small.counters()["files_discarded"] == 1 and small.refused[B] == 0
    path.write_bytes(_saved_file(b"p" * 16))  # 52 bytes: read, its packet refused (> 4 bytes)
    small, _ = _store(bulk=4)
    assert small.load(path) == 0
    assert small.counters()["files_discarded"] == 0 and small.refused[B] == 1


def test_a_saved_packet_larger_than_the_class_now_is_refused_at_load(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(_saved_file(b"a" * 5, b"b" * 12, b"c" * 5, dropped=2, refused=3))
    store, log = _store(bulk=10)
    assert store.load(path) == 2
    assert store.drain(BIG) == [b"a" * 5, b"c" * 5]
    assert store.refused[B] == 3 + 1 and store.dropped[B] == 2
    assert store.counters()["restored"] == 3  # what came from the file, refused one included
    assert [e.fields["reason"] for e in _drops(log)] == ["too_large"]


def test_a_failed_save_is_counted_not_raised(tmp_path):
    store, _ = _store()
    store.put(B, b"x")
    assert store.save(tmp_path / "no such directory" / "f") is False
    assert store.counters()["save_failures"] == 1


# --- conservation under any sequence of operations ----------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(list(Priority)), st.integers(6, 70)),
        st.tuples(st.just("drain"), st.integers(0, 150), st.just(0)),
    ),
    max_size=60,
)


@given(
    capacities=st.tuples(st.integers(1, 200), st.integers(1, 200), st.integers(1, 200)),
    ops=_OPS,
    listener=st.booleans(),
)
def test_packets_are_conserved_and_capacities_hold_for_any_sequence(capacities, ops, listener):
    log = events.EventLog()
    store = DownlinkStore(dict(zip(Priority, capacities, strict=True)), log)
    put: list[bytes] = []

    def put_one(priority: Priority, size: int) -> None:
        packet = struct.pack(">BI", priority, len(put)).ljust(size, b"\xaa")
        put.append(packet)
        store.put(priority, packet)

    def event_to_packet(event: events.Event) -> None:
        assert log.count(events.TM_DROPPED) <= len(Priority) * (len(ops) + 1), "a loop"
        put_one(U, 12)

    if listener:  # every event becomes an URGENT packet, as in the link service
        log.subscribe(event_to_packet)
    drained: list[bytes] = []
    for op, a, b in ops:
        if op == "put":
            put_one(a, b)
        else:
            batch = store.drain(a)
            assert sum(map(len, batch)) <= a
            assert [p[0] for p in batch] == sorted(p[0] for p in batch)  # by priority
            drained += batch
        for p in Priority:
            assert 0 <= store.queued_bytes[p] <= capacities[p]
    drained += store.drain(BIG)
    assert len(set(drained)) == len(drained)  # each at most once (packets are unique)
    assert set(drained) <= set(put)
    for p in Priority:
        serials = [struct.unpack_from(">I", d, 1)[0] for d in drained if d[0] == p]
        assert serials == sorted(serials)  # first in, first out within a class
    counters = store.counters()
    assert counters["put"] == len(put)
    assert len(put) == len(drained) + counters["dropped"] + counters["refused"]
    assert counters["drained"] == len(drained) and counters["queued"] == 0
    assert log.count(events.TM_DROPPED) <= len(put)
