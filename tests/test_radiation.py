"""Simulated radiation: profiles, Poisson arrivals, target choice, MBUs, determinism.

The statistical tests use fixed seeds and 5-sigma tolerances: with the seed fixed they are
deterministic, and a tolerance of 5 sigma keeps them true for (almost) any other seed too, so a
change in how random numbers are drawn does not make them flaky.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from flight import errors
from flight.inject import MultiBitUpset, SingleBitUpset, apply, undo
from flight.memory import ProtectedRegion
from flight.radiation import (
    ENVIRONMENTS,
    FLARE,
    GEO,
    LEO,
    SAA,
    SAA_FACTOR,
    SECONDS_PER_DAY,
    Environment,
    RadiationSimulator,
    Target,
    acceleration_for,
    expected_upsets,
    get_environment,
    mean_time_between_upsets,
    probability_of_no_upset,
    region_targets,
    upsets_per_second,
)

SIGMAS = 5.0


def _within(observed: float, expected: float, sigma: float) -> bool:
    return abs(observed - expected) <= SIGMAS * sigma


def _flat(name: str = "test", rate_per_bit_day: float = 1.0, mbu: float = 0.0) -> Environment:
    return Environment(name, rate_per_bit_day, mbu, "test profile", "test")


# --- profiles and arithmetic -----------------------------------------------------------------
def test_profiles_and_their_numbers():
    assert set(ENVIRONMENTS) == {"leo", "saa", "geo", "flare"}
    assert LEO.rate_per_bit_day == pytest.approx(4.04e-7)
    assert 1 - LEO.multi_bit_fraction == pytest.approx(0.986)
    assert SAA.rate_per_bit_day == pytest.approx(SAA_FACTOR * LEO.rate_per_bit_day)
    assert FLARE.rate_per_bit_day >= 100 * GEO.rate_per_bit_day
    assert "Measured" in LEO.source and "Alsat-1" in LEO.source
    for env in (SAA, GEO, FLARE):
        assert "Illustrative assumption" in env.source
    assert LEO.rate_per_bit_second == pytest.approx(4.04e-7 / SECONDS_PER_DAY)
    assert get_environment("LEO") is LEO and get_environment(GEO) is GEO
    with pytest.raises(errors.ConfigError, match="leo, saa, geo, flare"):
        get_environment("mars")
    with pytest.raises(errors.ConfigError):
        Environment("x", -1.0, 0.0, "", "")
    with pytest.raises(errors.ConfigError):
        Environment("x", 1.0, 1.5, "", "")


def test_worked_example_in_the_docs():
    # docs/radiation.md: 100 KB x 3 copies at the LEO rate, accelerate 1e6 -> ~11.2 upsets/s
    bits = 8 * 3 * 100_000
    assert upsets_per_second("leo", bits, 1e6) == pytest.approx(11.22, abs=0.01)
    assert expected_upsets(LEO, bits, 60, 1e6) == pytest.approx(60 * 11.222, rel=1e-3)
    # unaccelerated: one upset every ~24.7 hours
    assert mean_time_between_upsets(LEO, bits) / 3600 == pytest.approx(24.75, abs=0.01)
    assert acceleration_for(LEO, bits, 11.222) == pytest.approx(1e6, rel=1e-3)
    assert probability_of_no_upset(LEO, bits, 0.0) == 1.0
    assert probability_of_no_upset(LEO, bits, 1.0, 1e6) == pytest.approx(math.exp(-11.222), 1e-3)
    zero = _flat(rate_per_bit_day=0.0)
    assert mean_time_between_upsets(zero, bits) == math.inf
    with pytest.raises(errors.ConfigError):
        acceleration_for(zero, bits, 1.0)


# --- targets -----------------------------------------------------------------------------------
def test_targets():
    t = Target("a", np.zeros(10, np.float32))
    assert t.bits == 320 and t.resolve() is not None and t.resolve().size == 40
    with pytest.raises(errors.ConfigError):
        Target("a", np.zeros(10, np.uint8), bits=8)
    with pytest.raises(errors.ConfigError):
        Target("lazy", lambda: None)
    with pytest.raises(errors.ConfigError):
        Target("", bytearray(4))
    with pytest.raises(errors.ReadOnlyBufferError):
        Target("ro", b"1234")
    with pytest.raises(errors.ConfigError, match="unique"):
        RadiationSimulator(LEO, [Target("a", bytearray(1)), Target("a", bytearray(1))])

    region = ProtectedRegion("w", np.zeros(1000, np.float32), block_size=1024)
    names = [t.name for t in region_targets(region)]
    assert names == ["w[0]", "w[1]", "w[2]", "w.crc[0]", "w.crc[1]", "w.crc[2]"]
    assert [t.bits for t in region_targets(region, tables=False)] == [32_000] * 3


# --- the simulator -----------------------------------------------------------------------------
def _sim(seed: int, env: Environment = LEO, accelerate: float = 1e9) -> RadiationSimulator:
    targets = [Target(f"t{i}", np.zeros(n, np.uint8)) for i, n in enumerate((100, 300, 600))]
    return RadiationSimulator(env, targets, rng=seed, accelerate=accelerate)


def test_deterministic_for_a_seed_and_call_sequence():
    a, b, c = _sim(11), _sim(11), _sim(12)
    steps = [0.5, 2.0, 0.0, 1.0, 3.0]
    ra = [a.advance(dt) for dt in steps]
    rb = [b.advance(dt) for dt in steps]
    rc = [c.advance(dt) for dt in steps]
    assert ra == rb and sum(map(len, ra)) > 0
    for x, y in zip(a.targets, b.targets, strict=True):
        assert np.array_equal(x.resolve(), y.resolve())
    assert ra != rc
    assert a.summary() == b.summary()


def test_poisson_count_mean_and_variance():
    env = _flat(rate_per_bit_day=SECONDS_PER_DAY)  # 1 upset / bit / s
    sim = RadiationSimulator(env, [Target("t", bytearray(8))], rng=2024, accelerate=4 / 64)
    calls, lam = 5000, 4.0
    assert sim.rate() == pytest.approx(lam)
    counts = np.array([len(sim.advance(1.0)) for _ in range(calls)])
    assert _within(counts.mean(), lam, math.sqrt(lam / calls))
    # Poisson: variance equals the mean (sd of the sample variance ~ sqrt((lam + 2 lam^2)/n))
    assert _within(counts.var(ddof=1), lam, math.sqrt((lam + 2 * lam**2) / calls))
    c = sim.counters["t"]
    assert c.upsets == counts.sum() and c.exposed_seconds == pytest.approx(calls)


def test_target_choice_is_proportional_to_bits():
    sim = _sim(99, env=_flat(rate_per_bit_day=SECONDS_PER_DAY), accelerate=1.0)
    total = sum(t.bits for t in sim.targets)
    sim.advance(20_000 / total)  # ~20,000 upsets
    n = sum(c.upsets for c in sim.counters.values())
    assert _within(n, 20_000, math.sqrt(20_000))
    for t in sim.targets:
        p = t.bits / total
        assert _within(sim.counters[t.name].upsets, n * p, math.sqrt(n * p * (1 - p)))


def test_single_bit_fraction_and_mbu_clusters():
    env = _flat(rate_per_bit_day=SECONDS_PER_DAY, mbu=LEO.multi_bit_fraction)
    sim = RadiationSimulator(env, [Target("w", np.zeros(4096, np.uint8))], rng=5)
    injections = sim.advance(40_000 / sim.total_bits)
    n = len(injections)
    multi = [r for r in injections if isinstance(r.fault, MultiBitUpset)]
    p = LEO.multi_bit_fraction
    assert _within(len(multi), n * p, math.sqrt(n * p * (1 - p)))
    assert sim.counters["w"].multi_bit == len(multi)
    assert all(isinstance(r.fault, SingleBitUpset | MultiBitUpset) for r in injections)
    sizes = {len(r.bits) for r in multi}
    assert sizes <= {2, 3, 4} and 2 in sizes
    for r in multi:
        assert list(r.bits) == list(range(r.bits[0], r.bits[0] + len(r.bits)))
        assert r.bits[0] // 32 == r.bits[-1] // 32  # inside one aligned 4-byte word


def test_flips_change_exactly_the_reported_bits_and_undo_restores():
    sim = _sim(3, env=_flat(rate_per_bit_day=SECONDS_PER_DAY, mbu=0.3), accelerate=1.0)
    records = sim.advance(400 / sim.total_bits)
    assert len(records) > 200
    for t in sim.targets:
        expected = np.zeros(t.bits, dtype=np.uint8)  # parity: a bit hit twice is back to 0
        for r in records:
            if r.site == t.name:
                expected[list(r.bits)] ^= 1
        got = np.unpackbits(t.resolve(), bitorder="little")
        assert np.array_equal(got, expected)
    assert sum(c.bits_flipped for c in sim.counters.values()) == sum(len(r.bits) for r in records)
    by_name = {t.name: t.resolve() for t in sim.targets}
    for r in reversed(records):
        undo(r, by_name[r.site])
    assert all(not v.any() for v in by_name.values())


def test_accelerate_scales_the_rate():
    slow, fast = _sim(8, accelerate=1e9), _sim(8, accelerate=1e10)
    assert fast.rate() == pytest.approx(10 * slow.rate())
    dt = 2000 / fast.rate()  # ~2,000 upsets at the fast rate, ~200 at the slow one
    n_slow, n_fast = len(slow.advance(dt)), len(fast.advance(dt))
    assert _within(n_slow, 200, math.sqrt(200)) and _within(n_fast, 2000, math.sqrt(2000))


def test_zero_rate_zero_time_and_zero_acceleration_give_nothing():
    assert _sim(1, env=_flat(rate_per_bit_day=0.0)).advance(1e9) == []
    assert _sim(1, accelerate=0.0).advance(1e9) == []
    sim = _sim(1)
    assert sim.advance(0.0) == []
    assert all(c.upsets == 0 for c in sim.counters.values())
    with pytest.raises(errors.ConfigError):
        sim.advance(-1.0)
    with pytest.raises(errors.ConfigError):
        _sim(1, accelerate=-1.0)


def test_runaway_acceleration_is_refused_before_drawing():
    sim = _sim(1, env=_flat(rate_per_bit_day=SECONDS_PER_DAY), accelerate=1.0)
    with pytest.raises(errors.ConfigError, match="upsets expected"):
        sim.advance(1e6)
    assert all(c.upsets == 0 for c in sim.counters.values())


def test_only_restricts_exposure_to_named_targets():
    sim = _sim(4, env=_flat(rate_per_bit_day=SECONDS_PER_DAY), accelerate=1.0)
    records = sim.advance(0.5, only=["t0"])
    assert records and {r.site for r in records} == {"t0"}
    assert sim.counters["t0"].exposed_seconds == 0.5 and sim.counters["t1"].exposed_seconds == 0
    assert sim.rate(only="t1") == pytest.approx(2400.0)
    with pytest.raises(errors.ConfigError, match="no radiation target"):
        sim.advance(1.0, only=["nope"])


def test_callable_targets_hit_only_while_live():
    live: dict[str, np.ndarray | None] = {"buf": None}
    env = _flat(rate_per_bit_day=SECONDS_PER_DAY)
    sim = RadiationSimulator(env, [Target("act", lambda: live["buf"], bits=800)], rng=6)
    assert sim.advance(0.1) == []
    dead = sim.counters["act"]
    assert dead.upsets > 0 and dead.missed == dead.upsets
    live["buf"] = np.zeros(25, np.float32)
    records = sim.advance(0.1)
    assert records and all(r.site == "act" for r in records)
    assert np.count_nonzero(live["buf"].view(np.uint32)) > 0


def test_planned_targets_and_the_seed_keyword():
    arena = np.zeros(1000, np.uint8)
    env = _flat(rate_per_bit_day=SECONDS_PER_DAY)
    a = RadiationSimulator(env, [Target("p/activations[0]", arena, apply=False)], seed=3)
    b = RadiationSimulator(env, [Target("p/activations[0]", np.zeros(1000, np.uint8))], rng=3)
    planned, applied = a.advance(0.01), b.advance(0.01)
    assert planned and not arena.any()  # drawn, not written
    assert all(not r.applied and r.target == "p/activations[0]" for r in planned)
    # same draws; old/new differ only where a planned upset hits a byte hit before
    assert [(r.fault, r.bits) for r in planned] == [(r.fault, r.bits) for r in applied]
    replay = np.zeros(1000, np.uint8)
    for r in planned:
        apply(r.fault, replay)
    assert np.array_equal(replay, b.targets[0].resolve())
    assert a.counts() == {"p/activations[0]": len(planned)}
    with pytest.raises(errors.ConfigError):
        RadiationSimulator(env, [], rng=1, seed=1)
    assert ENVIRONMENTS["leo"] is LEO


def test_region_upsets_are_found_and_repaired_by_the_scrubber():
    golden = np.arange(8192, dtype=np.float32)
    region = ProtectedRegion("weights:test", golden, block_size=64)
    sim = RadiationSimulator("flare", region_targets(region), rng=17, accelerate=1e3)
    records = sim.advance(20.0)
    data_hits = [r for r in records if "crc" not in r.site]
    blocks = [r.byte_offset // 64 for r in data_hits]
    # with this seed the upsets are sparse: no block is hit in two copies, so all repair
    assert len(data_hits) >= 5 and len(set(blocks)) == len(blocks)
    report = region.repair()
    assert report.repaired == len(set(blocks)) and report.unrepairable == 0
    assert region.verify().clean
    assert all(np.array_equal(region.copy(i), golden) for i in range(3))
