"""Critical data store: round trips, corruption of either or both copies, complements, torn
writes (simulated and by SIGKILL of a committing process), temp file clean-up, write failures."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight import atomic, cds, errors, events
from flight.cds import CdsUsageError, CriticalDataStore, ResetEntry
from flight.crc import crc32c

MASK = (1 << 64) - 1


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _store(directory: Path, **kw) -> CriticalDataStore:
    kw.setdefault("wall_clock", Clock())
    return CriticalDataStore(directory, **kw)


def _two_versions(directory: Path) -> tuple[cds.CdsRecord, cds.CdsRecord]:
    """Slot 0 holds version A (counter n=1), slot 1 the newer version B (n=2)."""
    store = _store(directory)
    store.begin_boot("power-on")  # sequence 1 -> slot 0
    store.add("n")
    store.set_state("fsm", {"p0": "NOMINAL"})
    store.log_reset("heartbeat miss", "p0", "restart")
    store.commit()  # sequence 2 -> slot 1
    a = CriticalDataStore(directory).record
    store.add("n")
    store.set_state("cursor", [3, 4096])
    store.commit()  # sequence 3 -> slot 0
    b = store.record
    # The commits left B in slot 0 and A in slot 1; put them the other way round so that the
    # newest copy is in slot 1 (either order must work, see test_stale_sequence...).
    blob_a = cds.encode_slot(a, a.sequence, a.written_at)
    blob_b = cds.encode_slot(b, b.sequence, b.written_at)
    (directory / "cds.0").write_bytes(blob_a)
    (directory / "cds.1").write_bytes(blob_b)
    return a, b


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> tuple[bytes, bytes, cds.CdsRecord, cds.CdsRecord]:
    d = tmp_path_factory.mktemp("versions")
    a, b = _two_versions(d)
    return (d / "cds.0").read_bytes(), (d / "cds.1").read_bytes(), a, b


def _load(blob0: bytes | None, blob1: bytes | None) -> CriticalDataStore:
    with tempfile.TemporaryDirectory() as d:
        for slot, blob in enumerate((blob0, blob1)):
            if blob is not None:
                Path(d, f"cds.{slot}").write_bytes(blob)
        return CriticalDataStore(d)


def _reseal(blob: bytes, mutate) -> bytes:
    """Decode a slot's payload, let ``mutate`` edit it, re-encode with a correct CRC."""
    magic, version, flags, seq, _length, _crc = cds.HEADER.unpack_from(blob)
    data = msgpack.unpackb(blob[cds.HEADER.size :], raw=False)
    mutate(data)
    payload = msgpack.packb(data, use_bin_type=True)
    head = cds.HEADER.pack(magic, version, flags, seq, len(payload), 0)[:20]
    return head + crc32c(payload, crc32c(head)).to_bytes(4, "little") + payload


# --- normal use -------------------------------------------------------------------------------


def test_fresh_store_is_formatted_and_round_trips(tmp_path):
    store = _store(tmp_path)
    assert store.last_load.formatted and store.record == cds.CdsRecord()
    assert store.log.count(events.CDS_FORMATTED) == 1
    store.add("votes_corrected", 5)
    store.add("votes_corrected")
    store.set_state("fsm", {"p0": "NOMINAL", "restarts": [1.5, 2.5], "ok": True, "x": None})
    store.log_reset("vote alarm", "p1", "restart", now=123.5)
    assert store.commit()
    again = CriticalDataStore(tmp_path)
    assert again.record == store.record
    assert again.counter("votes_corrected") == 6 and again.counter("absent") == 0
    assert again.state("fsm")["restarts"] == [1.5, 2.5]
    assert again.record.reset_log == [ResetEntry("vote alarm", 123.5, "p1", "restart")]
    assert again.last_load.slots == ("ok", "missing") and not again.log.counts()


def test_boot_count_increments_across_instances(tmp_path):
    for boot in range(1, 5):
        store = _store(tmp_path)
        assert store.begin_boot("watchdog" if boot > 1 else "power-on") == boot
    record = CriticalDataStore(tmp_path).record
    assert record.boot_count == 4 and record.sequence == 4
    assert [e.action for e in record.reset_log] == ["boot"] * 4
    assert record.reset_log[0].reason == "power-on" and record.reset_log[-1].reason == "watchdog"


