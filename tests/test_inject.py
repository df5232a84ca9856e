"""Fault injection: bit numbering, fault models, records, undo, sites, process memory."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight import errors, inject
from flight.inject import (
    Injection,
    MultiBitUpset,
    SingleBitUpset,
    StuckAt,
    apply,
    as_bytes,
    flip_bits,
    flip_process_memory,
    read_process_memory,
    undo,
)
from flight.memory import ProtectedRegion


def _set_bits(buf: np.ndarray | bytearray) -> set[int]:
    """Bit offsets of the 1 bits, in flight.inject's numbering (LSB first)."""
    bits = np.unpackbits(as_bytes(buf), bitorder="little")
    return set(np.flatnonzero(bits).tolist())


# --- flip_bits and numbering ---------------------------------------------------------------------
def test_flip_bits_numbering_is_lsb_first():
    buf = np.zeros(4, dtype=np.uint8)
    flip_bits(buf, [0, 9, 31])
    assert buf.tolist() == [0x01, 0x02, 0x00, 0x80]
    flip_bits(buf, 9)  # a single int works, and flipping again restores
    assert buf.tolist() == [0x01, 0x00, 0x00, 0x80]


def test_flip_bits_duplicate_offsets_flip_twice_and_bounds_are_checked_first():
    buf = bytearray(2)
    flip_bits(buf, [3, 3, 4])
    assert buf == bytearray([0x10, 0])
    with pytest.raises(ValueError):
        flip_bits(buf, [0, 16])
    assert buf == bytearray([0x10, 0])  # nothing written by the rejected call
    flip_bits(buf, [])
    assert buf == bytearray([0x10, 0])


@pytest.mark.skipif(sys.byteorder != "little", reason="bit offsets map to word bits on LE")
def test_bit_offsets_are_word_bits_on_little_endian():
    x = np.array([1.0, 1.0], dtype=np.float32)
    flip_bits(x, 32 + 31)  # sign bit of element 1
    assert x.tolist() == [1.0, -1.0]


# --- fault models ------------------------------------------------------------------------------
def test_single_bit_upset_changes_exactly_the_reported_bit():
    buf = np.zeros(64, dtype=np.uint8)
    rec = apply(SingleBitUpset(), buf, np.random.default_rng(5), site="w[0]")
    assert isinstance(rec, Injection) and rec.site == "w[0]"
    assert _set_bits(buf) == set(rec.bits) == set(rec.flipped)
    (bit,) = rec.bits
    assert rec.byte_offset == bit // 8 and rec.old == b"\x00" and rec.new[0] == 1 << (bit % 8)
    assert rec.changed and rec.fault == SingleBitUpset(bit=bit)


def test_fixed_location_needs_no_rng_and_random_location_needs_one():
    buf = bytearray(4)
    rec = apply(SingleBitUpset(bit=17), buf)
    assert rec.bits == (17,) and buf == bytearray([0, 0, 2, 0])
    with pytest.raises(ValueError, match="rng"):
        apply(SingleBitUpset(), buf)
    with pytest.raises(ValueError, match="outside"):
        apply(SingleBitUpset(bit=32), buf)
    with pytest.raises(ValueError):
        SingleBitUpset(bit=-1)
    with pytest.raises(ValueError):
        apply(SingleBitUpset(), bytearray(), 0)


def test_a_seed_makes_injections_reproducible_and_records_replay():
    a, b = np.zeros(1000, np.uint8), np.zeros(1000, np.uint8)
    rec_a = apply(MultiBitUpset(3), a, np.random.default_rng(42))
    rec_b = apply(MultiBitUpset(3), b, 42)
    assert rec_a == rec_b and np.array_equal(a, b)
    c = np.zeros(1000, np.uint8)
    replay = apply(rec_a.fault, c)  # resolved location: no rng needed
    assert replay == rec_a and np.array_equal(a, c)


