"""Simulated radiation: orbit environments, Poisson upset arrivals, acceleration.

An :class:`Environment` is an upset rate per bit per day (and the share of upsets that hit
several adjacent bits); the profiles live in :mod:`flight.environments` (no numpy, so the CLI
lists them cheaply) and are re-exported here. A :class:`RadiationSimulator` turns simulated
time into upsets in a set of named :class:`Target` buffers (weight copies, CRC tables,
activation arenas): upsets arrive as a Poisson process, land on a target with probability
proportional to its size and on a uniform bit within it, and are injected through
:mod:`flight.inject`, the same code the HIL harness uses. Real rates are tiny (a 300 KB weight
image in LEO sees one upset every few hours at most), so ``accelerate`` multiplies the rate to
exercise the protections in seconds.

Which numbers are measured and which are illustrative assumptions is said in each profile's
``source`` and in docs/radiation.md. Everything random comes from one seeded
``numpy.random.Generator``: the same seed and the same sequence of :meth:`advance` calls give
the same upsets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flight import errors
from flight.environments import (
    ENVIRONMENTS,
    FLARE,
    GEO,
    LEO,
    SAA,
    SAA_FACTOR,
    SECONDS_PER_DAY,
    Environment,
    get_environment,
)
from flight.inject import Injection, MultiBitUpset, SingleBitUpset, apply, as_bytes, plan

__all__ = [
    "ENVIRONMENTS",
    "FLARE",
    "GEO",
    "LEO",
    "MBU_CLUSTER_SIZES",
    "SAA",
    "SAA_FACTOR",
    "SECONDS_PER_DAY",
    "Environment",
    "RadiationSimulator",
    "Target",
    "TargetCounters",
    "acceleration_for",
    "expected_upsets",
    "get_environment",
    "mean_time_between_upsets",
    "probability_of_no_upset",
    "region_targets",
    "upsets_per_second",
]


#: Multi-bit upset cluster sizes and their probabilities. Illustrative: 2-bit clusters get
#: ~87% (Alsat-1's 1.22% double errors out of its 1.4% non-single upsets); 3 and 4 share the rest.
MBU_CLUSTER_SIZES: tuple[tuple[int, float], ...] = ((2, 0.87), (3, 0.08), (4, 0.05))


# --- arithmetic for docs, CLIs and statistics ---------------------------------------------------
def upsets_per_second(env: Environment | str, bits: int, accelerate: float = 1.0) -> float:
    """Mean upsets per (simulated) second over ``bits`` bits."""
    return get_environment(env).rate_per_bit_second * bits * accelerate


def expected_upsets(
    env: Environment | str, bits: int, seconds: float, accelerate: float = 1.0
) -> float:
    """Mean number of upsets (the Poisson mean) in ``bits`` bits over ``seconds``."""
    return upsets_per_second(env, bits, accelerate) * seconds


def mean_time_between_upsets(env: Environment | str, bits: int, accelerate: float = 1.0) -> float:
    """Mean seconds between upsets over ``bits`` bits (inf when the rate is zero)."""
    rate = upsets_per_second(env, bits, accelerate)
    return math.inf if rate == 0 else 1.0 / rate


def probability_of_no_upset(
    env: Environment | str, bits: int, seconds: float, accelerate: float = 1.0
) -> float:
    """P(no upset at all in ``bits`` bits over ``seconds``) = exp(-mean)."""
    return math.exp(-expected_upsets(env, bits, seconds, accelerate))


def acceleration_for(env: Environment | str, bits: int, per_second: float) -> float:
    """The ``accelerate`` that gives ``per_second`` upsets per second over ``bits`` bits:
    how to choose ``--accelerate`` for a wanted upset rate."""
    rate = upsets_per_second(env, bits)
    if rate == 0:
        raise errors.ConfigError(f"environment {get_environment(env).name!r} has a zero rate")
    return per_second / rate


# --- targets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A named memory area radiation can hit.

    ``buffer`` is a writable buffer (its ``bits`` default to its size), or a zero-argument
    callable returning the buffer now, or None when the memory holds nothing live (an
    activation between the node that writes it and the last node that reads it). A callable
    target needs ``bits``: the memory is exposed, hence hit, whether or not it is live; a hit
    on dead memory is counted as ``missed`` (masked by construction) and changes nothing.

    ``apply=False`` draws upsets for the target but does not write them: :meth:`advance`
    returns them as planned records (``Injection.applied`` False) for the memory's real owner
    (e.g. a forked worker holding its own copy of an activation arena) to replay with
    ``inject.apply(record.fault, its_buffer)``.
    """

    name: str
    buffer: Any
    bits: int | None = None
    apply: bool = True
    _view: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise errors.ConfigError("a radiation target needs a name")
        if callable(self.buffer):
            if self.bits is None or self.bits < 0:
                raise errors.ConfigError(f"target {self.name!r}: a callable target needs bits")
            return
        view = as_bytes(self.buffer)
        if self.bits is None:
            object.__setattr__(self, "bits", 8 * view.size)
        elif self.bits != 8 * view.size:
            raise errors.ConfigError(
                f"target {self.name!r}: bits={self.bits} but the buffer has {8 * view.size}"
            )
        object.__setattr__(self, "_view", view)

    def resolve(self) -> np.ndarray | None:
        """The target's bytes now (None when not live)."""
        if self._view is not None:
            return self._view
        current = self.buffer()
        if current is None:
            return None
        view = as_bytes(current)
        return view if view.size else None


