"""The scrub planner: how often upsets defeat the scrubber, and how fast it must scrub.

flight's repair rule (:mod:`flight.memory`) makes a block **unrepairable** at a check when no
candidate content can be proven good by its CRC. Within one scrub period ``T`` (the time
between two checks of a block) that happens, to leading order, in exactly these cases:

* data, 1 copy: the copy was hit (a one-copy region only detects);
* data, 2 copies: both copies were hit (no vote with two copies);
* data, 3 copies: all three were hit **and** their bitwise vote is wrong, i.e. some bit was
  flipped in at least two copies (otherwise the vote's CRC matches the table and repairs);
* the CRC-table entry (three copies, voted word by word): two table copies carry the *same*
  error (the majority is then wrong and no data copy matches it), or all three were hit (the
  copies all differ, and none is the true CRC). Two table copies hit differently leave the
  true CRC among the proofs, and one hit table copy is outvoted.

A CRC collision (2^-32) and two flips of one bit cancelling each other are neglected.

Model (the Poisson approximation): upsets arrive as a Poisson process at ``lam`` per bit per
second (the environment's rate times ``accelerate``); each is single-bit, or with probability
``f`` (the environment's multi-bit share) an adjacent cluster of ``k`` bits inside one aligned
32-bit word (k from :data:`flight.radiation.MBU_CLUSTER_SIZES`). For a block of ``n = 8 b``
bits, ``mu = lam n T`` hits per copy per period; a table entry gets ``mu_t = 32 lam T``.
With ``rho`` the probability that two random upsets in one block overlap in a bit and ``pi``
the probability that two upsets of one 32-bit entry are identical (for single bits only,
``rho = 1/n`` and ``pi = 1/32``), taking overlaps between copies as Poisson:

    P1 = 1 - e^-mu
    P2 = (1 - e^-mu)^2
    P3 = (1 - e^(-3 mu^2 rho)) - 3 e^-mu (1 - e^(-mu^2 rho))     (~ 3 mu^3 rho)
    h = 1 - e^-mu_t;   Ptab = 3 h^2 (1 - h) pi + h^3              (~ 3 mu_t^2 pi)
    P_block = 1 - (1 - P_c)(1 - Ptab) = P_c + Ptab - P_c Ptab

(P3: "some bit flipped in two copies" minus "... while the third copy is clean".) The
expected rate of unrepairable blocks is ``sum over blocks of P_block / T`` (each check starts
clean: a repaired block is clean, an unrepairable one is reloaded from its golden image), the
count over a mission of ``D`` days is Poisson, so ``P(at least one) = 1 - exp(-rate D)``.
For three copies the CRC table usually dominates at realistic rates: its term grows like
``T^2``, the data's like ``T^3 / n``.

The scrub period comes from the budget as the scrubber spends it: ``bytes_per_frame`` counts
every copy, whole blocks are checked, and the budget carries over from one region (or pass)
to the next within a frame. With one block cost ``c b`` for all regions a frame checks
``bytes_per_frame // (c b)`` blocks, so ``T = frame_s * blocks / that``; with mixed costs
``T ~ frame_s * pass_bytes / bytes_per_frame`` (off by at most one block per frame).

:func:`simulate` checks all of this against flight's own ProtectedRegion, Scrubber and
RadiationSimulator. ``hil plan`` is its command line (:mod:`hil.plan_cli`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flight import errors
from flight.environments import SECONDS_PER_DAY, get_environment

__all__ = [
    "DAYS_PER_YEAR",
    "Layout",
    "Plan",
    "Region",
    "SimulationResult",
    "UpsetModel",
    "block_probability",
    "bytes_per_frame_for",
    "data_probability",
    "layout_from_mission",
    "layout_from_model",
    "needed_period",
    "plan",
    "scrub_period",
    "simulate",
    "table_probability",
    "unrepairable_rate",
    "wilson",
]

DAYS_PER_YEAR = 365.25
WORD_BITS = 32  # MBU window (flight.radiation: 4-byte aligned words) and one CRC-table entry
TABLE_COPIES = 3  # flight.memory.CRC_TABLE_COPIES (not imported: keeps this module numpy-free)
MIN_BLOCK_SIZE = 64


# --- inputs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    """One protected region as the scrubber sees it: bytes of one copy, copies, block size."""

    name: str
    nbytes: int
    copies: int
    block_size: int

    def __post_init__(self) -> None:
        if not isinstance(self.nbytes, int) or self.nbytes < 0:
            raise errors.ConfigError(f"region {self.name!r}: bytes must be >= 0")
        if self.copies not in (1, 2, 3):
            raise errors.ConfigError(f"region {self.name!r}: copies must be 1..3")
        block = self.block_size
        if not isinstance(block, int) or block < MIN_BLOCK_SIZE or block % 8:
            raise errors.ConfigError(
                f"region {self.name!r}: block size must be a multiple of 8 and >= "
                f"{MIN_BLOCK_SIZE}, got {self.block_size}"
            )

    @property
    def nblocks(self) -> int:
        return -(-self.nbytes // self.block_size)

    @property
    def block_cost(self) -> int:
        """Scrub budget one block takes (every copy read)."""
        return self.block_size * self.copies

    def block_sizes(self) -> list[tuple[int, int]]:
        """(bytes, how many blocks of that size): full blocks and a short last one."""
        full, rest = divmod(self.nbytes, self.block_size)
        return [(s, n) for s, n in ((self.block_size, full), (rest, 1 if rest else 0)) if n]


@dataclass(frozen=True)
class Layout:
    """The protected regions one scrubber walks round-robin."""

    regions: tuple[Region, ...]

    @property
    def pass_bytes(self) -> int:
        """Budget of one full pass, a short last block charged whole (Scrubber.pass_budget)."""
        return sum(r.nblocks * r.block_cost for r in self.regions)

    @property
    def blocks(self) -> int:
        return sum(r.nblocks for r in self.regions)


@dataclass(frozen=True)
class UpsetModel:
    """Upsets per bit per day, the multi-bit share and cluster sizes, and the acceleration."""

    rate_per_bit_day: float
    multi_bit_fraction: float = 0.0
    cluster_sizes: tuple[tuple[int, float], ...] = ((2, 0.87), (3, 0.08), (4, 0.05))
    accelerate: float = 1.0
    name: str = "custom"

    def __post_init__(self) -> None:
        for what, value in (("rate", self.rate_per_bit_day), ("accelerate", self.accelerate)):
            if not math.isfinite(value) or value < 0:
                raise errors.ConfigError(f"{what} must be finite and >= 0, got {value}")
        if not 0.0 <= self.multi_bit_fraction <= 1.0:
            raise errors.ConfigError("multi-bit fraction must be in [0, 1]")
        if any(not 2 <= k <= WORD_BITS or p < 0 for k, p in self.cluster_sizes):
            raise errors.ConfigError("cluster sizes must be (2..32 bits, probability >= 0)")

    @classmethod
    def from_environment(cls, name: str, accelerate: float = 1.0) -> UpsetModel:
        """An orbit profile of :mod:`flight.environments` (``leo``, ``saa``, ``geo``, ``flare``)."""
        from flight.radiation import MBU_CLUSTER_SIZES

        env = get_environment(name)
        return cls(
            env.rate_per_bit_day,
            env.multi_bit_fraction,
            tuple(MBU_CLUSTER_SIZES),
            accelerate,
            env.name,
        )

    @property
    def per_bit_second(self) -> float:
        """The accelerated rate per bit per second: what the formulas use."""
        return self.rate_per_bit_day * self.accelerate / SECONDS_PER_DAY

    def _patterns(self) -> list[tuple[int, float]]:
        """(width in bits, probability) of one upset's pattern."""
        total = sum(p for _, p in self.cluster_sizes) or 1.0
        f = self.multi_bit_fraction
        return [(1, 1.0 - f)] + [(k, f * p / total) for k, p in self.cluster_sizes]

    def overlap_in_word(self) -> float:
        """P(two upsets landing in the same 32-bit word share a bit)."""
        out = 0.0
        for w1, p1 in self._patterns():
            for w2, p2 in self._patterns():
                n1, n2 = WORD_BITS - w1 + 1, WORD_BITS - w2 + 1
                hits = sum(1 for s in range(n1) for t in range(n2) if s < t + w2 and t < s + w1)
                out += p1 * p2 * hits / (n1 * n2)
        return out

    def identical_in_word(self) -> float:
        """P(two upsets of one 32-bit word flip exactly the same bits)."""
        return sum(p * p / (WORD_BITS - w + 1) for w, p in self._patterns())


