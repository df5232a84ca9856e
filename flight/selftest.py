"""Board bring-up self-test: exercises the native voter, CRC and scrubber with real faults.

Run on a fresh image (``flight selftest``) to prove that the compiled parts load, compute the
catalogue check values, mask an injected upset, and that the scrubber finds and repairs seeded
bit flips. Every check can fail; the exit code says whether all passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SelfTestResult:
    checks: dict[str, bool] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


def run_selftest(seed: int = 0, region_mib: int = 8, upsets: int = 64) -> SelfTestResult:
    """Run every check; ``seed`` makes the injected upsets reproducible."""
    from flight import crc
    from flight.memory import ProtectedRegion
    from flight.scrub import Scrubber
    from flight.vote import vote, vote_words

    result = SelfTestResult()
    rng = np.random.default_rng(seed)
    result.facts["crc32c_implementation"] = crc.IMPLEMENTATION
    result.checks["crc32c_check_value"] = crc.crc32c(b"123456789") == 0xE3069283
    result.checks["crc32c_portable_check_value"] = crc.crc32c_portable(b"123456789") == 0xE3069283
    result.checks["crc16_check_value"] = crc.crc16_ccitt_false(b"123456789") == 0x29B1

    golden = rng.standard_normal(1 << 16).astype(np.float32)
    replicas = [golden.copy() for _ in range(3)]
    replicas[1].view(np.uint32)[rng.integers(0, golden.size, 10)] ^= np.uint32(1 << 30)
    voted = vote(*replicas)
    result.checks["vote_masks_upset"] = bool(np.array_equal(voted.out, golden))
    result.checks["vote_counts_loser"] = voted.lost[0] == 0 and voted.lost[1] > 0
    replicas[0][5], replicas[1][5], replicas[2][5] = 1.0, 2.0, 3.0
    result.checks["vote_words_flags_no_majority"] = vote_words(*replicas).first_no_majority == 5

    weights = rng.integers(0, 256, region_mib << 20, dtype=np.uint8)
    region = ProtectedRegion("selftest", weights, copies=3, block_size=4096)
    hit_blocks = rng.choice(region.nblocks, size=min(upsets, region.nblocks), replace=False)
    for block in hit_blocks:
        start, stop = region.block_bytes(int(block))
        copy = int(rng.integers(0, 3))
        region.raw(copy)[int(rng.integers(start, stop))] ^= np.uint8(1 << int(rng.integers(8)))
    scrubber = Scrubber([region])
    started = time.perf_counter()
    while scrubber.counters.passes_completed == 0:
        scrubber.step(1 << 20)
    elapsed = time.perf_counter() - started
    counters = scrubber.counters
    result.checks["scrub_found_every_upset"] = counters.errors_found == len(hit_blocks)
    result.checks["scrub_repaired_every_upset"] = counters.repaired == len(hit_blocks)
    result.checks["region_clean_after_scrub"] = region.verify().clean and bool(
        np.array_equal(region.copy(2), weights)
    )
    result.facts["upsets_injected"] = len(hit_blocks)
    result.facts["scrub_GBps"] = round(counters.bytes_checked / elapsed / 1e9, 2)
    return result