@pytest.mark.parametrize("k,window", [(2, 1), (3, 4), (4, 4), (8, 8), (2, 2)])
def test_multi_bit_clusters_are_adjacent_and_inside_one_aligned_window(k, window):
    rng = np.random.default_rng(k * 100 + window)
    for size in (1 * window, 3 * window + 1, 257):
        if 8 * size < k:
            continue
        for _ in range(200):
            buf = np.zeros(size, dtype=np.uint8)
            rec = apply(MultiBitUpset(k, window), buf, rng)
            bits = rec.bits
            assert len(bits) == k and list(bits) == list(range(bits[0], bits[0] + k))
            assert bits[0] // (8 * window) == bits[-1] // (8 * window)
            assert bits[-1] < 8 * size
            assert _set_bits(buf) == set(bits) == set(rec.flipped)
            assert (
                rec.byte_offset == bits[0] // 8 and len(rec.old) == bits[-1] // 8 - bits[0] // 8 + 1
            )


def test_multi_bit_cluster_start_is_uniform_including_the_partial_last_window():
    # 5 bytes, 4-byte windows, k=2: 31 starts in the full window + 7 in the 1-byte tail.
    rng = np.random.default_rng(7)
    counts: dict[int, int] = {}
    draws = 38 * 200
    for _ in range(draws):
        rec = apply(MultiBitUpset(2, 4), bytearray(5), rng)
        counts[rec.bits[0]] = counts.get(rec.bits[0], 0) + 1
    assert set(counts) == set(range(31)) | set(range(32, 39))
    expected, sigma = 200, (200 * (1 - 1 / 38)) ** 0.5
    assert all(abs(c - expected) < 5 * sigma for c in counts.values())


def test_multi_bit_validation():
    with pytest.raises(ValueError):
        MultiBitUpset(1)
    with pytest.raises(ValueError):
        MultiBitUpset(9, window=1)
    with pytest.raises(ValueError, match="crosses"):
        MultiBitUpset(2, window=1, bit=7)
    with pytest.raises(ValueError):
        MultiBitUpset(2, window=0)
    assert MultiBitUpset(2, window=1, bit=6).bit == 6
    with pytest.raises(ValueError):
        apply(MultiBitUpset(2, window=4), bytearray(0), 0)


def test_stuck_at_sets_the_bit_once_and_records_no_change_when_already_set():
    buf = bytearray([0b0000_0000, 0b1111_1111])
    rec = apply(StuckAt(1, bit=3), buf)
    assert buf[0] == 0b1000 and rec.changed and rec.flipped == (3,)
    again = apply(StuckAt(1, bit=3), buf)
    assert not again.changed and again.flipped == () and buf[0] == 0b1000
    rec0 = apply(StuckAt(0, bit=8 + 7), buf)
    assert buf[1] == 0b0111_1111 and rec0.old == b"\xff" and rec0.new == b"\x7f"
    # persistence is the caller's: a write clears it, re-applying forces it again
    buf[0] = 0
    apply(StuckAt(1, bit=3), buf)
    assert buf[0] == 0b1000
    with pytest.raises(ValueError):
        StuckAt(2)
    with pytest.raises(ValueError):
        StuckAt(True)  # type: ignore[arg-type]


def test_unknown_fault_type_is_rejected():
    with pytest.raises(TypeError):
        apply("flip", bytearray(4), 0)  # type: ignore[arg-type]


# --- undo --------------------------------------------------------------------------------------
def test_undo_restores_and_is_idempotent():
    rng = np.random.default_rng(1)
    golden = rng.integers(0, 256, 512, dtype=np.uint8)
    buf = golden.copy()
    recs = [apply(f, buf, rng) for f in (SingleBitUpset(), MultiBitUpset(4), StuckAt(1))]
    for rec in reversed(recs):
        undo(rec, buf)
    assert np.array_equal(buf, golden)
    assert all(undo(rec, buf) == 0 for rec in recs)  # already restored: nothing to do
    assert np.array_equal(buf, golden)


