"""Contact windows: when the downlink store may drain.

A board in low orbit sees a ground station a few minutes per pass. The mission says when
(``[link] contact``): ``"always"`` (the default: a bench, a HIL rig, a relay), ``"command"``
(closed until the ground opens it) or a list of passes, each an ISO-8601 UTC start and a
duration. The ground may also open the link for a while or close it by command: a commanded
open adds to the schedule; a commanded close wins until the next scheduled window starts or the
next commanded open. Overlapping or adjacent windows make one continuous contact (one
CONTACT_OPENED, one CONTACT_CLOSED).

Nothing here reads a clock: every call takes ``now`` (unix seconds, UTC), so tests run on a
fake clock and the supervisor passes the time it already took for the frame.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flight import errors, events

__all__ = ["ALWAYS", "ContactConfig", "ContactSchedule", "Window", "parse_contact"]

#: Longest window the mission may declare, the same bound as the open_contact command's.
MAX_WINDOW_S = 86400
_WINDOW_KEYS = ("start", "duration_s")


@dataclass(frozen=True)
class Window:
    """One scheduled contact: [start, start + duration_s), unix seconds UTC."""

    start: float
    duration_s: float

    @property
    def end(self) -> float:
        return self.start + self.duration_s


@dataclass(frozen=True)
class ContactConfig:
    """The mission's contact setting: ``mode`` is "always", "command" or "windows"."""

    mode: str
    windows: tuple[Window, ...] = ()


ALWAYS = ContactConfig("always")


def parse_contact(value: Any, where: str) -> ContactConfig:
    """The mission's ``contact`` value (``"always"`` or ``"command"``) or its list of window
    tables (``[[link.window]]``: ``start = "2026-12-01T10:00:00Z"``, ``duration_s = 600``), as
    a :class:`ContactConfig`. ``where`` starts every error message (file and table)."""
    if isinstance(value, str):
        if value in ("always", "command"):
            return ContactConfig(value)
        raise errors.ConfigError(
            f'{where}: contact must be "always", "command" or a list of windows, not {value!r}'
        )
    if not isinstance(value, list | tuple):
        raise errors.ConfigError(
            f'{where}: contact must be "always", "command" or a list of windows '
            f"([[link.window]] with start and duration_s), not {value!r}"
        )
    if not value:
        raise errors.ConfigError(
            f"{where}: the list of contact windows is empty (for a link that only a command "
            f'opens, write contact = "command")'
        )
    return ContactConfig(
        "windows", tuple(_window(w, f"{where}: window {i + 1}") for i, w in enumerate(value))
    )


def _window(table: Any, where: str) -> Window:
    if not isinstance(table, dict):
        raise errors.ConfigError(f"{where}: must be a table with start and duration_s")
    unknown = sorted(set(table) - set(_WINDOW_KEYS))
    if unknown:
        raise errors.ConfigError(
            f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(_WINDOW_KEYS)}"
        )
    for key in _WINDOW_KEYS:
        if key not in table:
            raise errors.ConfigError(f"{where}: {key} is required")
    duration = table["duration_s"]
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise errors.ConfigError(f"{where}: duration_s must be a number, not {duration!r}")
    if not 0 < duration <= MAX_WINDOW_S:  # also false for nan
        raise errors.ConfigError(
            f"{where}: duration_s {duration} is out of range (0, {MAX_WINDOW_S}] seconds"
        )
    return Window(_utc_seconds(table["start"], where), float(duration))


def _utc_seconds(value: Any, where: str) -> float:
    """Unix seconds of an ISO-8601 UTC time: a string, or a TOML offset date-time."""
    example = "like 2026-12-01T10:00:00Z"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise errors.ConfigError(
                f"{where}: start {value!r} is not an ISO-8601 date and time ({example})"
            ) from None
    elif isinstance(value, datetime):
        moment = value
    else:
        raise errors.ConfigError(
            f"{where}: start must be an ISO-8601 UTC date and time ({example}), not {value!r}"
        )
    offset = moment.utcoffset()
    if offset is None:
        raise errors.ConfigError(
            f"{where}: start {str(value)!r} has no time zone: give it in UTC ({example})"
        )
    if offset != timedelta(0):
        raise errors.ConfigError(f"{where}: start {str(value)!r} is not UTC ({example})")
    return moment.timestamp()


