"""The static memory plan never lets two live tensors share bytes, and reuses memory."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flight.model.plan import ALIGN, lifetimes, plan


@st.composite
def chains(draw):
    """A random DAG in execution order: each node reads some earlier tensors."""
    count = draw(st.integers(1, 30))
    names = ["in"]
    order = []
    sizes = {"in": draw(st.integers(1, 5000))}
    for i in range(count):
        reads = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
        out = f"t{i}"
        sizes[out] = draw(st.integers(0, 5000))
        order.append((reads, [out]))
        names.append(out)
    pinned = draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
    return order, sizes, pinned


@given(chains())
def test_no_live_tensors_overlap_and_offsets_are_aligned(case):
    order, sizes, pinned = case
    lives = lifetimes(order, sizes, inputs=["in"], pinned=pinned)
    result = plan(lives)
    assert result.overlaps(lives) == []
    assert all(offset % ALIGN == 0 for offset in result.offsets.values())
    assert result.arena_bytes <= result.naive_bytes
    for life in lives:
        assert result.offsets[life.name] + life.nbytes <= result.arena_bytes
    for name in pinned:
        assert next(t for t in lives if t.name == name).last == len(order)


def test_a_chain_reuses_memory():
    order = [([f"t{i}"], [f"t{i + 1}"]) for i in range(10)]
    sizes = {f"t{i}": 1024 for i in range(11)}
    result = plan(lifetimes(order, sizes, inputs=["t0"]))
    assert result.arena_bytes == 2 * 1024  # ping-pong between two buffers
    assert result.naive_bytes == 11 * 1024