def test_commits_alternate_slots_and_keep_the_previous_copy(tmp_path):
    store = _store(tmp_path)
    for i in range(1, 6):
        store.add("n")
        store.commit()
        newest = CriticalDataStore(tmp_path)
        assert newest.record.sequence == i and newest.last_load.source == (i - 1) % 2
    assert CriticalDataStore(tmp_path).last_load.slots == ("ok", "ok")


def test_reset_log_is_a_bounded_ring(tmp_path):
    store = _store(tmp_path, max_reset_log=4)
    for i in range(10):
        store.log_reset(f"r{i}", None if i % 2 else f"p{i}", "restart", now=float(i))
    store.log_reset("x" * 1000, "p" * 1000, "a" * 1000)  # cut, not rejected
    store.commit()
    log = CriticalDataStore(tmp_path, max_reset_log=4).record.reset_log
    assert [e.reason for e in log[:3]] == ["r7", "r8", "r9"]
    assert len(log[3].reason) == len(log[3].partition) == len(log[3].action) == cds.MAX_TEXT
    # A smaller ring (a new software version) keeps the newest entries of a larger one.
    small = CriticalDataStore(tmp_path, max_reset_log=2).record.reset_log
    assert [e.reason for e in small] == ["r9", "x" * cds.MAX_TEXT]


def test_counters_are_stored_with_their_complement(tmp_path):
    store = _store(tmp_path)
    store.add("restarts", 3)
    store.add("big", MASK - 1)
    store.add("big", 10)  # saturates instead of wrapping or raising
    store.begin_boot("power-on")
    data = msgpack.unpackb((tmp_path / "cds.0").read_bytes()[cds.HEADER.size :])
    assert data["counters"]["restarts"] == [3, 3 ^ MASK]
    assert data["counters"]["big"] == [MASK, 0]
    assert data["boot_count"] == [1, 1 ^ MASK]


def test_misuse_raises(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(CdsUsageError):
        store.add("n", -1)
    with pytest.raises(CdsUsageError):
        store.add("n", 1.5)  # type: ignore[arg-type]
    with pytest.raises(CdsUsageError):
        store.set_state("x", object())
    with pytest.raises(CdsUsageError):
        store.set_state("x", {1: "non-str key"})
    with pytest.raises(CdsUsageError):
        store.set_state("x", b"bytes")
    store.set_state("x", "y" * (cds.MAX_PAYLOAD + 1))
    with pytest.raises(CdsUsageError):
        store.commit()
    with pytest.raises(errors.ConfigError):
        CriticalDataStore(tmp_path / "nope")
    assert isinstance(CdsUsageError("x"), errors.FlightError)


def test_record_is_a_copy(tmp_path):
    store = _store(tmp_path)
    store.set_state("fsm", {"p0": "NOMINAL"})
    store.record.last_good_state["fsm"]["p0"] = "changed"
    store.state("fsm")["p0"] = "changed"
    assert store.state("fsm") == {"p0": "NOMINAL"}


# --- corruption -------------------------------------------------------------------------------


@given(data=st.data(), slot=st.sampled_from([0, 1]))
def test_any_single_byte_corruption_or_truncation_of_one_slot_falls_back(versions, data, slot):
    blob0, blob1, a, b = versions
    blobs = [blob0, blob1]
    victim = blobs[slot]
    how = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if how == "flip":
        pos = data.draw(st.integers(0, len(victim) - 1))
        bad = bytes([victim[pos] ^ data.draw(st.integers(1, 255))])
        blobs[slot] = victim[:pos] + bad + victim[pos + 1 :]
    elif how == "truncate":
        blobs[slot] = victim[: data.draw(st.integers(0, len(victim) - 1))]
    else:
        blobs[slot] = victim + data.draw(st.binary(min_size=1, max_size=8))
    store = _load(*blobs)
    assert store.record == (a if slot == 1 else b)
    assert store.last_load.source == 1 - slot
    assert store.last_load.slots[slot].startswith("corrupt")
    assert store.log.count(events.CDS_COPY_CORRUPT) == 1
    assert store.log.count(events.CDS_RECOVERED_FROM_BACKUP) == 1


def test_missing_slot_is_not_corruption(versions):
    _blob0, blob1, _a, b = versions
    store = _load(None, blob1)
    assert store.record == b and not store.log.counts()


def test_corrupt_slot_is_rewritten_by_the_next_commit(tmp_path, versions):
    blob0, blob1, _a, _b = versions
    (tmp_path / "cds.0").write_bytes(blob0)
    (tmp_path / "cds.1").write_bytes(blob1[:-1])  # newest torn
    store = _store(tmp_path)
    store.add("n", 10)
    assert store.commit()
    again = CriticalDataStore(tmp_path)
    assert again.last_load.slots == ("ok", "ok") and again.last_load.source == 1
    assert again.counter("n") == 11  # A had n=1


# Anything msgpack can carry: JSON-like values, bytes, and maps keyed by text or bytes. (One
# recursive strategy: nesting a recursive one in another's base made hypothesis warn.)
hostile_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(st.text(max_size=12) | st.binary(max_size=4), kids, max_size=6)
    ),
    max_leaves=30,
)


