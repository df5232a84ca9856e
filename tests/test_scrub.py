"""The scrubber: bounded steps, resumption, round-robin, counters, repair through steps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight import errors, events
from flight.memory import ProtectedRegion
from flight.scrub import Scrubber


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _regions():
    a = ProtectedRegion("a", np.arange(10_000, dtype=np.float32), block_size=1024)  # 40 blocks
    b = ProtectedRegion("b", np.ones(3000, np.uint8), copies=2, block_size=512)  # 6 blocks
    return a, b


@given(st.integers(3072, 40_000), st.integers(1, 12))
def test_budget_is_respected_and_every_block_is_visited_once_per_pass(budget, steps):
    a, b = _regions()
    checked: list[tuple[str, int, int]] = []
    for region in (a, b):
        original = region.check

        def spy(start, stop=None, *, repair, log=None, _r=region, _orig=original):
            checked.append((_r.name, start, stop))
            return _orig(start, stop, repair=repair, log=log)

        region.check = spy
    scrubber = Scrubber([a, b])
    total = 0
    for _ in range(steps):
        report = scrubber.step(budget)
        assert 0 < report.bytes_checked <= budget
        total += report.bytes_checked
    assert scrubber.counters.bytes_checked == total
    # the ranges visited are consecutive, wrap around a -> b -> a, and never skip a block
    seen = {"a": [], "b": []}
    for name, start, stop in checked:
        seen[name].extend(range(start, stop))
    passes = scrubber.counters.passes_completed
    for name, region in (("a", a), ("b", b)):
        blocks = seen[name]
        assert blocks[: region.nblocks * passes] == list(range(region.nblocks)) * passes


def test_one_step_never_does_more_than_one_pass():
    a, b = _regions()
    scrubber = Scrubber([a, b])
    report = scrubber.step(10**9)
    assert report.passes_completed == 1
    assert report.bytes_checked == scrubber.total_bytes
    assert report.regions_verified == ["a", "b"]


def test_upsets_found_and_repaired_across_steps():
    a, b = _regions()
    log = events.EventLog()
    scrubber = Scrubber([a, b], log=log)
    a.raw(2)[39_999] ^= 1  # last block of a
    b.raw(0)[0] ^= 0xFF  # first block of b
    a.crc_table(0)[0] ^= 1
    found = repaired = table = 0
    while scrubber.counters.passes_completed < 1:
        report = scrubber.step(8192)
        found += report.errors_found
        repaired += report.repaired
        table += report.table_repaired
    assert (found, repaired, table) == (3, 2, 1)
    assert log.count(events.SCRUB_BLOCK_REPAIRED) == 2
    assert log.count(events.SCRUB_PASS_COMPLETED) == 1
    assert a.verify().clean and b.verify().clean


def test_unrepairable_blocks_are_counted_and_listed():
    a, b = _regions()
    b.raw(0)[600] ^= 1
    b.raw(1)[600] ^= 1  # both copies of a 2-copy region: nothing can prove a winner
    scrubber = Scrubber([a, b])
    report = scrubber.step(scrubber.total_bytes)
    assert report.unrepairable == 1 and report.unrepairable_blocks == [("b", 1)]
    assert scrubber.counters.unrepairable == 1
    assert b.suspect_blocks == (1,)


def test_time_since_verified_uses_the_injected_clock():
    a, b = _regions()
    clock = FakeClock()
    scrubber = Scrubber([a, b], clock=clock)
    assert scrubber.since_verified() == {"a": None, "b": None}
    scrubber.step(40 * 1024 * 3)  # exactly region a
    clock.now += 2.5
    since = scrubber.since_verified()
    assert since["a"] == pytest.approx(2.5) and since["b"] is None


def test_budget_below_one_block_is_a_config_error():
    a, b = _regions()
    with pytest.raises(errors.ConfigError, match="budget"):
        Scrubber([a, b]).step(1024 * 3 - 1)


def test_duplicate_region_names_are_rejected():
    a, _ = _regions()
    with pytest.raises(errors.ConfigError):
        Scrubber([a, a])


def test_no_regions_or_empty_regions_do_nothing():
    assert Scrubber([]).step(4096).bytes_checked == 0
    empty = ProtectedRegion("e", np.zeros(0))
    assert Scrubber([empty]).step(4096).bytes_checked == 0
