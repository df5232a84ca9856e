"""Radiation environments: the orbit profiles and their upset rates, and nothing heavy.

Split from :mod:`flight.radiation` so that the command line can offer ``--environment``
choices from the one table without importing numpy and the injector at parser build time
(slow on a board). :mod:`flight.radiation` re-exports every name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flight import errors

__all__ = [
    "ENVIRONMENTS",
    "FLARE",
    "GEO",
    "LEO",
    "SAA",
    "SAA_FACTOR",
    "SECONDS_PER_DAY",
    "Environment",
    "get_environment",
]

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Environment:
    """An orbit (or event) profile: how often one bit of commercial SRAM is upset.

    ``rate_per_bit_day`` is upsets per bit per day; ``multi_bit_fraction`` is the share of
    upsets that are multi-bit (adjacent clusters); ``source`` says whether the numbers are
    measured (and where) or an illustrative assumption.
    """

    name: str
    rate_per_bit_day: float
    multi_bit_fraction: float
    description: str
    source: str

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate_per_bit_day) or self.rate_per_bit_day < 0:
            raise errors.ConfigError(f"environment {self.name!r}: rate must be finite and >= 0")
        if not 0.0 <= self.multi_bit_fraction <= 1.0:
            raise errors.ConfigError(
                f"environment {self.name!r}: multi_bit_fraction must be in [0, 1]"
            )

    @property
    def rate_per_bit_second(self) -> float:
        return self.rate_per_bit_day / SECONDS_PER_DAY


#: Measured: commercial SRAM in the OBC of Alsat-1 (686 km sun-synchronous LEO), 8 years.
LEO = Environment(
    "leo",
    4.04e-7,
    0.014,
    "Low Earth orbit, orbit average (South Atlantic Anomaly passes included), commercial SRAM.",
    "Measured: Alsat-1 OBC386 commercial SRAM, 8 years in a 686 km sun-synchronous orbit: "
    "4.04e-7 SEU/bit/day, 98.6% single-bit (Y. Bentoutou, 'A Review of in-orbit Observations "
    "of Radiation-Induced Effects in Commercial Memories onboard Alsat-1').",
)

#: Rate during a South Atlantic Anomaly pass, relative to the LEO orbit average.
SAA_FACTOR = 30.0

SAA = Environment(
    "saa",
    SAA_FACTOR * LEO.rate_per_bit_day,
    LEO.multi_bit_fraction,
    "During a South Atlantic Anomaly pass of a LEO orbit (trapped protons).",
    f"Illustrative assumption: {SAA_FACTOR:g}x the Alsat-1 orbit average, i.e. ~90% of LEO "
    "upsets falling in the ~3% of orbit time spent in the anomaly's core. That upsets "
    "concentrate there is observed (UoSAT-2, Alsat-1); the factor is not a measurement.",
)

GEO = Environment(
    "geo",
    1.0e-6,
    0.05,
    "Geostationary orbit, quiet sun (galactic cosmic rays only, no trapped protons).",
    "Illustrative assumption: same order as LEO for commercial SRAM (heavy ions no longer "
    "screened by the magnetosphere, but no trapped protons); heavy ions make MBUs more "
    "frequent (5% assumed). Use a CREME96 prediction for the real part.",
)

FLARE = Environment(
    "flare",
    1.0e-4,
    0.05,
    "Peak of a large solar particle event (solar flare / CME protons and ions), outside LEO.",
    "Illustrative assumption: 100x quiet GEO. In-orbit SEU rates rise by orders of magnitude "
    "during large solar proton events (Alsat-1 saw its rate spikes track GOES high-energy "
    "protons); the peak depends on the event, the shielding and the part.",
)

#: The profiles ``flight run --environment`` accepts.
ENVIRONMENTS: dict[str, Environment] = {e.name: e for e in (LEO, SAA, GEO, FLARE)}


def get_environment(name: str | Environment) -> Environment:
    """The profile called ``name`` (what ``--environment`` names), or ``name`` itself."""
    if isinstance(name, Environment):
        return name
    try:
        return ENVIRONMENTS[name.lower()]
    except (KeyError, AttributeError):
        raise errors.ConfigError(
            f"unknown radiation environment {name!r}; known: {', '.join(ENVIRONMENTS)}"
        ) from None
