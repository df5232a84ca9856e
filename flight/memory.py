"""Protected memory: named regions kept as redundant copies with a CRC-32C per block.

A region holds ``copies`` separately allocated copies of its data (replica ``i`` computes with
copy ``i``, so one upset corrupts one replica only) and a table of one CRC-32C per block, itself
kept in three copies so that an upset in the table is told apart from an upset in the data.

Checking a block compares each data copy's CRC with the (voted) table entry. A bad copy is
rewritten from a copy whose CRC matches; when no copy matches, the bitwise majority of three
copies is tried against the table. A block where no candidate can be *proven* good by its CRC is
reported unrepairable and left alone: repairing it from an unproven guess could turn a detected
error into a silent one. See docs/memory.md for the layout and the arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flight import errors, events
from flight.crc import crc32c, crc32c_blocks
from flight.vote import vote, vote_words

__all__ = ["CRC_TABLE_COPIES", "CheckReport", "ProtectedRegion"]

#: Copies of each region's CRC table (voted word by word on every check).
CRC_TABLE_COPIES = 3
MAX_COPIES = 3
MIN_BLOCK_SIZE = 64


@dataclass
class CheckReport:
    """What one check of a block range found (and, when repairing, fixed).

    ``errors`` counts blocks with any fault (a bad data copy or a bad CRC-table copy);
    ``bad_copies[i]`` counts blocks whose copy ``i`` was bad (a replica that keeps appearing here
    has a memory problem); ``repaired`` counts blocks whose data copies were rewritten and
    ``table_repaired`` blocks whose CRC-table entry was rewritten; ``unrepairable`` blocks could
    not be proven good and are listed in ``unrepairable_blocks``.
    """

    region: str
    blocks_checked: int = 0
    bytes_checked: int = 0
    errors: int = 0
    repaired: int = 0
    table_repaired: int = 0
    unrepairable: int = 0
    bad_copies: list[int] = field(default_factory=list)
    unrepairable_blocks: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing was wrong in the checked range."""
        return self.errors == 0


