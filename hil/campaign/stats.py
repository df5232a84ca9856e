"""Confidence intervals over outcome counts, per arm and per stratum, updated run by run.

Rates are Wilson score intervals (Wilson 1927): unlike the normal approximation they stay inside
[0, 1] and give a useful upper bound at zero events, which is the figure a TMR arm with no SDC
reports. Every rate is over the *injected* runs: NOT_INJECTED runs are counted apart and never
enter a denominator (issue 10).

Early stop is the iterative statistical fault injection of Ruospo et al. (2023, 2025): keep
injecting until every stratum's interval is as narrow as the margin asked for. Strata with only
a handful of runs are left out of that test (their interval says nothing yet, and a stratum
that the fault space makes rare would otherwise keep a campaign running forever), but the arm
as a whole always takes part.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from hil.campaign.outcome import Outcome, RunResult

__all__ = ["KINDS", "Interval", "Strata", "wilson"]

#: Stratum kinds: the arm itself, then per site, per layer and per bit position.
KINDS: tuple[str, ...] = ("arm", "site", "layer", "bit")

#: Runs a stratum needs before early stop looks at it.
MIN_STRATUM_RUNS = 30


@dataclass(frozen=True)
class Interval:
    """A proportion and its confidence interval."""

    estimate: float  # k / n (nan when n = 0)
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_json(self) -> dict[str, float | None]:
        """JSON-ready (nan, which JSON lacks, as null)."""
        return {
            "estimate": None if math.isnan(self.estimate) else self.estimate,
            "low": self.low,
            "high": self.high,
        }


def wilson(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for ``k`` events in ``n`` trials (n = 0: (nan, 0, 1))."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} is outside (0, 1)")
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Interval(math.nan, 0.0, 1.0)
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = k / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    # exact ends where the algebra says so (rounding must not push them past the estimate)
    low = 0.0 if k == 0 else max(0.0, min(p, centre - half))
    high = 1.0 if k == n else min(1.0, max(p, centre + half))
    return Interval(p, low, high)


class Strata:
    """Outcome counts per arm and per (arm, site), (arm, layer), (arm, bit)."""

    def __init__(self, confidence: float = 0.95) -> None:
        if not 0 < confidence < 1:
            raise ValueError(f"confidence {confidence} is outside (0, 1)")
        self.confidence = confidence
        # (kind, key) -> outcome counts; key is the arm name, or (arm, value) for the others
        self._counts: dict[tuple[str, Any], Counter[Outcome]] = {}

    def add(self, results: Iterable[RunResult]) -> None:
        for r in results:
            for kind, key in (
                ("arm", r.arm),
                ("site", (r.arm, r.site)),
                ("layer", (r.arm, r.layer)),
                ("bit", (r.arm, r.bit)),
            ):
                self._counts.setdefault((kind, key), Counter())[r.outcome] += 1

    def counts(self, kind: str, key: Any) -> dict[Outcome, int]:
        """Counts of every outcome class (zeros included) in one stratum."""
        _check_kind(kind)
        c = self._counts.get((kind, key), Counter())
        return {o: c[o] for o in Outcome}

    def runs(self, kind: str, key: Any) -> int:
        """All runs of a stratum, not-injected ones included."""
        return sum(self.counts(kind, key).values())

    def injected(self, kind: str, key: Any) -> int:
        """The denominator of every rate: runs whose injection landed."""
        c = self.counts(kind, key)
        return sum(c.values()) - c[Outcome.NOT_INJECTED]

    def interval(self, kind: str, key: Any, outcome: Outcome = Outcome.SDC) -> Interval:
        """Rate of ``outcome`` among the injected runs of a stratum."""
        if outcome is Outcome.NOT_INJECTED:
            raise ValueError("NOT_INJECTED is not a rate over injected runs")
        return wilson(self.counts(kind, key)[outcome], self.injected(kind, key), self.confidence)

    def arms(self) -> list[str]:
        return sorted(key for kind, key in self._counts if kind == "arm")

    def keys(self, kind: str, arm: str) -> list[Any]:
        """The values seen for ``kind`` in ``arm`` (sites, layers or bits), sorted."""
        _check_kind(kind)
        if kind == "arm":
            return [arm] if ("arm", arm) in self._counts else []
        return sorted(key[1] for k, key in self._counts if k == kind and key[0] == arm)

    def met(
        self,
        margin: float,
        outcome: Outcome = Outcome.SDC,
        arm: str | None = None,
        min_runs: int = MIN_STRATUM_RUNS,
    ) -> bool:
        """Early stop: every stratum of ``arm`` (of every arm if None) with at least
        ``min_runs`` injected runs has an interval half-width <= ``margin``; the arm itself
        must always have ``min_runs`` and meet it."""
        if not 0 < margin < 1:
            raise ValueError(f"margin {margin} is outside (0, 1)")
        arms = self.arms() if arm is None else [arm]
        if not arms:
            return False
        for a in arms:
            if self.injected("arm", a) < max(min_runs, 1):
                return False
            if self.interval("arm", a, outcome).half_width > margin:
                return False
            for kind in KINDS[1:]:
                for value in self.keys(kind, a):
                    key = (a, value)
                    if self.injected(kind, key) < min_runs:
                        continue
                    if self.interval(kind, key, outcome).half_width > margin:
                        return False
        return True

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state for the live display and the report:
        ``arms.<name>.{runs, injected, counts.<class>, sdc_rate, by_site, by_layer, by_bit}``,
        each ``by_*`` entry with the same ``runs``/``injected``/``counts``/``sdc_rate``."""
        arms: dict[str, Any] = {}
        for a in self.arms():
            entry = self._stratum("arm", a)
            for kind in KINDS[1:]:
                entry[f"by_{kind}"] = {
                    str(value): self._stratum(kind, (a, value)) for value in self.keys(kind, a)
                }
            arms[a] = entry
        return {"confidence": self.confidence, "arms": arms}

    def _stratum(self, kind: str, key: Any) -> dict[str, Any]:
        counts = self.counts(kind, key)
        return {
            "runs": sum(counts.values()),
            "injected": self.injected(kind, key),
            "counts": {o.value: n for o, n in counts.items()},
            "sdc_rate": self.interval(kind, key, Outcome.SDC).to_json(),
        }


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"stratum kind {kind!r} is not one of {', '.join(KINDS)}")
