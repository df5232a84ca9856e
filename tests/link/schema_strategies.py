"""Hypothesis strategies for declared values: valid values of a Field, a PacketDef, a CommandDef.

Imported by the tests in this directory (pytest puts it on sys.path: tests/ has no packages).
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from flight.link.schema import Enum, Field


def field_values(f: Field) -> st.SearchStrategy[Any]:
    """Every valid value of ``f``, edges included (bounds, empty and full-length strings)."""
    t = f.type
    if t.kind == "integer":
        low, high = f.bounds
        return st.integers(low, high)
    if t.kind == "float":
        low, high = f.range or (None, None)
        return st.floats(
            min_value=low, max_value=high, width=8 * t.size, allow_nan=False, allow_infinity=False
        )
    if t.kind == "bool":
        return st.booleans()
    if isinstance(t, Enum):
        return st.sampled_from(sorted(t.labels))
    if t.kind == "string":
        return st.one_of(
            st.text(max_size=t.max_len).map(t.fit),
            st.text(string.printable, min_size=t.max_len, max_size=t.max_len),
        )
    if t.kind == "blob":
        return st.one_of(st.binary(max_size=min(t.max_len, 300)), st.just(b"\xa5" * t.max_len))
    return st.binary(min_size=t.size, max_size=t.size)  # bytes


def values_of(fields: tuple[Field, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({f.name: field_values(f) for f in fields})
