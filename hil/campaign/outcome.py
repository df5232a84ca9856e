"""What one injection did: its outcome class and the full record of the run.

The record is the unit of everything downstream (the store, the statistics, the report), so it
carries what reproduces and explains the run (site, layer, bit, bytes read back before and
after) and not only the class. A run whose read-back showed no change is NOT_INJECTED, never
MASKED: counting it as masked would flatter every arm by the share of injections that missed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

__all__ = ["FAULTS", "SITES", "Outcome", "RunResult", "classify"]

#: Where an injection can land (``partition`` is the target of hangs and crashes).
SITES: tuple[str, ...] = (
    "weights",
    "activations",
    "outputs",
    "crc-tables",
    "cds",
    "process-memory",
    "partition",
)

#: Fault models.
FAULTS: tuple[str, ...] = ("seu", "mbu", "stuck-at", "hang", "crash")


class Outcome(StrEnum):
    """Outcome classes of one injection (docs/hil.md)."""

    MASKED = "masked"  # delivered, equal to golden, nothing had to be done
    CORRECTED = "corrected"  # delivered, equal to golden, the voter / scrubber / restart acted
    DUE = "due"  # detected and the output withheld
    SDC = "sdc"  # a wrong output delivered unflagged
    HANG = "hang"  # board level: a partition stopped answering (detected, recovered)
    CRASH = "crash"  # board level: a partition died (detected, recovered)
    NOT_INJECTED = "not_injected"  # the read-back showed no change


def classify(*, injected: bool, delivered: bool, matches_golden: bool, corrected: bool) -> Outcome:
    """The model-level classification rules (hil-spec): not injected first, then withheld
    (DUE), then equal to golden (CORRECTED if anything acted, else MASKED), else SDC."""
    if not injected:
        return Outcome.NOT_INJECTED
    if not delivered:
        return Outcome.DUE
    if matches_golden:
        return Outcome.CORRECTED if corrected else Outcome.MASKED
    return Outcome.SDC


@dataclass(frozen=True)
class RunResult:
    """One injection run. ``(arm, index)`` is unique in a campaign."""

    arm: str
    index: int
    site: str
    layer: str  # tensor / node / region / mapping name ("" if none)
    bit: int  # bit position inside its 32-bit word (0..31); -1 if n/a
    byte_offset: int  # inside the site (or address for process memory); -1 if n/a
    fault: str
    injected: bool  # the read-back showed a change
    old: str  # bytes read back before, hex
    new: str  # bytes read back after, hex
    outcome: Outcome
    top1_changed: bool | None = None  # SDC on a classifier: did the top-1 class change
    corrected_words: int = 0
    detect_s: float | None = None  # hang/crash: injection -> detection (board time)
    recover_s: float | None = None  # injection -> first good output again
    duration_s: float = 0.0  # wall time of the run (inference + harness)
    worker: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # an Outcome given as its string (a JSON or database round trip) becomes the enum;
        # anything inconsistent is a harness bug and raises here, not in the report
        object.__setattr__(self, "outcome", Outcome(self.outcome))
        if not self.arm:
            raise ValueError("RunResult.arm must be a non-empty string")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"RunResult.index must be an integer >= 0, not {self.index!r}")
        if self.site not in SITES:
            raise ValueError(f"RunResult.site {self.site!r} is not one of {', '.join(SITES)}")
        if self.fault not in FAULTS:
            raise ValueError(f"RunResult.fault {self.fault!r} is not one of {', '.join(FAULTS)}")
        if not -1 <= self.bit <= 31:
            raise ValueError(f"RunResult.bit {self.bit} is out of range -1 .. 31")
        if self.byte_offset < -1:
            raise ValueError(f"RunResult.byte_offset {self.byte_offset} is below -1")
        if (self.outcome is Outcome.NOT_INJECTED) == bool(self.injected):
            raise ValueError(
                f"RunResult {self.arm}/{self.index}: injected={self.injected} contradicts "
                f"outcome {self.outcome.value} (a run is NOT_INJECTED exactly when the "
                "read-back showed no change)"
            )
        if self.corrected_words < 0:
            raise ValueError(f"RunResult.corrected_words {self.corrected_words} is negative")
        for name in ("detect_s", "recover_s", "duration_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RunResult.{name} must be finite and >= 0, not {value!r}")

    # ---- the store's row (column order: ROW_FIELDS) and JSON -------------------------------

    def to_row(self) -> tuple[Any, ...]:
        """Values in :data:`ROW_FIELDS` order, as SQLite stores them (bools as 0/1, the
        outcome as its string, ``extra`` as JSON text)."""
        return tuple(_to_sql(name, getattr(self, name)) for name in ROW_FIELDS)

    @classmethod
    def from_row(cls, row: tuple[Any, ...] | Any) -> RunResult:
        """Inverse of :meth:`to_row` (a tuple, or an ``sqlite3.Row`` with these columns)."""
        values = tuple(row)[: len(ROW_FIELDS)]
        if len(values) != len(ROW_FIELDS):
            raise ValueError(f"a run row has {len(ROW_FIELDS)} values, got {len(values)}")
        return cls(**{n: _from_sql(n, v) for n, v in zip(ROW_FIELDS, values, strict=True)})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the outcome as its string)."""
        out = asdict(self)
        out["outcome"] = self.outcome.value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        return cls(**data)


#: RunResult fields in the order of :meth:`RunResult.to_row` (the store's ``runs`` columns,
#: where ``index`` is named ``idx``).
ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunResult))

_BOOLS = ("injected",)
_OPTIONAL_BOOLS = ("top1_changed",)


def _to_sql(name: str, value: Any) -> Any:
    if name in _BOOLS:
        return int(bool(value))
    if name in _OPTIONAL_BOOLS:
        return None if value is None else int(bool(value))
    if name == "outcome":
        return Outcome(value).value
    if name == "extra":
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def _from_sql(name: str, value: Any) -> Any:
    if name in _BOOLS:
        return bool(value)
    if name in _OPTIONAL_BOOLS:
        return None if value is None else bool(value)
    if name == "extra":
        return json.loads(value) if value else {}
    return value
