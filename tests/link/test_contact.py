"""Contact schedule: transitions and their events on a fake clock, commanded open and close,
overlapping and adjacent windows, next_change, and the mission's contact setting (good and bad).
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime

import pytest

from flight import errors, events
from flight.link.contact import ALWAYS, ContactConfig, ContactSchedule, Window, parse_contact

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC).timestamp()


def _schedule(config: ContactConfig) -> tuple[ContactSchedule, events.EventLog]:
    log = events.EventLog(clock=lambda: 0.0)
    return ContactSchedule(config, log), log


def _transitions(log: events.EventLog) -> list[tuple[str, str]]:
    return [(e.name, e.fields["source"]) for e in log]


def _windows(*pairs: tuple[float, float]) -> ContactConfig:
    return ContactConfig("windows", tuple(Window(T0 + s, d) for s, d in pairs))


def _walk(schedule: ContactSchedule, offsets) -> list[bool]:
    return [schedule.update(T0 + t) for t in offsets]


# --- modes and windows ---------------------------------------------------------------------------


def test_always_opens_at_the_first_update_and_stays_open():
    schedule, log = _schedule(ALWAYS)
    assert _walk(schedule, [0, 1, 1e6]) == [True, True, True]
    assert _transitions(log) == [("CONTACT_OPENED", "schedule")]
    assert log.recent()[0].fields["until"] is None
    assert schedule.next_change(T0) is None


def test_command_mode_is_closed_without_an_event_until_commanded():
    schedule, log = _schedule(ContactConfig("command"))
    assert _walk(schedule, [0, 100]) == [False, False]
    assert list(log) == []
    assert schedule.next_change(T0) is None


def test_a_window_opens_at_its_start_and_closes_at_its_end():
    schedule, log = _schedule(_windows((100, 50)))
    assert _walk(schedule, [0, 99.9, 100, 149.9, 150, 200]) == [
        False, False, True, True, False, False,
    ]  # fmt: skip
    assert _transitions(log) == [("CONTACT_OPENED", "schedule"), ("CONTACT_CLOSED", "schedule")]
    assert [e.fields["until"] for e in log] == [T0 + 150, None]
    assert schedule.next_change(T0) == T0 + 100
    assert schedule.next_change(T0 + 120) == T0 + 150


def test_overlapping_and_adjacent_windows_are_one_contact_in_any_order():
    # [100, 200) and [150, 250) overlap, [160, 170) lies inside them, [250, 300) touches them;
    # [400, 410) stands apart.
    schedule, log = _schedule(_windows((400, 10), (150, 100), (250, 50), (100, 100), (160, 10)))
    opened = _walk(schedule, range(0, 500, 5))
    assert opened == [100 <= t < 300 or 400 <= t < 410 for t in range(0, 500, 5)]
    assert [e.name for e in log] == ["CONTACT_OPENED", "CONTACT_CLOSED"] * 2
    assert schedule.next_change(T0 + 120) == T0 + 300  # not 200 nor 250: no flap


def test_the_first_update_inside_a_window_reports_it_open():
    schedule, log = _schedule(_windows((0, 60)))
    assert schedule.update(T0 + 30)
    assert _transitions(log) == [("CONTACT_OPENED", "schedule")]


# --- commands ------------------------------------------------------------------------------------


def test_open_for_opens_now_and_closes_after_the_duration():
    schedule, log = _schedule(ContactConfig("command"))
    schedule.update(T0)
    schedule.open_for(60, T0 + 10)
    assert _transitions(log) == [("CONTACT_OPENED", "command")]
    assert log.recent()[0].fields["until"] == T0 + 70
    assert _walk(schedule, [69.9, 70]) == [True, False]
    assert _transitions(log)[-1] == ("CONTACT_CLOSED", "schedule")


def test_a_later_open_for_replaces_the_earlier_one():
    schedule, _ = _schedule(ContactConfig("command"))
    schedule.open_for(600, T0)
    schedule.open_for(10, T0 + 1)
    assert schedule.next_change(T0 + 1) == T0 + 11


def test_open_for_adds_to_a_window_it_overlaps():
    schedule, log = _schedule(_windows((100, 50)))
    schedule.open_for(80, T0 + 120)  # until 200, past the window's end at 150
    assert _walk(schedule, [149, 150, 199, 200]) == [True, True, True, False]
    schedule.open_for(10, T0 + 300)
    assert _walk(schedule, [305, 310]) == [True, False]
    assert [e.name for e in log] == ["CONTACT_OPENED", "CONTACT_CLOSED"] * 2


def test_a_commanded_close_wins_until_the_next_window_starts():
    schedule, log = _schedule(_windows((100, 50), (300, 50)))
    schedule.update(T0 + 110)
    schedule.close(T0 + 120)
    assert _transitions(log) == [("CONTACT_OPENED", "schedule"), ("CONTACT_CLOSED", "command")]
    assert schedule.next_change(T0 + 120) == T0 + 300
    assert _walk(schedule, [130, 149, 299]) == [False, False, False]
    assert _walk(schedule, [300, 349, 350]) == [True, True, False]
    assert _transitions(log)[2:] == [("CONTACT_OPENED", "schedule"), ("CONTACT_CLOSED", "schedule")]


def test_a_commanded_close_lasts_through_windows_that_touch_the_current_one():
    """Adjacent windows are one contact: a close in the first does not reopen at the second's
    start, only at the next separate window."""
    schedule, _ = _schedule(_windows((100, 50), (150, 50), (300, 10)))
    schedule.close(T0 + 120)
    assert schedule.next_change(T0 + 120) == T0 + 300
    assert _walk(schedule, [150, 299, 300]) == [False, False, True]


def test_a_commanded_close_outside_a_window_does_not_cancel_the_next_one():
    schedule, _ = _schedule(_windows((100, 50)))
    schedule.close(T0)
    assert _walk(schedule, [99, 100]) == [False, True]


def test_open_for_ends_a_commanded_close():
    schedule, log = _schedule(ALWAYS)
    schedule.update(T0)
    schedule.close(T0 + 1)
    assert schedule.update(T0 + 1e6) is False  # no scheduled window: closed until commanded
    assert schedule.next_change(T0 + 2) is None
    schedule.open_for(10, T0 + 1e6)
    assert schedule.update(T0 + 1e6 + 20) is True  # back to "always", the close is forgotten
    assert [e.name for e in log] == ["CONTACT_OPENED", "CONTACT_CLOSED", "CONTACT_OPENED"]


def test_close_ends_a_commanded_open():
    schedule, log = _schedule(ContactConfig("command"))
    schedule.open_for(600, T0)
    schedule.close(T0 + 5)
    assert schedule.update(T0 + 10) is False
    assert _transitions(log) == [("CONTACT_OPENED", "command"), ("CONTACT_CLOSED", "command")]


@pytest.mark.parametrize("duration", [0, -1, math.inf, math.nan, True, "60"])
def test_open_for_with_a_bad_duration_is_a_bug(duration):
    schedule, _ = _schedule(ALWAYS)
    with pytest.raises(ValueError):
        schedule.open_for(duration, T0)


# --- the mission's setting ---------------------------------------------------------------------


def test_parse_contact_reads_the_modes_and_windows_from_toml():
    text = """
    [link]
    contact = "always"
    [[link.window]]
    start = "2026-12-01T10:00:00Z"
    duration_s = 600
    [[link.window]]
    start = 2026-12-01T11:30:00Z
    duration_s = 90.5
    """
    link = tomllib.loads(text)["link"]
    assert parse_contact(link["contact"], "m.toml: [link]") == ALWAYS
    assert parse_contact("command", "m.toml: [link]") == ContactConfig("command")
    config = parse_contact(link["window"], "m.toml: [link]")
    assert config == ContactConfig("windows", (Window(T0, 600.0), Window(T0 + 5400, 90.5)))
    plus_zero = parse_contact([{"start": "2026-12-01T10:00:00+00:00", "duration_s": 1}], "w")
    assert plus_zero.windows[0].start == T0


@pytest.mark.parametrize(
    "value, message",
    [
        (
            "sometimes",
            "m: contact must be .always., .command. or a list of windows, not 'sometimes'",
        ),
        (5, "m: contact must be"),
        ([], "m: the list of contact windows is empty"),
        (["x"], "m: window 1: must be a table with start and duration_s"),
        ([{"start": "2026-12-01T10:00:00Z"}], "m: window 1: duration_s is required"),
        ([{"duration_s": 5}], "m: window 1: start is required"),
        (
            [{"start": "2026-12-01T10:00:00Z", "duration_s": 5, "duraton_s": 5}],
            "m: window 1: unknown key 'duraton_s'; known keys: start, duration_s",
        ),
        (
            [{"start": "2026-12-01T10:00:00Z", "duration_s": 5}, {"start": "x", "duration_s": 5}],
            "m: window 2: start 'x' is not an ISO-8601 date and time",
        ),
        (
            [{"start": "2026-12-01T10:00:00", "duration_s": 5}],
            "window 1: start '2026-12-01T10:00:00' has no time zone",
        ),
        (
            [{"start": "2026-12-01", "duration_s": 5}],
            "window 1: start '2026-12-01' has no time zone",
        ),
        (
            [{"start": "2026-12-01T12:00:00+02:00", "duration_s": 5}],
            "window 1: start .* is not UTC",
        ),
        ([{"start": 1764583200, "duration_s": 5}], "window 1: start must be an ISO-8601 UTC"),
        ([{"start": "2026-12-01T10:00:00Z", "duration_s": 0}], "duration_s 0 is out of range"),
        ([{"start": "2026-12-01T10:00:00Z", "duration_s": -5}], "duration_s -5 is out of range"),
        ([{"start": "2026-12-01T10:00:00Z", "duration_s": 86401}], r"out of range \(0, 86400\]"),
        ([{"start": "2026-12-01T10:00:00Z", "duration_s": math.inf}], "duration_s inf is out"),
        ([{"start": "2026-12-01T10:00:00Z", "duration_s": math.nan}], "duration_s nan is out"),
        ([{"start": "2026-12-01T10:00:00Z", "duration_s": True}], "duration_s must be a number"),
        ([{"start": "2026-12-01T10:00:00Z", "duration_s": "600"}], "duration_s must be a number"),
    ],
)
def test_parse_contact_refuses_bad_settings_with_a_precise_message(value, message):
    with pytest.raises(errors.ConfigError, match=message):
        parse_contact(value, "m")


def test_parse_contact_accepts_the_longest_window():
    config = parse_contact([{"start": "2026-12-01T10:00:00Z", "duration_s": 86400}], "m")
    assert config.windows[0].end == T0 + 86400
