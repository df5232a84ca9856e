"""Protected regions: redundant copies, protected CRC table, repair that never guesses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight import errors, events
from flight.crc import crc32c
from flight.memory import ProtectedRegion


@st.composite
def regions(draw, copies=None):
    dtype = draw(st.sampled_from([np.uint8, np.float32, np.int64]))
    count = draw(st.integers(1, 3000))
    block_size = draw(st.sampled_from([64, 128, 1000, 4096]))
    ncopies = copies if copies is not None else draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    array = rng.integers(0, 255, count).astype(dtype)
    return ProtectedRegion("r", array, copies=ncopies, block_size=block_size), array


def _block_ok(region: ProtectedRegion, golden: bytes, block: int) -> bool:
    start, stop = region.block_bytes(block)
    return all(
        region.raw(i)[start:stop].tobytes() == golden[start:stop] for i in range(region.copies)
    )


def test_layout_and_views():
    data = np.arange(3000, dtype=np.float32).reshape(30, 100)
    region = ProtectedRegion("weights", data, copies=3, block_size=4096)
    assert region.nbytes == 12000 and region.nblocks == 3
    for i in range(3):
        view = region.copy(i)
        assert view.dtype == np.float32 and view.shape == (30, 100)
        assert np.array_equal(view, data)
        assert not view.flags.writeable
        with pytest.raises(ValueError):
            view[0, 0] = 1.0
    # copies are separate memory: a flip in one is not seen in another
    region.raw(1)[0] ^= 0xFF
    assert region.copy(0)[0, 0] == 0.0 and region.copy(1)[0, 0] != 0.0
    assert not np.shares_memory(region.raw(0), region.raw(1))
    for block in range(3):
        start, stop = region.block_bytes(block)
        assert region.crc_table(0)[block] == crc32c(data.tobytes()[start:stop])


@given(regions(), st.data())
def test_any_block_with_at_most_one_bad_copy_is_restored(pair, data):
    region, array = pair
    golden = array.tobytes()
    hit_blocks = data.draw(st.sets(st.integers(0, region.nblocks - 1), max_size=5))
    for block in hit_blocks:
        victim = data.draw(st.integers(0, region.copies - 1))
        start, stop = region.block_bytes(block)
        pos = data.draw(st.integers(start, stop - 1))
        region.raw(victim)[pos] ^= data.draw(st.integers(1, 255))
    verify = region.verify()
    assert verify.errors == len(hit_blocks)
    assert all(_block_ok(region, golden, b) == (b not in hit_blocks) for b in range(region.nblocks))
    if region.copies == 1:
        # one copy: detection only, never a guess
        report = region.repair()
        assert report.unrepairable == len(hit_blocks)
        assert set(region.suspect_blocks) == hit_blocks
        return
    report = region.repair()
    assert report.errors == len(hit_blocks)
    assert report.repaired == len(hit_blocks) and report.unrepairable == 0
    assert region.verify().clean
    assert all(_block_ok(region, golden, b) for b in range(region.nblocks))


@given(regions(copies=3), st.data())
def test_multi_copy_damage_is_repaired_or_flagged_never_mis_repaired(pair, data):
    region, array = pair
    golden = array.tobytes()
    for _ in range(data.draw(st.integers(1, 12))):
        victim = data.draw(st.integers(0, 2))
        pos = data.draw(st.integers(0, region.nbytes - 1))
        region.raw(victim)[pos] ^= 1 << data.draw(st.integers(0, 7))
    if data.draw(st.booleans()):
        table = data.draw(st.integers(0, 2))
        region.crc_table(table)[data.draw(st.integers(0, region.nblocks - 1))] ^= 0x10
    report = region.repair()
    flagged = set(report.unrepairable_blocks)
    assert flagged == set(region.suspect_blocks)
    for block in range(region.nblocks):
        if block not in flagged:
            assert _block_ok(region, golden, block), f"block {block} silently wrong"
    assert region.verify().unrepairable == len(flagged)


def test_same_bit_in_all_three_copies_is_flagged_not_repaired():
    array = np.arange(2048, dtype=np.uint8)
    region = ProtectedRegion("t", array, copies=3, block_size=1024)
    for i in range(3):
        region.raw(i)[10] ^= 4
    log = events.EventLog()
    report = region.repair(log=log)
    assert report.unrepairable_blocks == [0] and report.repaired == 0
    assert log.count(events.SCRUB_BLOCK_UNREPAIRABLE) == 1
    assert region.raw(0)[10] == 10 ^ 4  # left alone, not "repaired" to something unproven
    region.write(array)  # a golden reload clears it
    assert region.suspect_blocks == () and region.verify().clean


def test_each_copy_hit_elsewhere_is_repaired_by_majority_vote():
    array = np.arange(4096, dtype=np.uint8)
    region = ProtectedRegion("t", array, copies=3, block_size=4096)
    for i, pos in enumerate((5, 500, 3000)):
        region.raw(i)[pos] ^= 0x80
    report = region.repair()
    assert report.repaired == 1 and report.bad_copies == [1, 1, 1]
    assert np.array_equal(region.copy(2), array)


def test_crc_table_upsets_are_repaired_and_do_not_touch_data():
    array = np.arange(10_000, dtype=np.uint16)
    region = ProtectedRegion("t", array, block_size=512)
    region.crc_table(1)[3] ^= 1
    region.crc_table(2)[7] ^= 0xFFFF
    report = region.repair()
    assert report.table_repaired == 2 and report.repaired == 0 and report.errors == 2
    assert all(np.array_equal(region.crc_table(0), region.crc_table(i)) for i in (1, 2))
    # all three table copies different, data intact: the data copies prove one of them right
    good = int(region.crc_table(0)[4])
    region.crc_table(0)[4] ^= 1
    region.crc_table(1)[4] ^= 2
    assert region.repair().table_repaired == 1
    assert int(region.crc_table(1)[4]) == good


def test_two_table_copies_agreeing_on_a_wrong_crc_flags_the_block():
    region = ProtectedRegion("t", np.arange(1000, dtype=np.uint8), block_size=256)
    region.crc_table(0)[1] ^= 1
    region.crc_table(1)[1] ^= 1
    report = region.repair()
    assert report.unrepairable_blocks == [1]


def test_verify_changes_nothing():
    region = ProtectedRegion("t", np.arange(1000, dtype=np.uint8), block_size=256)
    region.raw(0)[3] ^= 1
    before = [region.raw(i).copy() for i in range(3)]
    assert region.verify().errors == 1
    assert all(np.array_equal(before[i], region.raw(i)) for i in range(3))


def test_write_updates_all_copies_and_crcs():
    array = np.zeros(5000, np.uint8)
    region = ProtectedRegion("t", array, block_size=1024)
    region.write(np.full(100, 7, np.uint8), offset=1000)
    assert region.verify().clean
    assert all(region.raw(i)[1000:1100].tolist() == [7] * 100 for i in range(3))
    with pytest.raises(errors.RegionError):
        region.write(np.zeros(10, np.uint8), offset=4995)
    with pytest.raises(errors.RegionError):
        region.write(b"x", offset=-1)


def test_bad_parameters_are_config_errors():
    with pytest.raises(errors.ConfigError):
        ProtectedRegion("", np.zeros(4))
    with pytest.raises(errors.ConfigError):
        ProtectedRegion("x", np.zeros(4), copies=0)
    with pytest.raises(errors.ConfigError):
        ProtectedRegion("x", np.zeros(4), copies=4)
    with pytest.raises(errors.ConfigError):
        ProtectedRegion("x", np.zeros(4), block_size=100)
    with pytest.raises(errors.ConfigError):
        ProtectedRegion("x", np.array([object()]))
    region = ProtectedRegion("x", np.zeros(4))
    with pytest.raises(errors.RegionError):
        region.copy(3)
    with pytest.raises(errors.RegionError):
        region.check(0, 5, repair=False)


def test_empty_region_is_allowed():
    region = ProtectedRegion("empty", np.zeros(0, np.float32))
    assert region.nblocks == 0 and region.verify().clean