def test_undo_touches_only_the_injected_bits_and_overlaps_undo_in_reverse():
    buf = bytearray(1)
    first = apply(SingleBitUpset(bit=0), buf)
    buf[0] |= 0b1000_0000  # some other legitimate write to the same byte
    assert undo(first, buf) == 1
    assert buf[0] == 0b1000_0000
    buf = bytearray(2)
    a = apply(MultiBitUpset(4, window=2, bit=6), buf)
    b = apply(MultiBitUpset(2, window=2, bit=8), buf)
    undo(b, buf)
    undo(a, buf)
    assert buf == bytearray(2)


def test_undo_outside_the_site_is_rejected():
    rec = apply(SingleBitUpset(bit=100), bytearray(16))
    with pytest.raises(ValueError):
        undo(rec, bytearray(4))


def test_injection_record_serialises():
    rec = apply(MultiBitUpset(2, bit=4), bytearray(4), site="crc[1]")
    assert rec.to_dict() == {
        "site": "crc[1]",
        "fault": "MultiBitUpset",
        "byte_offset": 0,
        "bits": [4, 5],
        "old": "00",
        "new": "30",
        "applied": True,
    }
    assert rec.target == "crc[1]"


def test_plan_draws_without_writing_and_the_owner_replays_it():
    buf = np.arange(64, dtype=np.uint8)
    planned = inject.plan(MultiBitUpset(3), buf, np.random.default_rng(9), site="a")
    assert not planned.applied and np.array_equal(buf, np.arange(64, dtype=np.uint8))
    assert (
        planned.old == buf[planned.byte_offset : planned.byte_offset + len(planned.old)].tobytes()
    )
    replayed = apply(planned.fault, buf, site="a")
    assert replayed.applied and replayed == dataclasses.replace(planned, applied=True)
    same_draw = apply(MultiBitUpset(3), np.arange(64, dtype=np.uint8), 9, site="a")
    assert same_draw == replayed


faults = st.one_of(
    st.builds(SingleBitUpset),
    st.builds(MultiBitUpset, k=st.integers(2, 8), window=st.sampled_from([1, 2, 4, 8])),
    st.builds(StuckAt, value=st.integers(0, 1)),
)


@given(
    data=st.binary(min_size=1, max_size=200),
    fault_list=st.lists(faults, min_size=1, max_size=6),
    seed=st.integers(0, 2**32 - 1),
    as_array=st.booleans(),
)
def test_apply_undo_round_trip_on_arbitrary_buffers(data, fault_list, seed, as_array):
    buf: np.ndarray | bytearray = (
        np.frombuffer(data, np.uint8).copy() if as_array else bytearray(data)
    )
    rng = np.random.default_rng(seed)
    records = []
    for fault in fault_list:
        before = bytes(buf)
        rec = apply(fault, buf, rng)
        diff = _set_bits(np.frombuffer(before, np.uint8) ^ as_bytes(buf))
        assert diff == set(rec.flipped) <= set(rec.bits)
        if not isinstance(fault, StuckAt):
            assert diff == set(rec.bits)  # a flip always changes every bit it names
        records.append(rec)
    for rec in reversed(records):
        undo(rec, buf)
    assert bytes(buf) == data


# --- sites -------------------------------------------------------------------------------------
def test_sites_weight_copy_crc_table_activation_and_plain_buffers():
    region = ProtectedRegion("w", np.arange(4096, dtype=np.float32), block_size=1024)
    rng = np.random.default_rng(3)
    rec = apply(SingleBitUpset(), region.raw(1), rng, site="w[1]")
    report = region.verify()
    assert report.errors == 1 and report.bad_copies == [0, 1, 0]
    undo(rec, region.raw(1))
    assert region.verify().clean
    apply(SingleBitUpset(), region.crc_table(2), rng)
    repaired = region.repair()
    assert repaired.table_repaired == 1 and region.verify().clean

    activation = np.ones((2, 3, 4), dtype=np.float32)  # multi-dimensional, float
    rec = apply(MultiBitUpset(2), activation, rng)
    assert np.count_nonzero(activation != 1.0) == 1
    undo(rec, activation)
    assert (activation == 1.0).all()
    apply(SingleBitUpset(bit=0), memoryview(bytearray(1)))


