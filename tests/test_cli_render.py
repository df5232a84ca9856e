"""The human summary of ``flight run``: aligned tables, never a Python repr, whatever the keys."""

from __future__ import annotations

from flight.cli_render import WIDTH, cell, render_summary, table

SUMMARY = {
    "frames": 5,
    "accuracy": 0.875,
    "sdc": None,
    "restarts_by_cause": {},
    "safe_mode": False,
    "exit_code": 70,
    "recovery": {
        "classifier": {"state": "nominal", "mode": "tmr", "restarts": {"hang": 2}, "stale": 0},
        "monitor": {"state": "degraded", "mode": "dwc", "restarts": {}, "stale": 11},
    },
    "watchdog": {"kind": "software", "armed": False, "timeout_s": 2.0, "laggards": []},
    "partitions": {
        "classifier": {"mode": "tmr", "lost_by_replica": [0, 1, 0], "restart_seconds": []},
        "monitor": {"mode": "dwc", "lost_by_replica": [3, 0], "restart_seconds": [0.25]},
    },
    "events": {"PARTITION_STARTED": 2, "WATCHDOG_ARMED": 1},
}


def _section(text: str, name: str) -> list[str]:
    """The lines of one section, up to the next blank line."""
    lines = text.splitlines()
    start = lines.index(f"  {name}") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_no_repr_anywhere():
    text = render_summary(SUMMARY)
    for mark in ("{", "}", "'", '"', "[", "]", "None", "False"):
        assert mark not in text, (mark, text)


def test_scalars_are_aligned_key_value_lines():
    lines = render_summary(SUMMARY).splitlines()
    assert lines[0] == "flight run: summary"
    values = {line.split()[0]: line for line in lines[1:7]}
    assert values["accuracy"].endswith(" 87.5%")
    assert values["sdc"].endswith(" -") and values["restarts_by_cause"].endswith(" -")
    assert values["safe_mode"].endswith(" no")
    assert values["exit_code"].endswith(" 70 (ESCALATION)")
    assert len({line.index(line.split()[1]) for line in lines[1:7]}) == 1  # one value column


def test_per_partition_mappings_are_tables_with_one_row_per_partition():
    text = render_summary(SUMMARY)
    header, *rows = _section(text, "recovery")
    assert header.split() == ["partition", "state", "mode", "restarts", "stale"]
    assert rows[0].split() == ["classifier", "nominal", "tmr", "hang=2", "0"]
    assert rows[1].split() == ["monitor", "degraded", "dwc", "-", "11"]
    # a numeric column is right-aligned: the last digits line up
    assert rows[0].rstrip().endswith(" 0") and len(rows[0].rstrip()) == len(rows[1].rstrip())
    header, *rows = _section(text, "partitions")
    assert header.split() == ["partition", "mode", "lost_by_replica", "restart_seconds"]
    assert rows[0].split() == ["classifier", "tmr", "0", "1", "0", "-"]
    assert rows[1].split() == ["monitor", "dwc", "3", "0", "0.25"]


def test_flat_mappings_are_key_value_tables():
    text = render_summary(SUMMARY)
    assert [line.split() for line in _section(text, "watchdog")] == [
        ["kind", "software"],
        ["armed", "no"],
        ["timeout_s", "2"],
        ["laggards", "-"],
    ]
    assert [line.split() for line in _section(text, "events")] == [
        ["PARTITION_STARTED", "2"],
        ["WATCHDOG_ARMED", "1"],
    ]


def test_unknown_keys_and_deeper_nesting_render_generically():
    """The supervisor's summary grows: new scalars, new per-name tables, deeper mappings and
    lists of mappings must still come out as text, not reprs."""
    grown = {
        **SUMMARY,
        "new_counter": 7,
        "storms": {
            "classifier": {"held": 3, "window": {"start": 1.5, "end": 9.0}},
            "monitor": {"held": 1, "spare": 5},  # a field only some rows have
        },
        "reset_log": [{"reason": "hang", "at": 12.0}, {"reason": "vote", "at": 13.0}],
        "mixed": {"total": 4, "by_kind": {"a": 1, "b": 3}, "names": ["x", "y"]},
    }
    text = render_summary(grown)
    for mark in ("{", "}", "'", "[", "]"):
        assert mark not in text, (mark, text)
    header, *rows = _section(text, "storms")
    assert header.split() == ["name", "held", "window", "spare"]
    assert rows[0].split() == ["classifier", "3", "start=1.5,", "end=9", "-"]
    assert rows[1].split() == ["monitor", "1", "-", "5"]
    assert "(reason=hang, at=12) (reason=vote, at=13)" in text
    assert [line.split(maxsplit=1) for line in _section(text, "mixed")] == [
        ["total", "4"],
        ["by_kind", "a=1, b=3"],
        ["names", "x y"],
    ]
    assert any(line.split() == ["new_counter", "7"] for line in text.splitlines())


def test_cell_and_table_basics():
    assert cell(None) == "-" and cell(True) == "yes" and cell(0.1 + 0.2) == "0.3"
    assert cell({"a": {"b": 1, "c": 2}}) == "a=(b=1, c=2)"
    assert table(["n", "v"], [["a", 1], ["bbb", 22]]).splitlines() == [
        "n     v",
        "a     1",
        "bbb  22",
    ]


def test_a_wide_table_is_cut_into_blocks_each_led_by_the_partition_column():
    fields = {f"counter_with_a_long_name_{i}": i for i in range(12)}
    summary = {"partitions": {"classifier": fields, "monitor": {**fields, "extra": "x"}}}
    lines = render_summary(summary).splitlines()[3:]  # after the title, a blank, the name
    assert max(map(len, lines)) <= WIDTH
    blocks = [b.splitlines() for b in "\n".join(lines).split("\n\n")]
    assert len(blocks) > 1
    seen = []
    for header, first, second in blocks:
        assert header.split()[0] == "partition"
        assert first.split()[0] == "classifier" and second.split()[0] == "monitor"
        seen += header.split()[1:]
    assert seen == [*fields, "extra"]  # every column once, in order
