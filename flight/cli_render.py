"""Human-readable rendering of ``flight run``'s summary: aligned tables, never Python reprs.

The summary is a dict that grows as the supervisor does (``--json`` prints it as is), so the
renderer knows the shape, not the keys: scalars become one aligned ``key  value`` list; a mapping
of mappings (``partitions``, ``recovery``, or any future per-name table) becomes a table with
one row per name and one column per field (cut into blocks of columns when wider than a
terminal); any other mapping (``watchdog``, ``events``, ...) becomes a ``key  value`` table.
Values nested deeper are written inline as ``key=value``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["cell", "render_summary", "table"]

INDENT = "  "
#: Tables wider than this are cut into blocks of columns (a log line, an 100-column terminal).
WIDTH = 100


def cell(value: Any, key: str = "") -> str:
    """One value as table text: no braces, no quotes, ``-`` for nothing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if key == "accuracy":
            return f"{100 * value:.1f}%"
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        if not value:
            return "-"
        return ", ".join(f"{k}={_inline(v)}" for k, v in value.items())
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return " ".join(_inline(v) for v in value) if value else "-"
    return str(value)


def _inline(value: Any) -> str:
    """A value inside a cell: nested containers in parentheses, so the nesting stays legible."""
    text = cell(value)
    if isinstance(value, Mapping | list | tuple) and value and ("," in text or " " in text):
        return f"({text})"
    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table(header: Sequence[str] | None, rows: Sequence[Sequence[Any]], indent: str = "") -> str:
    """Aligned columns; a column whose cells are all numbers is right-aligned."""
    lines = [list(header)] if header else []
    lines += [[cell(v) for v in row] for row in rows]
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(widths))]
    out = []
    for line in lines:
        parts = [
            text.rjust(width) if numeric[i] else text.ljust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append((indent + "  ".join(parts)).rstrip())
    return "\n".join(out)


def _key_values(mapping: Mapping[str, Any], indent: str) -> str:
    rows = [(str(k), cell(v, str(k))) for k, v in mapping.items()]
    return table(None, rows, indent)


def _rows_table(name: str, mapping: Mapping[str, Mapping[str, Any]], indent: str) -> str:
    """One row per entry of ``mapping``; columns are the union of the entries' fields. A table
    wider than :data:`WIDTH` is cut into blocks of columns, each led by the name column."""
    columns: list[str] = []
    for entry in mapping.values():
        columns += [str(k) for k in entry if str(k) not in columns]
    label = "partition" if name in ("partitions", "recovery") else "name"
    names = [str(row_name) for row_name in mapping]
    values = {c: [_column_value(entry, c) for entry in mapping.values()] for c in columns}
    lead = len(indent) + max(len(label), *map(len, names))
    blocks: list[list[str]] = [[]]
    used = lead
    for c in columns:
        width = 2 + max(len(c), *(len(cell(v)) for v in values[c]))
        if blocks[-1] and used + width > WIDTH:
            blocks.append([])
            used = lead
        blocks[-1].append(c)
        used += width
    return "\n\n".join(
        table(
            [label, *block],
            [[n, *(values[c][i] for c in block)] for i, n in enumerate(names)],
            indent,
        )
        for block in blocks
    )


def _column_value(entry: Mapping[str, Any], column: str) -> Any:
    value = entry.get(column)
    return value if _is_number(value) else cell(value, column)


def _is_rows(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value.values())
    )


def render_summary(summary: Mapping[str, Any], title: str = "flight run: summary") -> str:
    """The whole summary: scalars first, then one section per non-empty mapping."""
    scalars = {k: v for k, v in summary.items() if not isinstance(v, Mapping) or not v}
    sections = {k: v for k, v in summary.items() if k not in scalars}
    parts = [title]
    if scalars:
        if "exit_code" in scalars:
            scalars = {**scalars, "exit_code": _exit_code_text(scalars["exit_code"])}
        parts.append(_key_values(scalars, INDENT))
    for name, value in sections.items():
        parts.append("")
        parts.append(f"{INDENT}{name}")
        if _is_rows(value):
            parts.append(_rows_table(name, value, INDENT * 2))
        else:
            parts.append(_key_values(value, INDENT * 2))
    return "\n".join(parts)


def _exit_code_text(code: Any) -> str:
    """The exit code with its name (``70 (ESCALATION)``), when flight defines it."""
    from flight.recovery import ExitCode

    try:
        return f"{code} ({ExitCode(code).name})"
    except ValueError:
        return cell(code)