def test_undo_after_the_scrubber_repaired_is_a_no_op():
    region = ProtectedRegion("w", np.arange(1024, dtype=np.float32), block_size=256)
    rec = apply(StuckAt(1, bit=8 * 100 + 5), region.raw(0))
    if not rec.changed:  # pragma: no cover - the golden bit happened to be 1 already
        rec = apply(StuckAt(0, bit=8 * 100 + 5), region.raw(0))
    assert region.repair().repaired == 1
    assert undo(rec, region.raw(0)) == 0
    assert region.verify().clean


def test_bad_sites_are_refused_rather_than_silently_copied():
    readonly = np.zeros(8, np.uint8)
    readonly.flags.writeable = False
    with pytest.raises(errors.ReadOnlyBufferError):
        apply(SingleBitUpset(bit=0), readonly)
    with pytest.raises(errors.ReadOnlyBufferError):
        apply(SingleBitUpset(bit=0), b"\x00\x00")
    with pytest.raises(errors.NotContiguousError):
        apply(SingleBitUpset(bit=0), np.zeros(16, np.uint8)[::2])
    with pytest.raises(errors.NotContiguousError):
        as_bytes(memoryview(bytearray(16))[::2])
    with pytest.raises(errors.BufferTypeError):
        apply(SingleBitUpset(bit=0), [0, 0])  # type: ignore[arg-type]


# --- process memory ------------------------------------------------------------------------------
_CHILD = textwrap.dedent(
    """
    import ctypes, sys
    data = bytearray(b"\\x00" * 16)
    address = ctypes.addressof((ctypes.c_char * len(data)).from_buffer(data))
    print(address, flush=True)
    sys.stdin.readline()
    print(data.hex(), flush=True)
    """
)


def test_flip_process_memory_in_a_child_process():
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        address = int(child.stdout.readline())
        try:
            rec = flip_process_memory(child.pid, address + 5, 3)
        except PermissionError as exc:
            pytest.skip(f"/proc/PID/mem write not permitted here: {exc}")
        assert rec.old == b"\x00" and rec.new == b"\x08" and rec.byte_offset == address + 5
        assert rec.bits == (8 * (address + 5) + 3,)
        assert read_process_memory(child.pid, address, 16) == bytes(5) + b"\x08" + bytes(10)
        child.stdin.write("\n")
        child.stdin.flush()
        reported = bytes.fromhex(child.stdout.readline().strip())
        assert reported == bytes(5) + b"\x08" + bytes(10)
    finally:
        child.kill()
        child.wait(timeout=10)


def test_process_memory_errors():
    with pytest.raises(ValueError):
        flip_process_memory(1, 0, 8)
    if not Path("/proc/self/mem").exists():
        pytest.skip("no /proc")
    with pytest.raises(OSError):
        read_process_memory(2**22 + 12345, 0, 1)  # no such process (pid beyond pid_max)
    with pytest.raises(OSError):
        flip_process_memory(0x7FFFFFF0, 0x10, 0)  # no such process either


# --- activations through the executor's hooks -------------------------------------------------
def test_activation_upset_through_an_after_hook_changes_the_output():
    from flight import model

    m = model.load(Path(__file__).parents[1] / "flight" / "data" / "digits_cnn.flm")
    x = np.load(Path(__file__).parents[1] / "flight" / "data" / "digits_test.npz")["x"][:1]
    replica = m.replica(0)
    golden = replica.run(x)["logits"].copy()
    records: list[Injection] = []

    def hit_largest(buf: np.ndarray) -> None:
        element = int(np.argmax(buf.reshape(-1)))
        # bit 30 of a float32: the top exponent bit; a positive activation becomes huge
        records.append(apply(SingleBitUpset(bit=32 * element + 30), buf, site="relu4.out"))

    upset = replica.run(x, after={"relu4.out": hit_largest})["logits"].copy()
    assert len(records) == 1 and records[0].changed
    assert not np.array_equal(upset, golden)
    assert np.array_equal(replica.run(x)["logits"], golden)  # the next run recomputes it