class ProtectedRegion:
    """A named array kept as ``copies`` redundant copies with a protected CRC-32C per block."""

    def __init__(
        self,
        name: str,
        array: Any,
        copies: int = 3,
        block_size: int = 4096,
        allocate: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        source = np.ascontiguousarray(array)
        self._setup(name, source.dtype, source.shape, copies, block_size, allocate)
        self.write(source)

    @classmethod
    def zeros(
        cls,
        name: str,
        shape: tuple[int, ...],
        dtype: Any = np.float32,
        copies: int = 3,
        block_size: int = 4096,
        allocate: Callable[[int], np.ndarray] | None = None,
    ) -> ProtectedRegion:
        """A region of zeros, to be filled piece by piece with :meth:`write`: how a large array
        (a model's weights) gets into protected memory without first being assembled whole
        somewhere else."""
        region = cls.__new__(cls)
        region._setup(name, np.dtype(dtype), tuple(shape), copies, block_size, allocate)
        if allocate is not None:
            for copy in region._data:
                copy.fill(0)
        if region._nblocks:
            tail = region._nbytes - (region._nblocks - 1) * block_size
            full, last = crc32c(bytes(block_size)), crc32c(bytes(tail))
            for table in region._tables:
                table[:] = full
                table[-1] = last
        return region

    def _setup(
        self,
        name: str,
        dtype: np.dtype,
        shape: tuple[int, ...],
        copies: int,
        block_size: int,
        allocate: Callable[[int], np.ndarray] | None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise errors.ConfigError("a protected region needs a non-empty name")
        if not isinstance(copies, int) or not 1 <= copies <= MAX_COPIES:
            raise errors.ConfigError(
                f"region {name!r}: copies must be 1..{MAX_COPIES}, got {copies}"
            )
        if not isinstance(block_size, int) or block_size < MIN_BLOCK_SIZE or block_size % 8:
            raise errors.ConfigError(
                f"region {name!r}: block_size must be a multiple of 8 and >= {MIN_BLOCK_SIZE}, "
                f"got {block_size}"
            )
        if dtype.hasobject:
            raise errors.ConfigError(f"region {name!r}: object arrays cannot be protected")
        self._name = name
        self._dtype = dtype
        self._shape = shape
        self._nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self._block_size = block_size
        self._nblocks = -(-self._nbytes // block_size)
        # Separate allocations: an upset (or a stray write) in one copy leaves the others intact.
        # ``allocate(nbytes) -> uint8 array`` places them elsewhere, e.g. in memory shared with
        # forked partitions (flight.shm.shared_bytes). The default allocation is zeroed lazily
        # by the system: a page costs memory when it is first written.
        make = allocate or (lambda n: np.zeros(n, dtype=np.uint8))
        self._data = [make(self._nbytes) for _ in range(copies)]
        for copy in self._data:
            if copy.dtype != np.uint8 or copy.shape != (self._nbytes,):
                raise errors.ConfigError(f"region {name!r}: allocate() returned a wrong buffer")
        self._tables = [np.zeros(self._nblocks, dtype=np.uint32) for _ in range(CRC_TABLE_COPIES)]
        self._suspect: set[int] = set()

    # --- description ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def copies(self) -> int:
        return len(self._data)

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def nblocks(self) -> int:
        return self._nblocks

    @property
    def nbytes(self) -> int:
        """Bytes of one copy of the data."""
        return self._nbytes

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def suspect_blocks(self) -> tuple[int, ...]:
        """Blocks last found unrepairable (cleared when rewritten or found good again)."""
        return tuple(sorted(self._suspect))

    def __repr__(self) -> str:
        return (
            f"ProtectedRegion({self._name!r}, {self._dtype}{list(self._shape)}, "
            f"copies={self.copies}, block_size={self._block_size}, blocks={self._nblocks})"
        )

    # --- access ---------------------------------------------------------------------------
    def _index(self, i: int) -> int:
        if not isinstance(i, int | np.integer) or not 0 <= i < self.copies:
            raise errors.RegionError(
                f"region {self._name!r} has copies 0..{self.copies - 1}, not {i}"
            )
        return int(i)

    def copy(self, i: int) -> np.ndarray:
        """Read-only view of copy ``i`` with the region's dtype and shape (replica ``i``'s data)."""
        view = self._data[self._index(i)].view(self._dtype).reshape(self._shape)
        view.flags.writeable = False
        return view

    def raw(self, i: int) -> np.ndarray:
        """Writable uint8 view of copy ``i``'s bytes: what a fault injector flips."""
        return self._data[self._index(i)]

    def crc_table(self, i: int) -> np.ndarray:
        """Writable view of CRC-table copy ``i`` (0..2): a fault-injection site too."""
        if not 0 <= i < CRC_TABLE_COPIES:
            raise errors.RegionError(f"CRC table copies are 0..{CRC_TABLE_COPIES - 1}, not {i}")
        return self._tables[i]

    def block_bytes(self, block: int) -> tuple[int, int]:
        """Byte range [start, stop) of a block within one copy."""
        if not 0 <= block < self._nblocks:
            raise errors.RegionError(f"region {self._name!r} has blocks 0..{self._nblocks - 1}")
        start = block * self._block_size
        return start, min(start + self._block_size, self._nbytes)

    # --- update ---------------------------------------------------------------------------
    def write(self, data: Any, offset: int = 0) -> None:
        """Write ``data`` (any buffer) at byte ``offset`` into every copy and refresh the CRCs of
        the blocks it touches. Also how a golden image is reloaded (offset 0, whole region)."""
        src = np.frombuffer(memoryview(np.ascontiguousarray(data)).cast("B"), dtype=np.uint8)
        if offset < 0 or offset + src.nbytes > self._nbytes:
            raise errors.RegionError(
                f"write of {src.nbytes} bytes at {offset} outside region {self._name!r} "
                f"({self._nbytes} bytes)"
            )
        if src.nbytes == 0:
            return
        stop = offset + src.nbytes
        for copy in self._data:
            copy[offset:stop] = src
        first = offset // self._block_size
        last = -(-stop // self._block_size)
        b0, b1 = first * self._block_size, min(last * self._block_size, self._nbytes)
        crcs = crc32c_blocks(self._data[0][b0:b1], self._block_size)
        for table in self._tables:
            table[first:last] = crcs
        self._suspect.difference_update(range(first, last))

    # --- checking -------------------------------------------------------------------------
    def verify(self, start: int = 0, stop: int | None = None) -> CheckReport:
        """Check blocks [start, stop) and report; change nothing."""
        return self.check(start, stop, repair=False)

    def repair(
        self, start: int = 0, stop: int | None = None, log: events.EventLog | None = None
    ) -> CheckReport:
        """Check blocks [start, stop) and repair every block that can be proven good."""
        return self.check(start, stop, repair=True, log=log)

    def check(
        self,
        start: int = 0,
        stop: int | None = None,
        *,
        repair: bool,
        log: events.EventLog | None = None,
    ) -> CheckReport:
        """Check (and optionally repair) blocks [start, stop); faults go to ``log`` as events."""
        stop = self._nblocks if stop is None else stop
        if not 0 <= start <= stop <= self._nblocks:
            raise errors.RegionError(
                f"block range [{start}, {stop}) outside region {self._name!r} (0..{self._nblocks})"
            )
        report = CheckReport(self._name, bad_copies=[0] * self.copies)
        count = stop - start
        if count == 0:
            return report
        b0, b1 = start * self._block_size, min(stop * self._block_size, self._nbytes)
        report.blocks_checked = count
        report.bytes_checked = (b1 - b0) * self.copies

        tables = [t[start:stop] for t in self._tables]
        expected = np.empty(count, dtype=np.uint32)
        table_vote = vote_words(*tables, out=expected)
        table_split = np.zeros(count, dtype=bool)  # no two table copies agree
        table_off = np.zeros(count, dtype=bool)  # some table copy differs from the vote
        if table_vote.corrected or table_vote.no_majority:
            t0, t1, t2 = tables
            table_split = (t0 != t1) & (t0 != t2) & (t1 != t2)
            table_off = ((t0 != expected) | (t1 != expected) | (t2 != expected)) & ~table_split

        crcs = np.empty((self.copies, count), dtype=np.uint32)
        for i, copy in enumerate(self._data):
            crc32c_blocks(copy[b0:b1], self._block_size, out=crcs[i])
        good = (crcs == expected) & ~table_split
        faulty = np.flatnonzero(~good.all(axis=0) | table_off | table_split)

        for j in faulty.tolist():
            self._resolve(
                start + j,
                crcs[:, j],
                [t[j] for t in tables],
                bool(table_split[j]),
                int(expected[j]),
                repair,
                report,
                log,
            )
        if repair or not faulty.size:
            self._suspect.difference_update(
                b for b in range(start, stop) if b not in report.unrepairable_blocks
            )
        return report

    def _resolve(
        self,
        block: int,
        crcs: np.ndarray,
        table_entries: list[Any],
        table_split: bool,
        expected: int,
        repair: bool,
        report: CheckReport,
        log: events.EventLog | None,
    ) -> None:
        """Decide what one faulty block's good content is, and restore it when asked to."""
        report.errors += 1
        start, stop = self.block_bytes(block)
        # CRC values that count as proof: the voted table entry, or when the table copies all
        # disagree, any one of them (a data copy matching a table copy by chance: p = 2^-32).
        proofs = {int(t) for t in table_entries} if table_split else {expected}
        matching = [i for i in range(self.copies) if int(crcs[i]) in proofs]
        good_crc: int | None = None
        source: np.ndarray | None = None
        if matching and len({int(crcs[i]) for i in matching}) == 1:
            good_crc = int(crcs[matching[0]])
            source = self._data[matching[0]][start:stop]
        elif not matching and self.copies == 3:
            blocks = [d[start:stop] for d in self._data]
            voted = np.empty(stop - start, dtype=np.uint8)
            vote(*blocks, out=voted)
            voted_crc = crc32c(voted)
            if voted_crc in proofs:
                good_crc, source = voted_crc, voted

        bad = [i for i in range(self.copies) if good_crc is None or int(crcs[i]) != good_crc]
        for i in bad:
            report.bad_copies[i] += 1
        if log is not None and bad:
            log.emit(events.SCRUB_BLOCK_ERROR, region=self._name, block=block, copies=bad)

        if good_crc is None:
            report.unrepairable += 1
            report.unrepairable_blocks.append(block)
            self._suspect.add(block)
            if log is not None:
                log.emit(events.SCRUB_BLOCK_UNREPAIRABLE, region=self._name, block=block)
            return

        table_wrong = any(int(t) != good_crc for t in table_entries)
        if not repair:
            return
        if bad:
            assert source is not None
            for i in bad:
                self._data[i][start:stop] = source
            report.repaired += 1
            if log is not None:
                log.emit(events.SCRUB_BLOCK_REPAIRED, region=self._name, block=block, copies=bad)
        if table_wrong:
            for table in self._tables:
                table[block] = good_crc
            report.table_repaired += 1
            if log is not None:
                log.emit(events.SCRUB_CRC_TABLE_REPAIRED, region=self._name, block=block)