# --- the model -----------------------------------------------------------------------------
def _one_minus_exp(x: float) -> float:
    return -math.expm1(-x)


def table_probability(upsets: UpsetModel, period_s: float) -> float:
    """P(a block's CRC-table entry defeats the check within one period)."""
    h = _one_minus_exp(WORD_BITS * upsets.per_bit_second * period_s)
    return 3 * h * h * (1 - h) * upsets.identical_in_word() + h**3


def data_probability(block_bytes: int, copies: int, upsets: UpsetModel, period_s: float) -> float:
    """P(a block's data copies cannot be repaired at the next check)."""
    bits = 8 * block_bytes
    mu = upsets.per_bit_second * bits * period_s
    if copies == 1:
        return _one_minus_exp(mu)
    if copies == 2:
        return _one_minus_exp(mu) ** 2
    rho = upsets.overlap_in_word() * WORD_BITS / bits if bits >= WORD_BITS else 1.0
    pair = mu * mu * rho
    return max(0.0, _one_minus_exp(3 * pair) - 3 * math.exp(-mu) * _one_minus_exp(pair))


def block_probability(block_bytes: int, copies: int, upsets: UpsetModel, period_s: float) -> float:
    """P(one block is found unrepairable at a check, ``period_s`` after the previous one)."""
    data = data_probability(block_bytes, copies, upsets, period_s)
    table = table_probability(upsets, period_s)
    return data + table - data * table  # 1 - (1 - data)(1 - table), without cancellation


