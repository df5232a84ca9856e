"""The scrubber: walks protected regions in bounded steps, finding and repairing upsets.

Upsets accumulate: a block hit once is repairable, a block hit in two copies before anyone
looked may not be. The scrubber checks a bounded number of bytes per call (cFS CS-style
``MaxBytesPerCycle``) so it fits in a frame, resumes where it stopped, and goes round-robin over
its regions. ``max_bytes`` counts every byte read, in every copy: a 3-copy, 4 KiB block costs
12 KiB of budget. Each step checks whole blocks and at most one full pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flight import errors, events
from flight.memory import CheckReport, ProtectedRegion

__all__ = ["ScrubCounters", "Scrubber", "StepReport"]


@dataclass
class ScrubCounters:
    """Totals since the scrubber was created (housekeeping telemetry)."""

    bytes_checked: int = 0
    blocks_checked: int = 0
    passes_completed: int = 0
    errors_found: int = 0
    repaired: int = 0
    table_repaired: int = 0
    unrepairable: int = 0


@dataclass
class StepReport:
    """What one :meth:`Scrubber.step` did."""

    bytes_checked: int = 0
    blocks_checked: int = 0
    errors_found: int = 0
    repaired: int = 0
    table_repaired: int = 0
    unrepairable: int = 0
    passes_completed: int = 0
    #: Regions whose full pass ended in this step.
    regions_verified: list[str] = field(default_factory=list)
    #: (region, block) pairs found unrepairable in this step.
    unrepairable_blocks: list[tuple[str, int]] = field(default_factory=list)


class Scrubber:
    """Round-robin, budgeted scrubbing of a fixed set of protected regions."""

    def __init__(
        self,
        regions: Iterable[ProtectedRegion],
        log: events.EventLog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._regions = list(regions)
        names = [r.name for r in self._regions]
        if len(set(names)) != len(names):
            raise errors.ConfigError(f"scrubber regions must have unique names: {names}")
        self.log = log if log is not None else events.EventLog()
        self._clock = clock
        self._region = 0  # cursor: region index ...
        self._block = 0  # ... and the next block to check in it
        self._verified_at: dict[str, float | None] = dict.fromkeys(names)
        self.counters = ScrubCounters()

    @property
    def regions(self) -> tuple[ProtectedRegion, ...]:
        return tuple(self._regions)

    def replace_region(self, old: ProtectedRegion, new: ProtectedRegion) -> None:
        """Scrub ``new`` in place of ``old`` (a model upload swapped a partition's weights),
        keeping the counters; a cursor inside ``old`` starts again at ``new``'s first block."""
        index = next(i for i, r in enumerate(self._regions) if r is old)
        if new.name != old.name and new.name in self._verified_at:
            raise errors.ConfigError(f"scrubber regions must have unique names: {new.name}")
        self._regions[index] = new
        del self._verified_at[old.name]
        self._verified_at[new.name] = None
        if self._region == index:
            self._block = 0

    @property
    def pass_budget(self) -> int:
        """The ``max_bytes`` that lets one :meth:`step` finish a whole pass from anywhere: a
        partial last block is charged as a whole one, so this can exceed :attr:`total_bytes`."""
        return sum(r.nblocks * r.block_size * r.copies for r in self._regions)

    @property
    def total_bytes(self) -> int:
        """Budget needed for one full pass (every copy of every region)."""
        return sum(r.nbytes * r.copies for r in self._regions)

    def since_verified(self) -> dict[str, float | None]:
        """Seconds since each region's last full pass ended (None: never fully verified)."""
        now = self._clock()
        return {n: None if t is None else now - t for n, t in self._verified_at.items()}

    def step(self, max_bytes: int) -> StepReport:
        """Check at most ``max_bytes`` (all copies counted) from where the last step stopped."""
        report = StepReport()
        if not self._regions or self.total_bytes == 0:
            return report
        min_cost = max(r.block_size * r.copies for r in self._regions if r.nblocks)
        if max_bytes < min_cost:
            raise errors.ConfigError(
                f"scrub budget of {max_bytes} bytes is below one block of the largest region "
                f"({min_cost} bytes in all copies): the scrubber could never finish a pass"
            )
        budget = max_bytes
        visited = 0  # blocks checked this step, to stop after one full pass
        total_blocks = sum(r.nblocks for r in self._regions)
        while True:
            region = self._regions[self._region]
            if self._block < region.nblocks:
                cost = region.block_size * region.copies
                take = min(region.nblocks - self._block, budget // cost, total_blocks - visited)
                if take <= 0:
                    break  # budget spent, or a full pass done
                result = region.check(self._block, self._block + take, repair=True, log=self.log)
                self._account(report, result)
                budget -= result.bytes_checked
                visited += take
                self._block += take
            if self._block >= region.nblocks:
                # Region done; an empty region is done as soon as the cursor reaches it, so a
                # pass that ends with empty regions completes in the step that ends its blocks.
                self._verified_at[region.name] = self._clock()
                report.regions_verified.append(region.name)
                self._block = 0
                self._region += 1
                if self._region == len(self._regions):
                    self._region = 0
                    report.passes_completed += 1
                    self.counters.passes_completed += 1
                    self.log.emit(events.SCRUB_PASS_COMPLETED)
                    if visited == total_blocks:
                        break  # at most one pass per step
        return report

    def _account(self, report: StepReport, result: CheckReport) -> None:
        report.bytes_checked += result.bytes_checked
        report.blocks_checked += result.blocks_checked
        report.errors_found += result.errors
        report.repaired += result.repaired
        report.table_repaired += result.table_repaired
        report.unrepairable += result.unrepairable
        report.unrepairable_blocks.extend((result.region, b) for b in result.unrepairable_blocks)
        c = self.counters
        c.bytes_checked += result.bytes_checked
        c.blocks_checked += result.blocks_checked
        c.errors_found += result.errors
        c.repaired += result.repaired
        c.table_repaired += result.table_repaired
        c.unrepairable += result.unrepairable