def region_targets(region: Any, *, tables: bool = True) -> list[Target]:
    """Targets for every data copy of a :class:`~flight.memory.ProtectedRegion` (named
    ``"<region>[i]"``) and, with ``tables``, its CRC-table copies (``"<region>.crc[i]"``)."""
    out = [Target(f"{region.name}[{i}]", region.raw(i)) for i in range(region.copies)]
    if tables:
        from flight.memory import CRC_TABLE_COPIES

        out += [
            Target(f"{region.name}.crc[{i}]", region.crc_table(i)) for i in range(CRC_TABLE_COPIES)
        ]
    return out


@dataclass
class TargetCounters:
    """What radiation did to one target: ``upsets`` arrived (``multi_bit`` of them clusters),
    ``missed`` of them found the memory not live, ``bits_flipped`` bits were hit in total
    (planned ones of an ``apply=False`` target included), over
    ``exposed_seconds`` of simulated time (accelerated rate: multiply by ``accelerate`` for
    the equivalent time in orbit)."""

    upsets: int = 0
    multi_bit: int = 0
    missed: int = 0
    bits_flipped: int = 0
    exposed_seconds: float = 0.0


# --- the simulator ------------------------------------------------------------------------------
class RadiationSimulator:
    """Poisson upsets over named targets, driven by simulated time.

    Each :meth:`advance` draws the number of upsets in ``dt`` seconds over all (or the chosen)
    targets' bits as Poisson(rate_per_bit_second x bits x dt x accelerate), then for each one
    a target (probability proportional to its bits), single-bit or multi-bit (the
    environment's ``multi_bit_fraction``; cluster size from ``cluster_sizes``, inside an
    aligned ``mbu_window``-byte word) and a uniform location, and injects it. ``rng`` (a
    Generator or a seed) or ``seed`` seeds every draw (default: seed 0).
    Disjoint Poisson intervals are independent, so many small advances and one large one have
    the same statistics.
    """

    def __init__(
        self,
        environment: Environment | str,
        targets: Iterable[Target],
        rng: np.random.Generator | int | None = None,
        accelerate: float = 1.0,
        *,
        seed: int | None = None,
        mbu_window: int = 4,
        cluster_sizes: Sequence[tuple[int, float]] = MBU_CLUSTER_SIZES,
        max_upsets_per_advance: int = 1_000_000,
    ) -> None:
        self.environment = get_environment(environment)
        self.targets: list[Target] = list(targets)
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise errors.ConfigError(f"radiation target names must be unique: {names}")
        if not math.isfinite(accelerate) or accelerate < 0:
            raise errors.ConfigError(f"accelerate must be finite and >= 0, got {accelerate}")
        self.accelerate = float(accelerate)
        if rng is not None and seed is not None:
            raise errors.ConfigError("give rng or seed, not both")
        if rng is None:
            rng = 0 if seed is None else seed
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        sizes = np.array([k for k, _ in cluster_sizes], dtype=np.int64)
        probs = np.array([p for _, p in cluster_sizes], dtype=np.float64)
        if not sizes.size or (sizes < 2).any() or (probs < 0).any() or probs.sum() <= 0:
            raise errors.ConfigError("cluster_sizes must be (k >= 2, probability) pairs")
        self._cluster_sizes = sizes
        self._cluster_probs = probs / probs.sum()
        MultiBitUpset(int(sizes.max()), mbu_window)  # validates the window for every size
        self.mbu_window = mbu_window
        self.max_upsets_per_advance = max_upsets_per_advance
        self._bits = [int(t.bits or 0) for t in self.targets]
        self._index = {t.name: i for i, t in enumerate(self.targets)}
        self.counters: dict[str, TargetCounters] = {t.name: TargetCounters() for t in self.targets}

    @property
    def total_bits(self) -> int:
        return sum(self._bits)

    def rate(self, only: Iterable[str] | None = None) -> float:
        """Mean upsets per simulated second over all (or the ``only``) targets."""
        bits = sum(self._bits[i] for i in self._select(only))
        return self.environment.rate_per_bit_second * bits * self.accelerate

    def _select(self, only: Iterable[str] | None) -> list[int]:
        if only is None:
            return list(range(len(self.targets)))
        if isinstance(only, str):
            only = [only]
        try:
            return [self._index[name] for name in only]
        except KeyError as exc:
            raise errors.ConfigError(f"no radiation target {exc.args[0]!r}") from None

    def advance(self, dt: float, only: Iterable[str] | None = None) -> list[Injection]:
        """Let ``dt`` simulated seconds of radiation hit the targets; return the injections.

        ``only`` restricts exposure to the named targets: an activation buffer is exposed
        only while it is live, so ``flight run`` can advance it from a ``Replica.run``
        ``after=`` hook for the time its data matters, and the weights for the whole frame.
        Upsets that found a callable target not live are counted, not returned.
        """
        if not math.isfinite(dt) or dt < 0:
            raise errors.ConfigError(f"dt must be finite and >= 0, got {dt}")
        chosen = self._select(only)
        for i in chosen:
            self.counters[self.targets[i].name].exposed_seconds += dt
        bits = np.array([self._bits[i] for i in chosen], dtype=np.int64)
        total = int(bits.sum())
        mean = self.environment.rate_per_bit_second * total * dt * self.accelerate
        if mean > self.max_upsets_per_advance:
            raise errors.ConfigError(
                f"{mean:.3g} upsets expected in one advance of {dt} s: lower accelerate or dt "
                f"(limit max_upsets_per_advance={self.max_upsets_per_advance})"
            )
        if mean <= 0:
            return []
        n = int(self.rng.poisson(mean))
        if n == 0:
            return []
        rng = self.rng
        hit = np.searchsorted(np.cumsum(bits), rng.integers(total, size=n), side="right")
        multi = rng.random(n) < self.environment.multi_bit_fraction
        ks = rng.choice(self._cluster_sizes, size=n, p=self._cluster_probs)
        out: list[Injection] = []
        for j in range(n):
            target = self.targets[chosen[int(hit[j])]]
            counters = self.counters[target.name]
            counters.upsets += 1
            view = target.resolve()
            if view is None:
                counters.missed += 1
                continue
            if multi[j]:
                counters.multi_bit += 1
                fault: SingleBitUpset | MultiBitUpset = MultiBitUpset(int(ks[j]), self.mbu_window)
            else:
                fault = SingleBitUpset()
            inject = apply if target.apply else plan
            injection = inject(fault, view, rng, site=target.name)
            counters.bits_flipped += len(injection.bits)
            out.append(injection)
        return out

    def counts(self) -> dict[str, int]:
        """Upsets that arrived in each target so far."""
        return {name: c.upsets for name, c in self.counters.items()}

    def summary(self) -> dict[str, Any]:
        """Counters in a plain form for ``flight run --json`` and telemetry."""
        return {
            "environment": self.environment.name,
            "accelerate": self.accelerate,
            "rate_per_bit_day": self.environment.rate_per_bit_day,
            "targets": {
                name: {
                    "bits": self._bits[self._index[name]],
                    "upsets": c.upsets,
                    "multi_bit": c.multi_bit,
                    "missed": c.missed,
                    "bits_flipped": c.bits_flipped,
                    "exposed_seconds": c.exposed_seconds,
                }
                for name, c in self.counters.items()
            },
        }