def unrepairable_rate(layout: Layout, upsets: UpsetModel, period_s: float) -> float:
    """Expected unrepairable blocks per (accelerated) day, every region scrubbed every
    ``period_s`` seconds."""
    if not math.isfinite(period_s) or period_s <= 0:
        raise errors.ConfigError(f"scrub period must be > 0 s, got {period_s}")
    per_period = sum(
        count * block_probability(size, r.copies, upsets, period_s)
        for r in layout.regions
        for size, count in r.block_sizes()
    )
    return per_period / period_s * SECONDS_PER_DAY


def scrub_period(layout: Layout, bytes_per_frame: int, frame_s: float) -> float:
    """Mean seconds between two checks of a block, at ``bytes_per_frame`` a frame."""
    regions = [r for r in layout.regions if r.nblocks]
    if not regions:
        raise errors.ConfigError("the layout has no bytes to scrub")
    if not math.isfinite(frame_s) or frame_s <= 0:
        raise errors.ConfigError(f"frame length must be > 0 s, got {frame_s}")
    largest = max(r.block_cost for r in regions)
    if bytes_per_frame < largest:
        raise errors.ConfigError(
            f"scrub budget of {bytes_per_frame} bytes is below one block of the largest region "
            f"({largest} bytes in all copies): the scrubber could never finish a pass"
        )
    costs = {r.block_cost for r in regions}
    if len(costs) == 1:
        return frame_s * layout.blocks / (bytes_per_frame // costs.pop())
    return frame_s * layout.pass_bytes / bytes_per_frame


def bytes_per_frame_for(layout: Layout, period_s: float, frame_s: float) -> int:
    """The smallest budget per frame whose scrub period is at most ``period_s``."""
    costs = {r.block_cost for r in layout.regions if r.nblocks}
    largest = max(costs)
    if len(costs) == 1:
        cost = costs.pop()
        per_frame = math.ceil(layout.blocks * frame_s / period_s)
        return max(per_frame, 1) * cost
    return max(math.ceil(layout.pass_bytes * frame_s / period_s), largest)


def needed_period(
    layout: Layout, upsets: UpsetModel, target_per_day: float, *, longest_s: float = 1e12
) -> float | None:
    """The longest scrub period (to 0.1%) whose rate stays at or below ``target_per_day``;
    ``math.inf`` when every period up to ``longest_s`` meets it, None when not even a 1 us
    period does (a one-copy region: scrubbing only detects, the rate tends to the upset rate)."""
    if not math.isfinite(target_per_day) or target_per_day <= 0:
        raise errors.ConfigError(f"target must be finite and > 0, got {target_per_day}")
    period = 1e-6
    if unrepairable_rate(layout, upsets, period) > target_per_day:
        return None
    while unrepairable_rate(layout, upsets, period * 2) <= target_per_day:
        period *= 2
        if period > longest_s:
            return math.inf
    low, high = period, period * 2  # rate(low) <= target < rate(high)
    while high / low > 1.001:
        mid = math.sqrt(low * high)
        if unrepairable_rate(layout, upsets, mid) <= target_per_day:
            low = mid
        else:
            high = mid
    return low


# --- layouts from flight's files -------------------------------------------------------------
def layout_from_model(path: str | Path, copies: int, block_size: int) -> Layout:
    """The weights region flight builds for the ``.flm`` model at ``path``."""
    from flight.model import load

    Region("check", 0, copies, block_size)  # the specific errors before a slow load
    model = load(path, copies=1, block_size=block_size)
    name = Path(path).name
    return Layout((Region(name, model.weights.nbytes, copies, block_size),))


def layout_from_mission(path: str | Path) -> tuple[Layout, int, float]:
    """The regions a mission's scrubber walks (one weights region per model partition),
    its scrub budget per frame and its minor frame in seconds."""
    from flight.mission import load_mission
    from flight.model import load

    mission = load_mission(path)
    block = mission.scrub.block_size
    regions = []
    for p in mission.partitions:
        if p.model_path is None:
            continue
        model = load(p.model_path, copies=1, block_size=block)
        regions.append(Region(f"{p.name}/weights", model.weights.nbytes, p.weight_copies, block))
    if not regions:
        raise errors.ConfigError(f"mission {path}: no partition has protected weights")
    return Layout(tuple(regions)), mission.scrub.bytes_per_frame, mission.schedule.minor_frame_s


# --- the plan --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What ``hil plan`` reports (rates in accelerated time)."""

    environment: str
    rate_per_bit_day: float
    accelerate: float
    period_s: float
    bytes_per_frame: int | None
    frame_s: float | None
    regions: list[dict[str, Any]]
    unrepairable_per_day: float
    unrepairable_per_year: float
    mission_years: float
    p_at_least_one: float
    target_per_day: float | None
    needed_period_s: float | None
    needed_bytes_per_frame: int | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["needed_period_s"] == math.inf:
            out["needed_period_s"] = "any"
        return out


def plan(
    layout: Layout,
    upsets: UpsetModel,
    period_s: float,
    *,
    mission_years: float = 1.0,
    target_per_day: float | None = None,
    frame_s: float | None = None,
    bytes_per_frame: int | None = None,
) -> Plan:
    """The figures for one layout, upset rate and scrub period (and a target, if given)."""
    if not math.isfinite(mission_years) or mission_years <= 0:
        raise errors.ConfigError(f"mission length must be > 0 years, got {mission_years}")
    per_day = unrepairable_rate(layout, upsets, period_s)
    needed = needed_bytes = None
    if target_per_day is not None:
        needed = needed_period(layout, upsets, target_per_day)
        if needed is not None and frame_s is not None and needed >= frame_s:
            # the scrubber checks at most one pass a frame: no budget gives a shorter period
            if math.isfinite(needed):
                needed_bytes = bytes_per_frame_for(layout, needed, frame_s)
            else:
                needed_bytes = max(r.block_cost for r in layout.regions)
    return Plan(
        environment=upsets.name,
        rate_per_bit_day=upsets.rate_per_bit_day,
        accelerate=upsets.accelerate,
        period_s=period_s,
        bytes_per_frame=bytes_per_frame,
        frame_s=frame_s,
        regions=[asdict(r) | {"blocks": r.nblocks} for r in layout.regions],
        unrepairable_per_day=per_day,
        unrepairable_per_year=per_day * DAYS_PER_YEAR,
        mission_years=mission_years,
        p_at_least_one=_one_minus_exp(per_day * DAYS_PER_YEAR * mission_years),
        target_per_day=target_per_day,
        needed_period_s=needed,
        needed_bytes_per_frame=needed_bytes,
    )


# --- the check: a simulated campaign on flight's own code -----------------------------------
@dataclass(frozen=True)
class SimulationResult:
    """Unrepairable blocks the real scrubber reported, against the planner's prediction."""

    frames: int
    passes: int
    block_checks: int
    upsets: int
    unrepairable: int
    expected: float
    low: float
    high: float

    @property
    def agrees(self) -> bool:
        """The prediction lies inside the interval around the observed count."""
        return self.low <= self.expected <= self.high


def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials, ``z`` standard deviations."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def simulate(
    layout: Layout,
    upsets: UpsetModel,
    bytes_per_frame: int,
    frame_s: float,
    frames: int,
    *,
    seed: int = 0,
    z: float = 3.29,
) -> SimulationResult:
    """Run flight's scrubber over real regions for ``frames`` frames while a
    RadiationSimulator injects upsets at ``upsets``' rate (data copies and CRC tables), reload
    every block it reports unrepairable (as the supervisor does), and compare the count with
    the plan. The interval is Wilson's on unrepairable checks per block check (``z`` = 3.29:
    99.9%), scaled to a count."""
    import numpy as np

    from flight.environments import Environment
    from flight.memory import ProtectedRegion
    from flight.radiation import RadiationSimulator, region_targets
    from flight.scrub import Scrubber

    rng = np.random.default_rng(seed)
    regions, golden = [], {}
    for r in layout.regions:
        data = rng.integers(0, 256, size=r.nbytes, dtype=np.uint8)
        regions.append(ProtectedRegion(r.name, data, copies=r.copies, block_size=r.block_size))
        golden[r.name] = data
    by_name = {r.name: r for r in regions}
    env = Environment("plan", upsets.rate_per_bit_day, upsets.multi_bit_fraction, "", "")
    targets = [t for r in regions for t in region_targets(r)]
    sim = RadiationSimulator(
        env,
        targets,
        rng=rng,
        accelerate=upsets.accelerate,
        cluster_sizes=upsets.cluster_sizes,
    )
    scrubber = Scrubber(regions)
    unrepairable = 0
    for _ in range(frames):
        sim.advance(frame_s)
        step = scrubber.step(bytes_per_frame)
        unrepairable += step.unrepairable
        for name, block in step.unrepairable_blocks:
            region = by_name[name]
            start, stop = region.block_bytes(block)
            region.write(golden[name][start:stop], offset=start)
    checks = scrubber.counters.blocks_checked
    period = scrub_period(layout, bytes_per_frame, frame_s)
    per_check = unrepairable_rate(layout, upsets, period) / SECONDS_PER_DAY * period
    expected = per_check / layout.blocks * checks
    low, high = wilson(unrepairable, checks, z)
    return SimulationResult(
        frames=frames,
        passes=scrubber.counters.passes_completed,
        block_checks=checks,
        upsets=sum(sim.counts().values()),
        unrepairable=unrepairable,
        expected=expected,
        low=low * checks,
        high=high * checks,
    )
