"""Event declarations are unique and documented; the log counts and stays bounded."""

from __future__ import annotations

import pytest

from flight import events


def test_every_event_is_declared_once_with_a_cause():
    ids = [d.id for d in events.EVENTS.values()]
    names = [d.name for d in events.EVENTS.values()]
    assert len(set(ids)) == len(ids) and len(set(names)) == len(names)
    for definition in events.EVENTS.values():
        assert definition.cause.endswith(".") and len(definition.cause) > 20
        assert events.by_name(definition.name) is definition
        assert getattr(events, definition.name) is definition


def test_log_counts_and_is_bounded():
    clock = iter(range(1000))
    log = events.EventLog(capacity=4, clock=lambda: next(clock))
    seen = []
    log.subscribe(seen.append)
    for block in range(10):
        log.emit(events.SCRUB_BLOCK_REPAIRED, region="w", block=block)
    log.emit(events.VOTE_CORRECTED, count=5)
    assert log.count(events.SCRUB_BLOCK_REPAIRED) == 10
    assert log.counts() == {"VOTE_CORRECTED": 5, "SCRUB_BLOCK_REPAIRED": 10}
    recent = log.recent()
    assert len(recent) == 4 and recent[-1].name == "VOTE_CORRECTED"
    assert [e.fields["block"] for e in recent[:3]] == [7, 8, 9]
    assert len(seen) == 11 and seen[0].time == 0


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        events.EventLog(capacity=0)
