"""The scrubber: bounded steps, resumption, round-robin, counters, repair through steps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, target
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


# --- the walk: a property test against a reference model ---------------------------------------
@st.composite
def scrub_plans(draw):
    """Two to four regions (one with 2+ blocks; some empty, some with a partial last block, 1-3
    copies) and per-step budgets from one block of the largest region to two passes."""
    specs = draw(
        st.lists(
            st.tuples(
                st.integers(0, 12),  # whole blocks
                st.integers(0, 63),  # bytes in a partial last block
                st.integers(1, 3),  # copies
                st.sampled_from([64, 128, 512]),  # block size
                st.integers(0, 2),  # 0: an empty region
            ),
            min_size=2,
            max_size=4,
        )
    )
    big = draw(st.integers(0, len(specs) - 1))  # this one has at least two blocks
    regions = []
    for i, (whole, tail, copies, block_size, empty) in enumerate(specs):
        nbytes = 0 if empty == 0 and i != big else whole * block_size + tail
        if i == big:
            nbytes = max(nbytes, 2 * block_size)
        data = np.arange(nbytes, dtype=np.uint8)
        regions.append(ProtectedRegion(f"r{i}", data, copies=copies, block_size=block_size))
    min_cost = max(r.block_size * r.copies for r in regions if r.nblocks)
    pass_cost = sum(r.nblocks * r.block_size * r.copies for r in regions)
    budget = st.one_of(  # many steps per pass, a few, or a whole pass (and more) in one
        st.integers(min_cost, max(min_cost, pass_cost // 4)),
        st.integers(min_cost, pass_cost),
        st.integers(pass_cost, 2 * pass_cost),
    )
    budgets = draw(st.lists(budget, min_size=2, max_size=25))
    return regions, budgets


class _ReferenceWalk:
    """What each step must do, from a plain model of a pass: every block of every region in
    order, each region followed by its 'verified' marker (the last one ends the pass). A step
    takes blocks while a whole block of their region fits in the budget left, at most one
    pass's worth of blocks; markers are passed as soon as they are reached, except that a step
    that did a full pass stops at the pass's end."""

    def __init__(self, regions: list[ProtectedRegion]) -> None:
        self.regions = regions
        self.items: list[tuple[int, int | None]] = []  # (region, block); None: its marker
        for r, region in enumerate(regions):
            self.items += [(r, b) for b in range(region.nblocks)]
            self.items.append((r, None))
        self.pass_blocks = sum(r.nblocks for r in regions)
        self.cursor = 0

    def step(self, budget: int) -> tuple[list[tuple[str, int]], list[str], int]:
        """(blocks checked, regions verified, passes completed) of the next step."""
        blocks: list[tuple[str, int]] = []
        verified: list[str] = []
        passes = 0
        while True:
            r, block = self.items[self.cursor % len(self.items)]
            region = self.regions[r]
            if block is None:
                verified.append(region.name)
                self.cursor += 1
                if self.cursor % len(self.items) == 0:
                    passes += 1
                    if len(blocks) == self.pass_blocks:
                        break
                continue
            if len(blocks) == self.pass_blocks or budget < region.block_size * region.copies:
                break
            start, stop = region.block_bytes(block)
            budget -= (stop - start) * region.copies
            blocks.append((region.name, block))
            self.cursor += 1
        return blocks, verified, passes


def _cost(regions: dict[str, ProtectedRegion], blocks: list[tuple[str, int]]) -> int:
    """Bytes read to check these blocks, in every copy (a partial last block costs less)."""
    total = 0
    for name, block in blocks:
        start, stop = regions[name].block_bytes(block)
        total += (stop - start) * regions[name].copies
    return total


@given(scrub_plans())
def test_every_step_resumes_where_the_last_stopped_and_each_pass_checks_every_block_once(plan):
    regions, budgets = plan
    checked: list[tuple[str, int]] = []  # every block the scrubber asked a region to check
    for region in regions:
        original = region.check

        def spy(start, stop=None, *, repair, log=None, _r=region, _orig=original):
            assert repair  # the scrubber repairs what it finds
            checked.extend((_r.name, b) for b in range(start, stop))
            return _orig(start, stop, repair=repair, log=log)

        region.check = spy
    clock = FakeClock()
    scrubber = Scrubber(regions, clock=clock)
    pass_order = [(r.name, b) for r in regions for b in range(r.nblocks)]
    by_name = {r.name: r for r in regions}
    reference = _ReferenceWalk(regions)
    verified_at: dict[str, float | None] = {r.name: None for r in regions}
    ended_mid_region = 0
    for step, budget in enumerate(budgets):
        blocks, verified, passes = reference.step(budget)
        clock.now += 1.0
        first = len(checked)
        report = scrubber.step(budget)
        assert checked[first:] == blocks, f"step {step} checked the wrong blocks"
        assert report.bytes_checked == _cost(by_name, blocks) <= budget
        assert report.blocks_checked == len(blocks) > 0
        assert report.regions_verified == verified
        assert report.passes_completed == passes <= 1
        # a pass in progress too: everything checked so far is the pass order, repeated
        assert checked == (pass_order * (len(checked) // len(pass_order) + 1))[: len(checked)]
        for name in verified:
            verified_at[name] = clock.now
        assert scrubber.since_verified() == {
            n: None if t is None else clock.now - t for n, t in verified_at.items()
        }
        last_name, last_block = blocks[-1]
        ended_mid_region += last_block + 1 < by_name[last_name].nblocks
    c = scrubber.counters
    assert c.blocks_checked == len(checked)
    assert c.bytes_checked == _cost(by_name, checked)
    assert c.passes_completed == len(checked) // len(pass_order)
    assert c.errors_found == c.repaired == c.unrepairable == 0
    event(f"passes: {min(c.passes_completed, 3)}{'+' if c.passes_completed >= 3 else ''}")
    event("some step ended inside a region" if ended_mid_region else "steps ended on regions")
    event("has an empty region" if any(r.nblocks == 0 for r in regions) else "no empty region")
    target(float(c.passes_completed), label="passes")
    target(float(ended_mid_region), label="steps ending inside a region")


def test_a_pass_that_ends_with_empty_regions_completes_in_the_step_that_ends_its_blocks():
    a = ProtectedRegion("a", np.ones(256, np.uint8), copies=1, block_size=128)
    empty = ProtectedRegion("e", np.zeros(0, np.uint8))
    tail = ProtectedRegion("f", np.zeros(0, np.uint8))
    scrubber = Scrubber([empty, a, tail])
    report = scrubber.step(256)
    assert report.passes_completed == 1 and report.regions_verified == ["e", "a", "f"]
    assert None not in scrubber.since_verified().values()
    report = scrubber.step(128)
    assert report.passes_completed == 0 and report.regions_verified == ["e"]


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