def _sealed(payload: bytes, seq: int = 9) -> bytes:
    head = cds.HEADER.pack(cds.MAGIC, cds.VERSION, 0, seq, len(payload), 0)[:20]
    return head + crc32c(payload, crc32c(head)).to_bytes(4, "little") + payload


@given(
    blob0=st.binary(max_size=64) | hostile_value.map(lambda v: _sealed(msgpack.packb(v))),
    blob1=st.binary(max_size=64)
    | st.dictionaries(
        st.sampled_from(["boot_count", "counters", "reset_log", "state", "written_at"]),
        hostile_value,
    ).map(lambda v: _sealed(msgpack.packb(v))),
)
def test_both_slots_garbage_gives_a_fresh_store_never_an_exception(blob0, blob1):
    store = _load(blob0, blob1)
    if store.last_load.formatted:
        assert store.record == cds.CdsRecord()
        assert store.log.count(events.CDS_FORMATTED) == 1
    else:  # a hostile payload that happens to satisfy the schema is a valid record
        assert store.record.sequence == 9


@given(data=st.data())
def test_both_slots_corrupted_formats(versions, data):
    blob0, blob1, _a, _b = versions
    pos0 = data.draw(st.integers(0, len(blob0) - 1))
    pos1 = data.draw(st.integers(0, len(blob1) - 1))
    store = _load(blob0[:pos0] + bytes([blob0[pos0] ^ 0x40]) + blob0[pos0 + 1 :], blob1[:pos1])
    assert store.last_load.formatted and store.record == cds.CdsRecord()
    assert store.log.count(events.CDS_FORMATTED) == 1
    assert store.log.count(events.CDS_COPY_CORRUPT) == 2
    assert store.begin_boot("power-on") == 1  # and the store is usable again


def test_oversized_or_sparse_files_are_rejected_before_reading(tmp_path, versions):
    _blob0, blob1, _a, b = versions
    with open(tmp_path / "cds.0", "wb") as f:
        f.truncate(1 << 40)  # sparse 1 TiB: must not be read
    (tmp_path / "cds.1").write_bytes(blob1)
    store = CriticalDataStore(tmp_path)
    assert store.record == b and "out of bounds" in store.last_load.slots[0]
    lying = bytearray(blob1)
    lying[16:20] = (cds.MAX_PAYLOAD + 1).to_bytes(4, "little")
    assert _load(bytes(lying), None).last_load.formatted


