"""Redundancy modes: the one definition the mission, the recovery machine, the executor, the
supervisor and the command line all import.

``MODES`` is ordered most redundant first, which is also the degradation ladder
(TMR -> DWC -> simplex). ``"none"`` is simplex. This module imports nothing, so validating a
mission or building the CLI's argument choices stays cheap.
"""

from __future__ import annotations

__all__ = ["MODES", "REPLICAS", "degraded", "replicas"]

#: Redundancy modes, most redundant first: the order in which a failing partition degrades.
MODES: tuple[str, ...] = ("tmr", "dwc", "none")

#: How many replicas (and at least how many weight copies) each mode runs.
REPLICAS: dict[str, int] = {"tmr": 3, "dwc": 2, "none": 1}


def replicas(mode: str) -> int:
    """Replicas that ``mode`` runs; KeyError names an unknown mode (a bug, not a fault)."""
    return REPLICAS[mode]


def degraded(mode: str) -> str | None:
    """The next mode down the ladder, or None for simplex."""
    index = MODES.index(mode)
    return MODES[index + 1] if index + 1 < len(MODES) else None