class ContactSchedule:
    """Whether the link is open at a given time, and CONTACT_OPENED / CONTACT_CLOSED events on
    the transitions that :meth:`update` (called each frame) and the commands see."""

    def __init__(self, config: ContactConfig, log: events.EventLog) -> None:
        if config.mode not in ("always", "command", "windows"):
            raise ValueError(f"unknown contact mode {config.mode!r}")
        self.config = config
        self._log = log
        self._starts, self._ends = _merged(config.windows)
        self._open_until: float | None = None  # a commanded open lasts until then
        self._closed_until: float | None = None  # a commanded close wins until then
        self._reported: bool | None = None  # the state the last event told (None: none yet)

    def is_open(self, now: float) -> bool:
        if self._open_until is not None and now < self._open_until:
            return True
        if self._closed_until is not None and now < self._closed_until:
            return False
        return self._scheduled(now)

    def update(self, now: float) -> bool:
        """Whether the link is open at ``now``; emits an event if that changed since the last
        call. The first call emits CONTACT_OPENED if open (a closed link at start-up is no
        news)."""
        return self._update(now, "schedule")

    def open_for(self, duration_s: float, now: float) -> None:
        """Command: open now for ``duration_s`` seconds (replacing an earlier commanded open and
        cancelling a commanded close); scheduled windows still open the link as well."""
        if isinstance(duration_s, bool) or not (
            isinstance(duration_s, int | float) and math.isfinite(duration_s) and duration_s > 0
        ):
            raise ValueError(f"duration_s must be a positive number, not {duration_s!r}")
        self._open_until = now + duration_s
        self._closed_until = None
        self._update(now, "command")

    def close(self, now: float) -> None:
        """Command: close now, until the next scheduled window starts or the next open_for
        (for "always" and "command", until the next open_for)."""
        self._open_until = None
        index = bisect_right(self._starts, now)
        if self.config.mode == "windows" and index < len(self._starts):
            self._closed_until = self._starts[index]
        else:
            self._closed_until = math.inf
        self._update(now, "command")

    def next_change(self, now: float) -> float | None:
        """When is_open will next change, with no further command (None: never)."""
        current = self.is_open(now)
        candidates = {t for t in (self._open_until, self._closed_until) if t is not None}
        candidates.update(self._starts[bisect_right(self._starts, now) :])
        candidates.update(self._ends[bisect_right(self._ends, now) :])
        for moment in sorted(t for t in candidates if now < t < math.inf):
            if self.is_open(moment) != current:
                return moment
        return None

    def _scheduled(self, now: float) -> bool:
        if self.config.mode != "windows":
            return self.config.mode == "always"
        index = bisect_right(self._starts, now) - 1
        return index >= 0 and now < self._ends[index]

    def _update(self, now: float, source: str) -> bool:
        is_open = self.is_open(now)
        if is_open != self._reported:
            first = self._reported is None
            self._reported = is_open
            if is_open or not first:
                self._log.emit(
                    events.CONTACT_OPENED if is_open else events.CONTACT_CLOSED,
                    source=source,
                    until=self.next_change(now),
                )
        return is_open


def _merged(windows: tuple[Window, ...]) -> tuple[list[float], list[float]]:
    """Sorted, disjoint [start, end) intervals: overlapping or touching windows become one."""
    starts: list[float] = []
    ends: list[float] = []
    for window in sorted(windows, key=lambda w: w.start):
        if ends and window.start <= ends[-1]:
            ends[-1] = max(ends[-1], window.end)
        else:
            starts.append(window.start)
            ends.append(window.end)
    return starts, ends