def test_counter_complement_mismatch_rejects_the_slot(versions):
    blob0, blob1, a, _b = versions

    def break_complement(data):
        value, complement = data["counters"]["n"]
        data["counters"]["n"] = [value + 1, complement]

    store = _load(blob0, _reseal(blob1, break_complement))
    assert store.record == a
    assert store.log.count(events.CDS_COUNTER_COMPLEMENT_MISMATCH) == 1
    assert "complement" in store.last_load.slots[1]

    def break_boot(data):
        data["boot_count"][1] ^= 1 << 17

    store = _load(_reseal(blob0, break_boot), blob1)
    assert store.log.count(events.CDS_COUNTER_COMPLEMENT_MISMATCH) == 1
    assert store.last_load.source == 1


def test_reseal_without_change_is_valid(versions):
    """The complement test above would pass vacuously if _reseal itself broke the slot."""
    blob0, _blob1, a, _b = versions
    assert _load(_reseal(blob0, lambda d: None), None).record == a


def test_stale_sequence_with_valid_crc_loses_to_newer(versions):
    blob0, blob1, _a, b = versions
    assert _load(blob0, blob1).record == b
    assert _load(blob1, blob0).record == b  # slot order does not matter, sequence does


# --- torn writes and crashes ------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["empty", "zeros", "half", "garbage"])
def test_torn_newest_slot_uses_the_previous_copy(tmp_path, versions, damage):
    """As if power was lost after the rename reached the disk but the data did not."""
    blob0, blob1, a, _b = versions
    torn = {
        "empty": b"",
        "zeros": bytes(len(blob1)),
        "half": blob1[: len(blob1) // 2],
        "garbage": random.Random(1).randbytes(len(blob1)),
    }[damage]
    (tmp_path / "cds.0").write_bytes(blob0)
    (tmp_path / "cds.1").write_bytes(torn)
    assert CriticalDataStore(tmp_path).record == a


class _Killed(BaseException):
    """Stands in for the process dying at one point of a commit."""


@pytest.mark.parametrize("step", ["write", "fsync", "replace", "dir-fsync"])
def test_crash_at_each_step_of_a_commit(tmp_path, monkeypatch, step):
    store = _store(tmp_path)
    store.add("n")
    store.commit()
    store.add("n")
    store.commit()  # slots: seq 1 (n=1), seq 2 (n=2)
    store.add("n")
    real = {"write": os.write, "fsync": os.fsync, "replace": os.replace}
    fsyncs = []

    def dying(name):
        def fn(*args):
            if name == "fsync":
                fsyncs.append(args)
                if step == "fsync" or (step == "dir-fsync" and len(fsyncs) == 2):
                    raise _Killed
                return real["fsync"](*args)
            if step == name:
                if name == "write":
                    real["write"](args[0], bytes(args[1])[:7])  # a partial write, then death
                raise _Killed
            return real[name](*args)

        return fn

    for name in real:
        monkeypatch.setattr(atomic.os, name, dying(name))
    with pytest.raises(_Killed):
        store.commit()
    monkeypatch.undo()
    after = CriticalDataStore(tmp_path)
    # Before the rename the old copy (n=2) wins; after it, the new one (n=3) is complete.
    assert after.counter("n") == (3 if step == "dir-fsync" else 2)
    leftover = sorted(p.name for p in tmp_path.iterdir())
    assert ("cds.0.tmp" in leftover) == (step != "dir-fsync")
    after.add("n")
    assert after.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cds.0", "cds.1"]


def test_leftover_temp_files_do_not_confuse_loading_and_are_cleaned(tmp_path, versions):
    blob0, blob1, _a, b = versions
    (tmp_path / "cds.0").write_bytes(blob0)
    (tmp_path / "cds.1").write_bytes(blob1)
    (tmp_path / "cds.0.tmp").write_bytes(blob1[:10])  # torn temp
    # A complete temp with a higher sequence was never renamed: it was never committed.
    (tmp_path / "cds.1.tmp").write_bytes(cds.encode_slot(b, 99, 0.0))
    store = CriticalDataStore(tmp_path)
    assert store.record == b and not store.log.counts()
    store.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cds.0", "cds.1"]


def test_write_failure_is_an_event_and_keeps_the_previous_copy(tmp_path, monkeypatch):
    store = _store(tmp_path)
    store.add("n")
    assert store.commit()

    def eio(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(cds.os, "fsync", eio)
    store.add("n")
    assert store.commit() is False
    assert store.log.count(events.CDS_WRITE_FAILED) == 1
    assert store.counter("n") == 2  # kept in memory
    monkeypatch.undo()
    assert CriticalDataStore(tmp_path).counter("n") == 1
    assert store.commit()
    assert CriticalDataStore(tmp_path).counter("n") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cds.0", "cds.1"]


_CHILD = """
import sys
from flight.cds import CriticalDataStore
store = CriticalDataStore(sys.argv[1])
while True:
    value = store.add("n")
    store.set_state("last", value)
    if not store.commit():
        sys.exit(3)
    sys.stdout.write(f"{value}\\n")
    sys.stdout.flush()
"""


def test_sigkill_mid_commit_loop_always_leaves_a_loadable_committed_value(tmp_path):
    """A child commits in a tight loop and reports each value after commit() returns; the
    parent SIGKILLs it at random moments. The CDS must load, hold the last reported value or
    the one being written, and the next child must continue from it."""
    rng = random.Random(0x5EED)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    loaded = 0
    mid_commit = 0
    for _ in range(15):  # a count, not a time budget: a loaded machine only makes it slower
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # the child is in its loop
        assert int(first) == loaded + 1, "the child must continue from the loaded value"
        time.sleep(rng.uniform(0, 0.02))  # a random moment of the loop, not a margin
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
        reported = [int(line) for line in [first, *child.stdout.read().splitlines()]]
        child.stdout.close()
        store = CriticalDataStore(tmp_path)
        value = store.counter("n")
        assert not store.last_load.formatted
        assert value in (reported[-1], reported[-1] + 1), (reported[-1], store.last_load)
        assert store.state("last") == value
        # Killed between commit's start and its report: a temp file left, or a value ahead.
        left = any(p.suffix == ".tmp" for p in tmp_path.iterdir())
        mid_commit += left or value != reported[-1]
        loaded = value
    assert mid_commit >= 1, "no kill landed inside a commit; the test exercised nothing"


# --- one writer per store -----------------------------------------------------------------------
_CLAIM = (
    "import sys; from flight.cds import CriticalDataStore; CriticalDataStore(sys.argv[1]).claim()"
)


def _claim_in_child(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _CLAIM, str(directory)], capture_output=True, text=True, timeout=60
    )


def test_a_second_writer_process_is_refused_until_the_first_lets_go(tmp_path):
    owner = _store(tmp_path)
    owner.claim()
    also_here = _store(tmp_path)
    also_here.claim()  # the same process: shares the lock (and must not drop it on release)
    also_here.release()
    refused = _claim_in_child(tmp_path)
    assert refused.returncode != 0
    assert "CdsBusyError" in refused.stderr and f"pid {os.getpid()}" in refused.stderr
    assert _store(tmp_path).record.boot_count == 0  # readers are never refused
    owner.release()
    owner.release()  # idempotent
    assert _claim_in_child(tmp_path).returncode == 0


def test_the_lock_dies_with_its_owner_and_is_not_inherited_by_forked_workers(tmp_path):
    # A child that claims the store, forks a long-lived grandchild (like a partition worker),
    # then is SIGKILLed: the grandchild must not keep the store locked. Both wait for the end
    # of their stdin (the test closes it, or dies), not for a time that a slow machine outlasts.
    script = (
        "import os, sys\n"
        "from flight.cds import CriticalDataStore\n"
        "CriticalDataStore(sys.argv[1]).claim()\n"
        "worker = os.fork()\n"
        "if worker == 0:\n"
        "    sys.stdin.read(); os._exit(0)\n"
        "print(worker, flush=True); sys.stdin.read()\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = None
    try:
        worker = int(owner.stdout.readline())
        assert "CdsBusyError" in _claim_in_child(tmp_path).stderr
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        assert _claim_in_child(tmp_path).returncode == 0  # the orphaned worker holds nothing
        os.kill(worker, 0)  # ... and it was still there
    finally:
        owner.stdin.close()
        owner.kill()
        owner.wait(timeout=10)
        if worker:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
