"""Wilson intervals and the strata of a campaign: known values, the properties every interval
must have, rates over injected runs only, and the early-stop rule."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.campaign.outcome import Outcome, RunResult
from hil.campaign.stats import Strata, wilson


def run(arm="none", index=0, outcome=Outcome.MASKED, site="weights", layer="conv1", bit=3):
    return RunResult(
        arm=arm, index=index, site=site, layer=layer, bit=bit, byte_offset=4, fault="seu",
        injected=outcome is not Outcome.NOT_INJECTED, old="00", new="08", outcome=outcome,
    )  # fmt: skip


def test_wilson_known_values():
    # Wilson 1927 / Newcombe 1998 table: 81/263 at 95 % -> 0.2553 .. 0.3662
    ci = wilson(81, 263)
    assert ci.estimate == pytest.approx(81 / 263)
    assert (round(ci.low, 4), round(ci.high, 4)) == (0.2553, 0.3662)
    # zero events: the "rule of three"-like upper bound z^2 / (n + z^2)
    zero = wilson(0, 10_000)
    assert zero.low == 0.0 and zero.estimate == 0.0
    assert zero.high == pytest.approx(1.959964**2 / (10_000 + 1.959964**2), rel=1e-5)
    assert wilson(10, 10).high == 1.0
    # at 0 and n events the algebra gives exact ends that rounding must not move past [0, 1]
    for n in range(1, 300):
        none, every = wilson(0, n), wilson(n, n)
        assert none.low == 0.0 and every.high == 1.0
        assert 0.0 <= none.low <= none.high <= 1.0 and 0.0 <= every.low <= every.high <= 1.0
    empty = wilson(0, 0)
    assert math.isnan(empty.estimate) and (empty.low, empty.high) == (0.0, 1.0)
    assert wilson(5, 100, 0.99).half_width > wilson(5, 100, 0.95).half_width
    for bad in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            wilson(*bad)
    with pytest.raises(ValueError):
        wilson(1, 5, confidence=1.0)


@given(st.integers(0, 10**7), st.data(), st.floats(0.5, 0.999))
def test_wilson_holds_its_estimate_inside_0_1(n, data, confidence):
    k = data.draw(st.integers(0, n))
    ci = wilson(k, n, confidence)
    assert 0.0 <= ci.low <= ci.high <= 1.0
    if n:
        assert ci.low <= ci.estimate <= ci.high
        assert ci.estimate == k / n


@given(st.integers(0, 10**5), st.integers(1, 10**5), st.integers(2, 50))
def test_wilson_narrows_as_n_grows(k, extra, factor):
    n = k + extra
    # the same proportion on more runs: a narrower interval
    assert wilson(k * factor, n * factor).half_width <= wilson(k, n).half_width + 1e-12
    # no event in more runs: a lower upper bound
    assert wilson(0, n + extra).high <= wilson(0, n).high


def test_rates_are_over_injected_runs_and_not_injected_is_counted_apart():
    s = Strata()
    s.add(run(index=i, outcome=Outcome.SDC) for i in range(2))
    s.add(run(index=i, outcome=Outcome.MASKED) for i in range(2, 8))
    s.add(run(index=i, outcome=Outcome.NOT_INJECTED) for i in range(8, 18))
    assert s.runs("arm", "none") == 18 and s.injected("arm", "none") == 8
    assert s.interval("arm", "none").estimate == 2 / 8
    counts = s.counts("arm", "none")
    assert counts[Outcome.NOT_INJECTED] == 10 and counts[Outcome.MASKED] == 6
    assert counts[Outcome.CORRECTED] == 0  # every class present
    with pytest.raises(ValueError, match="NOT_INJECTED"):
        s.interval("arm", "none", Outcome.NOT_INJECTED)
    with pytest.raises(ValueError, match="kind"):
        s.counts("tensor", ("none", "x"))


def test_strata_split_by_arm_site_layer_and_bit():
    s = Strata(confidence=0.9)
    s.add([
        run("none", 0, Outcome.SDC, "weights", "conv1", 30),
        run("none", 1, Outcome.MASKED, "weights", "fc1", 2),
        run("none", 2, Outcome.SDC, "outputs", "out", 30),
        run("tmr", 0, Outcome.CORRECTED, "weights", "conv1", 30),
    ])  # fmt: skip
    assert s.arms() == ["none", "tmr"]
    assert s.keys("site", "none") == ["outputs", "weights"]
    assert s.keys("layer", "none") == ["conv1", "fc1", "out"]
    assert s.keys("bit", "none") == [2, 30]
    assert s.interval("site", ("none", "weights")).estimate == 0.5
    assert s.interval("bit", ("none", 30)).estimate == 1.0
    assert s.interval("layer", ("tmr", "conv1")).estimate == 0.0
    assert s.interval("arm", "tmr", Outcome.CORRECTED).estimate == 1.0
    snap = s.snapshot()
    json.dumps(snap, allow_nan=False)  # JSON as it stands
    none = snap["arms"]["none"]
    assert (none["runs"], none["injected"], none["counts"]["sdc"]) == (3, 3, 2)
    assert none["sdc_rate"]["estimate"] == pytest.approx(2 / 3)
    assert none["sdc_rate"]["low"] == pytest.approx(wilson(2, 3, 0.9).low)
    assert set(none["by_site"]) == {"weights", "outputs"}
    assert none["by_bit"]["30"]["counts"]["sdc"] == 2
    assert none["by_layer"]["fc1"]["sdc_rate"]["high"] == pytest.approx(wilson(0, 1, 0.9).high)
    assert snap["confidence"] == 0.9


def test_a_stratum_without_injected_runs_has_no_estimate_in_json():
    s = Strata()
    s.add([run(outcome=Outcome.NOT_INJECTED)])
    rate = s.snapshot()["arms"]["none"]["sdc_rate"]
    assert rate == {"estimate": None, "low": 0.0, "high": 1.0}


def test_early_stop_waits_for_every_stratum_with_enough_runs():
    s = Strata()
    assert not s.met(0.05)  # nothing yet
    # 1,000 masked runs over two sites: the SDC interval is narrow everywhere
    s.add(run(index=i, site="weights" if i % 2 else "outputs") for i in range(1000))
    assert s.met(0.01)
    assert s.met(0.01, arm="none")
    # a third site with 40 runs, half SDC: its interval is wide, so not yet
    s.add(
        run(index=1000 + i, site="activations", outcome=Outcome.SDC if i % 2 else Outcome.MASKED)
        for i in range(40)
    )
    assert not s.met(0.05)
    assert s.met(0.2)
    # fewer than min_runs in the wide stratum: it is left out of the test
    assert s.met(0.05, min_runs=41)
    # the arm itself always counts, however few runs it has
    few = Strata()
    few.add(run(index=i) for i in range(5))
    assert not few.met(0.5)
    assert few.met(0.5, min_runs=5)
    # per arm: a second arm with few runs does not hold back the first
    s.add(run(arm="tmr", index=i) for i in range(3))
    assert not s.met(0.2)
    assert s.met(0.2, arm="none")
    # the outcome asked for: the activations stratum is wide for SDC, and also for MASKED
    assert not s.met(0.05, outcome=Outcome.MASKED, arm="none")
    assert s.met(0.05, outcome=Outcome.DUE, arm="none")
    with pytest.raises(ValueError):
        s.met(0.0)


def test_classification_rules():
    from hil.campaign.outcome import classify

    def c(injected=True, delivered=True, matches_golden=True, corrected=False):
        return classify(
            injected=injected, delivered=delivered, matches_golden=matches_golden,
            corrected=corrected,
        )  # fmt: skip

    # an injection that did not land is never masked, whatever else happened
    assert c(injected=False) is Outcome.NOT_INJECTED
    assert c(injected=False, delivered=False, matches_golden=False) is Outcome.NOT_INJECTED
    assert c(delivered=False, matches_golden=False, corrected=True) is Outcome.DUE
    assert c() is Outcome.MASKED
    assert c(corrected=True) is Outcome.CORRECTED
    assert c(matches_golden=False) is Outcome.SDC
    assert c(matches_golden=False, corrected=True) is Outcome.SDC
