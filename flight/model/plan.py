"""Static memory plan: every activation buffer placed once, in one arena per replica.

On a board with little memory, an inference must not allocate per frame (no fragmentation, no
surprise out-of-memory in orbit) and should not keep every intermediate alive at once. The plan
gives each tensor an offset in one arena such that tensors alive at the same time never share
bytes: greedy by size (largest first, lowest offset that fits), the classic TFLite arena
strategy. Tensors named in ``pinned`` (graph outputs, vote points, injection sites that must
stay readable) live for the whole run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ALIGN = 64  # bytes: a cache line, and enough for any SIMD load


@dataclass(frozen=True)
class TensorLife:
    """A tensor's size and the node indices between which it must stay intact."""

    name: str
    nbytes: int
    first: int  # index of the node that writes it (-1: written before the first node)
    last: int  # index of the last node that reads it


@dataclass(frozen=True)
class MemoryPlan:
    offsets: dict[str, int]
    arena_bytes: int
    naive_bytes: int  # what one buffer per tensor would cost, for comparison

    def overlaps(self, lives: Sequence[TensorLife]) -> list[tuple[str, str]]:
        """Pairs of simultaneously alive tensors sharing bytes (a correct plan has none)."""
        bad = []
        for i, a in enumerate(lives):
            for b in lives[i + 1 :]:
                if a.first <= b.last and b.first <= a.last:
                    a0, b0 = self.offsets[a.name], self.offsets[b.name]
                    if a0 < b0 + b.nbytes and b0 < a0 + a.nbytes and a.nbytes and b.nbytes:
                        bad.append((a.name, b.name))
        return bad


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def lifetimes(
    order: Sequence[tuple[Sequence[str], Sequence[str]]],
    sizes: dict[str, int],
    inputs: Iterable[str] = (),
    pinned: Iterable[str] = (),
) -> list[TensorLife]:
    """Lifetimes from the nodes' (inputs, outputs) in execution order.

    Only names in ``sizes`` are planned (weights live elsewhere). Graph ``inputs`` are written
    before the first node; ``pinned`` tensors stay alive to the end.
    """
    first: dict[str, int] = dict.fromkeys(inputs, -1)
    last: dict[str, int] = {}
    for index, (node_inputs, node_outputs) in enumerate(order):
        for name in node_outputs:
            first.setdefault(name, index)
            last.setdefault(name, index)
        for name in node_inputs:
            if name in first:
                last[name] = index
    end = len(order)
    for name in pinned:
        last[name] = end
    return [
        TensorLife(name, sizes[name], first[name], last.get(name, first[name]))
        for name in first
        if name in sizes
    ]


def plan(lives: Sequence[TensorLife]) -> MemoryPlan:
    """Greedy-by-size placement; deterministic for a given input."""
    placed: list[tuple[int, int, TensorLife]] = []  # (offset, size, life)
    offsets: dict[str, int] = {}
    arena = 0
    for life in sorted(lives, key=lambda t: (-t.nbytes, t.first, t.name)):
        size = _align(life.nbytes)
        conflicts = sorted(
            (off, sz)
            for off, sz, other in placed
            if other.first <= life.last and life.first <= other.last
        )
        offset = 0
        for off, sz in conflicts:
            if offset + size <= off:
                break
            offset = max(offset, off + sz)
        placed.append((offset, size, life))
        offsets[life.name] = offset
        arena = max(arena, offset + size)
    naive = sum(_align(t.nbytes) for t in lives)
    return MemoryPlan(offsets, arena, naive)
