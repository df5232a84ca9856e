"""The scrub planner (hil/plan.py): its formulas, its CLI, and its agreement with flight's own
scrubber under simulated radiation."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flight import errors
from flight.crc import crc32c_blocks
from flight.environments import Environment
from flight.memory import ProtectedRegion
from flight.radiation import RadiationSimulator, region_targets
from flight.scrub import Scrubber
from hil import plan as P

ROOT = Path(__file__).resolve().parents[2]
MISSION = ROOT / "flight" / "data" / "default_mission.toml"
BITS_64B = 512  # bits in a 64-byte block


def per_copy(mu: float, block_bits: int = BITS_64B, period_s: float = 1.0, **kw) -> P.UpsetModel:
    """An upset model giving ``mu`` hits per copy of a block per period."""
    return P.UpsetModel(mu / block_bits / period_s * 86400.0, **kw)


# --- hand-computed cases ----------------------------------------------------------------------
def test_region_blocks_include_a_short_last_block():
    r = P.Region("w", 1000, 3, 64)
    assert r.nblocks == 16
    assert r.block_sizes() == [(64, 15), (40, 1)]
    assert r.block_cost == 192
    assert P.Layout((r, P.Region("x", 128, 1, 64))).pass_bytes == 16 * 192 + 2 * 64


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"copies": 4}, "copies"),
        ({"copies": 0}, "copies"),
        ({"block_size": 60}, "block size"),
        ({"block_size": 100}, "block size"),
    ],
)
def test_bad_regions_are_refused(kwargs, what):
    args = {"name": "w", "nbytes": 1024, "copies": 3, "block_size": 64} | kwargs
    with pytest.raises(errors.ConfigError, match=what):
        P.Region(**args)


def test_pattern_probabilities_by_hand():
    single = P.UpsetModel(1.0)
    assert single.identical_in_word() == pytest.approx(1 / 32)
    assert single.overlap_in_word() == pytest.approx(1 / 32)
    # only 2-bit clusters: 31 positions; identical 1/31; overlapping pairs |s - t| <= 1:
    # 31 equal + 2 * 30 neighbours = 91 of 31^2
    pairs = P.UpsetModel(1.0, multi_bit_fraction=1.0, cluster_sizes=((2, 1.0),))
    assert pairs.identical_in_word() == pytest.approx(1 / 31)
    assert pairs.overlap_in_word() == pytest.approx(91 / 961)


def test_data_probabilities_by_hand():
    mu = 0.01
    u = per_copy(mu)
    one = 1 - math.exp(-mu)
    assert P.data_probability(64, 1, u, 1.0) == pytest.approx(one, rel=1e-12)
    assert P.data_probability(64, 2, u, 1.0) == pytest.approx(one**2, rel=1e-12)
    # three copies: all hit (mu^3) and two of them share a bit (3 pairs x 1/512): 3 mu^3 / 512,
    # less a relative O(mu) for a copy that stayed clean
    three = P.data_probability(64, 3, u, 1.0)
    assert three == pytest.approx(3 * mu**3 / BITS_64B, rel=0.02)
    assert three < 3 * mu**3 / BITS_64B
    # a bigger block: more bits share the hits, fewer collide (same mu per copy)
    assert P.data_probability(4096, 3, per_copy(mu, 8 * 4096), 1.0) == pytest.approx(
        3 * mu**3 / (8 * 4096), rel=0.02
    )


def test_data_probability_keeps_its_precision_at_orbit_rates():
    """LEO, 4 KiB, 1 s: mu ~ 1.5e-7, far below double cancellation of the naive form."""
    u = P.UpsetModel.from_environment("leo")
    mu = u.per_bit_second * 8 * 4096
    rho = u.overlap_in_word() / (8 * 4096) * 32
    assert P.data_probability(4096, 3, u, 1.0) == pytest.approx(3 * mu**3 * rho, rel=1e-4)


def test_table_probability_by_hand():
    # 32 bits of one entry: mu_t = 32 * mu / 512 = mu / 16
    mu = 0.16
    h = 1 - math.exp(-mu / 16)
    expected = 3 * h * h * (1 - h) / 32 + h**3
    assert P.table_probability(per_copy(mu), 1.0) == pytest.approx(expected, rel=1e-12)


def test_block_probability_combines_data_and_table():
    u = per_copy(0.2)
    d, t = P.data_probability(64, 3, u, 1.0), P.table_probability(u, 1.0)
    assert P.block_probability(64, 3, u, 1.0) == pytest.approx(1 - (1 - d) * (1 - t))


def test_rate_sums_blocks_and_regions():
    u = per_copy(0.2)
    a, b = P.Region("a", 64 * 10, 3, 64), P.Region("b", 64 * 4 + 40, 2, 64)
    per_block_a = P.block_probability(64, 3, u, 1.0)
    per_block_b = 4 * P.block_probability(64, 2, u, 1.0) + P.block_probability(40, 2, u, 1.0)
    rate = P.unrepairable_rate(P.Layout((a, b)), u, 1.0)
    assert rate == pytest.approx((10 * per_block_a + per_block_b) * 86400.0)


def test_plan_reports_per_year_and_mission_probability():
    u = per_copy(0.05)
    layout = P.Layout((P.Region("w", 6400, 2, 64),))
    p = P.plan(layout, u, 2.0, mission_years=3.0)
    assert p.unrepairable_per_day == pytest.approx(P.unrepairable_rate(layout, u, 2.0))
    assert p.unrepairable_per_year == pytest.approx(p.unrepairable_per_day * 365.25)
    expected = 1 - math.exp(-p.unrepairable_per_day * 365.25 * 3)
    assert p.p_at_least_one == pytest.approx(expected)


def test_the_crc_table_dominates_three_copies_at_orbit_rates():
    """At LEO rates two table copies hit alike (~T^2) outweigh three data copies (~T^3)."""
    u = P.UpsetModel.from_environment("leo")
    assert P.table_probability(u, 60.0) > 10 * P.data_probability(4096, 3, u, 60.0)


# --- the scrub period from the budget ---------------------------------------------------------
def test_period_of_the_bundled_mission():
    layout, budget, frame_s = P.layout_from_mission(MISSION)
    (region,) = layout.regions
    # the weights image's size depends on the kernel path's tile (conv panels are padded to it)
    blocks = _bundled_weight_blocks()
    assert (region.copies, region.block_size, region.nblocks) == (3, 4096, blocks)
    assert budget == 294912 and frame_s == 0.05
    # 294912 B a frame = 24 blocks x 3 copies: a pass a frame when the image has 24 blocks
    assert P.scrub_period(layout, budget, frame_s) == pytest.approx(0.05 * blocks / 24)


def _bundled_weight_blocks() -> int:
    from flight.mission import load_mission
    from flight.model import load

    (partition,) = [p for p in load_mission(MISSION).partitions if p.model_path]
    return -(-load(partition.model_path, copies=1, block_size=4096).weights.nbytes // 4096)


def run_scrubber(layout: P.Layout, budget: int, frames: int) -> int:
    regions = [
        ProtectedRegion(r.name, np.zeros(r.nbytes, np.uint8), r.copies, r.block_size)
        for r in layout.regions
    ]
    scrubber = Scrubber(regions)
    for _ in range(frames):
        scrubber.step(budget)
    return scrubber.counters.passes_completed


def test_period_counts_whole_blocks_as_the_scrubber_does():
    layout = P.Layout((P.Region("w", 64 * 10, 3, 64),))
    budget = 3 * 192 + 100  # 3 blocks a frame; the 100 bytes left are never spent
    assert P.scrub_period(layout, budget, 0.1) == pytest.approx(0.1 * 10 / 3)
    assert run_scrubber(layout, budget, 300) == 90  # 900 blocks = 90 passes of 10


def test_period_with_mixed_block_costs_is_within_a_block_a_frame():
    layout = P.Layout((P.Region("a", 64 * 300, 3, 64), P.Region("b", 64 * 200, 1, 64)))
    budget = 5000
    frames = 600
    planned = P.scrub_period(layout, budget, 1.0)
    passes = run_scrubber(layout, budget, frames)
    assert frames / passes == pytest.approx(planned, rel=192 / budget)  # <= 1 block a frame


def test_a_budget_below_one_block_is_refused():
    layout = P.Layout((P.Region("w", 4096, 3, 64),))
    with pytest.raises(errors.ConfigError, match="below one block"):
        P.scrub_period(layout, 191, 0.05)


# --- monotonicity and the needed period --------------------------------------------------------
@pytest.mark.parametrize("copies", [2, 3])
def test_shorter_periods_leave_fewer_unrepairable_blocks(copies):
    layout = P.Layout((P.Region("w", 1 << 20, copies, 4096),))
    u = P.UpsetModel.from_environment("flare")
    periods = [0.05 * 2**i for i in range(16)]  # up to ~0.06 hits per copy of a block
    rates = [P.unrepairable_rate(layout, u, t) for t in periods]
    assert all(a < b for a, b in itertools.pairwise(rates))


def test_higher_upset_rates_leave_more():
    layout = P.Layout((P.Region("w", 1 << 20, 3, 4096),))
    rates = [
        P.unrepairable_rate(layout, P.UpsetModel.from_environment(e), 60.0)
        for e in ("leo", "geo", "saa", "flare")
    ]
    assert rates == sorted(rates) and len(set(rates)) == 4


@pytest.mark.parametrize(
    ("environment", "target"), [("leo", 1e-12), ("flare", 1e-6), ("saa", 1e-9)]
)
def test_the_needed_period_meets_the_target_when_fed_back(environment, target):
    layout, _, frame_s = P.layout_from_mission(MISSION)
    u = P.UpsetModel.from_environment(environment)
    needed = P.needed_period(layout, u, target)
    assert needed is not None and math.isfinite(needed)
    assert P.unrepairable_rate(layout, u, needed) <= target
    assert P.unrepairable_rate(layout, u, needed * 1.01) > target  # and not needlessly short
    if needed >= frame_s:
        budget = P.bytes_per_frame_for(layout, needed, frame_s)
        period = P.scrub_period(layout, budget, frame_s)
        assert period <= needed
        assert P.unrepairable_rate(layout, u, period) <= target
        less = budget - layout.regions[0].block_cost
        if less >= layout.regions[0].block_cost:  # and a block less per frame would not do
            assert P.scrub_period(layout, less, frame_s) > needed


def test_one_copy_cannot_meet_a_target_below_its_upset_rate():
    layout = P.Layout((P.Region("w", 4096, 1, 4096),))
    u = P.UpsetModel.from_environment("leo")
    assert P.needed_period(layout, u, 1e-9) is None
    assert P.needed_period(layout, u, 1.0) == math.inf  # any period will do


# --- the command line --------------------------------------------------------------------------
def hil(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHT_")}
    return subprocess.run(
        [sys.executable, "-m", "hil.cli", "plan", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )


def test_cli_json_matches_the_library():
    out = hil(
        "--bytes",
        "1048576",
        "--copies",
        "3",
        "--block-size",
        "4096",
        "--environment",
        "flare",
        "--accelerate",
        "10",
        "--period",
        "60",
        "--target",
        "1e-6",
        "--frame-ms",
        "50",
        "--years",
        "5",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    layout = P.Layout((P.Region("region", 1 << 20, 3, 4096),))
    u = P.UpsetModel.from_environment("flare", accelerate=10.0)
    assert got["unrepairable_per_day"] == pytest.approx(P.unrepairable_rate(layout, u, 60.0))
    assert got["p_at_least_one"] == pytest.approx(
        1 - math.exp(-got["unrepairable_per_day"] * 365.25 * 5)
    )
    assert got["needed_period_s"] == pytest.approx(P.needed_period(layout, u, 1e-6))
    assert got["needed_bytes_per_frame"] % (3 * 4096) == 0


def test_cli_mission_budget_gives_the_period_and_text_output():
    out = hil("--mission", str(MISSION), "--environment", "leo", "--target", "1e-12")
    assert out.returncode == 0, out.stderr
    period = re.search(r"scrub period: ([0-9.]+) s \(294912 B per 50 ms frame\)", out.stdout)
    assert period, out.stdout
    assert float(period.group(1)) == pytest.approx(0.05 * _bundled_weight_blocks() / 24, rel=0.01)
    assert "target 1e-12 /day: a period of at most" in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--bytes", "4096", "--rate", "-1", "--period", "1"),
        ("--bytes", "4096", "--rate", "lots", "--period", "1"),
        ("--bytes", "4096", "--environment", "mars", "--period", "1"),
        ("--bytes", "4096", "--environment", "leo", "--rate", "1e-7", "--period", "1"),
        ("--bytes", "4096", "--environment", "leo", "--period", "0"),
        ("--bytes", "4096", "--environment", "leo", "--period", "1", "--bytes-per-frame", "9"),
        ("--bytes", "4096", "--environment", "leo", "--bytes-per-frame", "12288"),  # no frame
        ("--bytes", "4096", "--copies", "4", "--environment", "leo", "--period", "1"),
        ("--model", "no-such.flm", "--environment", "leo", "--period", "1"),
        ("--environment", "leo", "--period", "1"),  # no layout
        ("--bytes", "4096", "--environment", "leo", "--period", "1", "--target", "0"),
    ],
)
def test_cli_bad_input_exits_78(args):
    out = hil(*args)
    assert out.returncode == 78, (out.returncode, out.stdout, out.stderr)
    assert out.stderr.startswith("hil: ") and "Traceback" not in out.stderr


# --- the check: flight's scrubber under simulated radiation -------------------------------------
def test_simulated_campaign_agrees_with_the_plan():
    """Three 64-byte copies, ~0.5 hits per copy per pass: both failure modes (three copies
    sharing a bit, two CRC-table copies hit alike) occur often enough to count."""
    layout = P.Layout((P.Region("w", 64 * 64, 3, 64),))
    result = P.simulate(layout, per_copy(0.5), 64 * 192, 1.0, 1000, seed=11)
    assert result.passes == 1000
    assert result.unrepairable >= 25
    assert result.agrees, result


def test_the_rule_matches_the_scrubber_block_by_block():
    """The planner's unrepairable cases, read off each block's state before a check, are
    exactly the blocks flight's scrubber reports: the model is flight's repair rule."""
    rng = np.random.default_rng(7)
    golden = rng.integers(0, 256, 64 * 64, dtype=np.uint8)
    region = ProtectedRegion("w", golden, 3, 64)
    golden_crc = crc32c_blocks(golden, 64)
    env = Environment("test", 0.5 / BITS_64B * 86400, 0.3, "", "")
    sim = RadiationSimulator(env, region_targets(region), rng=rng)
    scrubber = Scrubber([region])
    seen = {"data": 0, "table": 0}
    for _ in range(400):
        sim.advance(1.0)
        flips = [np.unpackbits(region.raw(i) ^ golden).reshape(64, 512) for i in range(3)]
        all_hit = np.all([f.any(axis=1) for f in flips], axis=0)
        shared = ((flips[0] & flips[1]) | (flips[0] & flips[2]) | (flips[1] & flips[2])).any(1)
        data = all_hit & shared
        tables = [region.crc_table(i).copy() for i in range(3)]
        hit = [t != golden_crc for t in tables]
        alike = (hit[0] & ((tables[0] == tables[1]) | (tables[0] == tables[2]))) | (
            hit[1] & (tables[1] == tables[2])
        )
        table = alike | (hit[0] & hit[1] & hit[2])
        step = scrubber.step(64 * 192)
        reported = sorted(b for _, b in step.unrepairable_blocks)
        assert reported == np.flatnonzero(data | table).tolist()
        seen["data"] += int(data.sum())
        seen["table"] += int(table.sum())
        for _, b in step.unrepairable_blocks:
            region.write(golden[64 * b : 64 * (b + 1)], offset=64 * b)
    assert seen["data"] >= 5 and seen["table"] >= 2  # both cases were exercised


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layout", "mu", "kw", "budget"),
    [
        (P.Layout((P.Region("w", 64 * 64, 3, 64),)), 0.5, {}, 64 * 192),
        (P.Layout((P.Region("w", 64 * 64, 3, 64),)), 0.5, {"multi_bit_fraction": 0.5}, 64 * 192),
        (P.Layout((P.Region("w", 64 * 64, 2, 64),)), 0.02, {}, 16 * 128),  # 4 frames a pass
        (
            P.Layout((P.Region("a", 64 * 64, 3, 64), P.Region("b", 64 * 40 + 24, 2, 64))),
            0.4,
            {"multi_bit_fraction": 0.2},
            30 * 192,
        ),
    ],
    ids=["three-copies", "clusters", "two-copies-slow-pass", "mixed"],
)
def test_long_simulated_campaigns_agree_with_the_plan(layout, mu, kw, budget):
    result = P.simulate(layout, per_copy(mu, **kw), budget, 1.0, 10000, seed=5)
    assert result.unrepairable >= 100
    assert result.agrees, result
