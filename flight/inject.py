"""Fault injection: the one piece of code that flips bits, for simulated radiation and for HIL.

``flight run``'s simulated radiation (:mod:`flight.radiation`) and the ground-side HIL harness
both inject through this module, so an upset means the same thing wherever it comes from and a
campaign's results can be compared with a simulated mission's. It imports only numpy and the
standard library (it may run inside the flown runtime's HIL agent), and it never draws a
random number of its own: every random choice comes from the ``numpy.random.Generator`` (or
seed) the caller passes, so an injection campaign replays exactly.

**Bit numbering.** A *bit offset* ``b`` in a buffer names bit ``b % 8`` (0 = least significant,
value 1) of byte ``b // 8``. On a little-endian machine that is also bit ``b % 32`` of the
32-bit word at byte ``4 * (b // 32)``, so "adjacent bits" of a multi-bit upset are adjacent
in the word a float32 weight or a CRC-32C entry is made of.

**Sites** are writable byte buffers: a weight copy (``region.raw(i)``), a CRC-table copy
(``region.crc_table(i)``), an activation (a float32 array, e.g. inside a ``Replica.run``
``after=`` hook), or any writable object with the buffer protocol (``bytearray``, ``mmap``...).
:func:`flip_process_memory` reaches into another process through ``/proc/PID/mem``.

Fault models (small frozen dataclasses; ``bit=None`` means "choose uniformly with the rng"):

* :class:`SingleBitUpset`: one bit inverted (an SEU).
* :class:`MultiBitUpset`: ``k`` adjacent bits inverted, all inside one aligned window of
  ``window`` bytes (one particle track across neighbouring cells; an MBU).
* :class:`StuckAt`: one bit forced to 0 or 1. :func:`apply` forces it *once*: a permanent
  fault is modelled by the caller re-applying it after every write of the site.

:func:`apply` returns an :class:`Injection` record (site, byte offset, bits, old and new byte
values) that a campaign logs, and that :func:`undo` uses to put exactly those bits back;
:func:`plan` draws the same record without writing, for memory another process owns.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from flight import errors

__all__ = [
    "Fault",
    "Injection",
    "MultiBitUpset",
    "SingleBitUpset",
    "StuckAt",
    "activation_upset_hooks",
    "apply",
    "as_bytes",
    "flip_bits",
    "flip_process_memory",
    "plan",
    "read_process_memory",
    "undo",
]

RngLike = np.random.Generator | int | None


# --- fault models ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SingleBitUpset:
    """One bit inverted: the common effect of one particle in one memory cell (98.6% of the
    upsets Alsat-1 saw in LEO). ``bit`` is a bit offset in the site, or None for a uniform one."""

    bit: int | None = None

    def __post_init__(self) -> None:
        _check_bit_field(self.bit)


@dataclass(frozen=True)
class MultiBitUpset:
    """``k`` adjacent bits inverted inside one aligned ``window``-byte word.

    One particle track can upset neighbouring cells; keeping the cluster inside one aligned word
    (4 bytes by default: a float32 weight, a CRC entry) models the case that matters for
    error-correcting words and makes the cluster adjacent in the word's own bit order.
    ``bit`` is the cluster's lowest bit offset (the whole cluster must fit in its window), or
    None to choose uniformly among all positions where a cluster fits.
    """

    k: int = 2
    window: int = 4
    bit: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"MultiBitUpset window must be >= 1 byte, got {self.window!r}")
        if not isinstance(self.k, int) or not 2 <= self.k <= 8 * self.window:
            raise ValueError(
                f"MultiBitUpset k must be 2..{8 * self.window} for a {self.window}-byte window, "
                f"got {self.k!r}"
            )
        _check_bit_field(self.bit)
        if self.bit is not None:
            wbits = 8 * self.window
            if self.bit // wbits != (self.bit + self.k - 1) // wbits:
                raise ValueError(
                    f"a {self.k}-bit cluster at bit {self.bit} crosses a {self.window}-byte window"
                )


@dataclass(frozen=True)
class StuckAt:
    """One bit forced to ``value`` (0 or 1): a cell that no longer holds data.

    :func:`apply` sets the bit once (it may already hold ``value``: the record then shows no
    change). A stuck bit is permanent, so a caller modelling one re-applies it after every
    write of the site (a scrub repair, a golden reload, the next inference writing the
    activation); this module keeps no state to do it behind the caller's back.
    """

    value: int
    bit: int | None = None

    def __post_init__(self) -> None:
        if self.value not in (0, 1) or isinstance(self.value, bool):
            raise ValueError(f"StuckAt value must be 0 or 1, got {self.value!r}")
        _check_bit_field(self.bit)


Fault = SingleBitUpset | MultiBitUpset | StuckAt


def _check_bit_field(bit: Any) -> None:
    if bit is not None and (not isinstance(bit, int | np.integer) or bit < 0):
        raise ValueError(f"bit offset must be a non-negative integer or None, got {bit!r}")


# --- the record --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Injection:
    """What one injection did, enough to log it and to undo it.

    ``fault`` is the fault with its location resolved (``bit`` set), so ``apply(record.fault,
    site)`` replays it; ``bits`` are the bit offsets it targeted (see the module doc);
    ``old`` and ``new`` are the bytes ``byte_offset .. byte_offset + len(old)`` before and
    after. A stuck-at fault on a bit that already held its value has ``old == new``.
    ``applied`` is False for a record from :func:`plan` (drawn, not yet written).
    """

    site: str
    fault: Fault
    byte_offset: int
    bits: tuple[int, ...]
    old: bytes
    new: bytes
    applied: bool = True

    @property
    def target(self) -> str:
        """The site's name (a :class:`~flight.radiation.Target`'s name for simulated upsets)."""
        return self.site

    @property
    def changed(self) -> bool:
        """True when the injection changed the site (a stuck-at may not)."""
        return self.old != self.new

    @property
    def flipped(self) -> tuple[int, ...]:
        """Bit offsets whose value actually changed."""
        out = []
        for i, (a, b) in enumerate(zip(self.old, self.new, strict=True)):
            diff = a ^ b
            out.extend(8 * (self.byte_offset + i) + j for j in range(8) if diff >> j & 1)
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON/msgpack-ready form for campaign logs and telemetry."""
        return {
            "site": self.site,
            "fault": type(self.fault).__name__,
            "byte_offset": self.byte_offset,
            "bits": list(self.bits),
            "old": self.old.hex(),
            "new": self.new.hex(),
            "applied": self.applied,
        }


# --- buffers -----------------------------------------------------------------------------------
def as_bytes(buffer: Any) -> np.ndarray:
    """A writable, flat uint8 view of ``buffer``'s memory (no copy).

    Accepts any C-contiguous object with the writable buffer protocol (numpy arrays of any
    dtype, ``bytearray``, ``mmap``, ...). Refusing read-only and non-contiguous buffers here
    matters: a silent copy would make an injection that changes nothing.
    """
    if isinstance(buffer, np.ndarray):
        if not buffer.flags.writeable:
            raise errors.ReadOnlyBufferError("injection site is read-only")
        if not buffer.flags.c_contiguous:
            raise errors.NotContiguousError("injection site is not C-contiguous")
        if buffer.dtype == np.uint8 and buffer.ndim == 1:
            return buffer
        return buffer.reshape(-1).view(np.uint8)
    try:
        view = memoryview(buffer)
    except TypeError:
        raise errors.BufferTypeError(
            f"injection site must expose the buffer protocol, not {type(buffer).__name__}"
        ) from None
    if view.readonly:
        raise errors.ReadOnlyBufferError("injection site is read-only")
    if not view.c_contiguous:
        raise errors.NotContiguousError("injection site is not C-contiguous")
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


def flip_bits(buffer: Any, bit_offsets: int | Iterable[int]) -> None:
    """Invert the bits at ``bit_offsets`` in ``buffer`` (a bit listed twice is flipped twice).

    The primitive under every injection, exposed so HIL tools can flip a chosen pattern.
    All offsets are checked before anything is written.
    """
    view = as_bytes(buffer)
    single = isinstance(bit_offsets, int | np.integer)
    offsets = np.array([bit_offsets] if single else list(bit_offsets), dtype=np.int64).ravel()
    if offsets.size == 0:
        return
    if offsets.min() < 0 or offsets.max() >= 8 * view.size:
        raise ValueError(f"bit offsets must be in 0..{8 * view.size - 1}")
    masks = np.left_shift(1, offsets & 7).astype(np.uint8)
    np.bitwise_xor.at(view, offsets >> 3, masks)


def _generator(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise ValueError(
            "a fault with a random location needs rng (a numpy Generator or a seed): "
            "injections are never drawn from hidden global state"
        )
    return np.random.default_rng(rng)


def _cluster_start(nbits: int, k: int, window: int, rng: np.random.Generator) -> int:
    """A uniform choice among every bit where a ``k``-bit cluster fits in one aligned window
    (the last, partial window included) and inside the buffer."""
    wbits = 8 * window
    full, tail = divmod(nbits, wbits)
    per_window = wbits - k + 1
    tail_starts = max(0, tail - k + 1)
    total = full * per_window + tail_starts
    if total <= 0:
        raise ValueError(f"a {k}-bit cluster does not fit in a {nbits}-bit site")
    r = int(rng.integers(total))
    if r < full * per_window:
        w, o = divmod(r, per_window)
        return w * wbits + o
    return full * wbits + (r - full * per_window)


def _target_bits(fault: Fault, nbits: int, rng: RngLike) -> tuple[int, ...]:
    if isinstance(fault, MultiBitUpset):
        if fault.bit is None:
            start = _cluster_start(nbits, fault.k, fault.window, _generator(rng))
        else:
            start = int(fault.bit)
        bits = tuple(range(start, start + fault.k))
    elif isinstance(fault, SingleBitUpset | StuckAt):
        if nbits == 0:
            raise ValueError("cannot inject into an empty site")
        bit = int(_generator(rng).integers(nbits)) if fault.bit is None else int(fault.bit)
        bits = (bit,)
    else:
        raise TypeError(f"not a fault model: {fault!r}")
    if bits[-1] >= nbits:
        raise ValueError(f"bit {bits[-1]} is outside a {nbits}-bit site")
    return bits


def plan(fault: Fault, buffer: Any, rng: RngLike = None, *, site: str = "") -> Injection:
    """What :func:`apply` would do to ``buffer``, without writing it (``applied`` is False).

    For memory this process cannot write directly (a forked worker's copy of an activation
    arena): the location is drawn here, deterministically, and the owner of the memory
    replays ``apply(record.fault, its_buffer)``.
    """
    view = as_bytes(buffer)
    bits = _target_bits(fault, 8 * view.size, rng)
    first, last = bits[0] >> 3, bits[-1] >> 3
    span = view[first : last + 1].copy()
    old = span.tobytes()
    if isinstance(fault, StuckAt):
        mask = np.uint8(1 << (bits[0] & 7))
        span[0] = (span[0] | mask) if fault.value else (span[0] & ~mask)
    else:
        for b in bits:
            span[(b >> 3) - first] ^= np.uint8(1 << (b & 7))
    # The record names the resolved location, so replaying it repeats exactly this injection.
    resolved = replace(fault, bit=bits[0])
    return Injection(site, resolved, first, bits, old, span.tobytes(), applied=False)


def apply(fault: Fault, buffer: Any, rng: RngLike = None, *, site: str = "") -> Injection:
    """Inject ``fault`` into ``buffer`` and return what was done.

    ``rng`` (a Generator, or a seed for a fresh one) is required when the fault's location is
    random (``bit=None``); ``site`` names the buffer in the record (e.g. ``"weights:cnn[1]"``).
    """
    view = as_bytes(buffer)
    record = plan(fault, view, rng, site=site)
    start = record.byte_offset
    view[start : start + len(record.new)] = np.frombuffer(record.new, dtype=np.uint8)
    return replace(record, applied=True)


def undo(injection: Injection, buffer: Any) -> int:
    """Put back the bits ``injection`` changed; returns how many bits that restored.

    Only the changed bits are written, each to its old value, so undo is safe when the scrubber
    already repaired the site (it restores nothing, returns 0) and leaves other bits of the
    same bytes alone. Overlapping injections undo exactly in reverse order.
    """
    view = as_bytes(buffer)
    start, n = injection.byte_offset, len(injection.old)
    if start < 0 or start + n > view.size:
        raise ValueError(
            f"injection at bytes {start}..{start + n - 1} is outside a {view.size}-byte site"
        )
    old = np.frombuffer(injection.old, dtype=np.uint8)
    mask = old ^ np.frombuffer(injection.new, dtype=np.uint8)
    current = view[start : start + n]
    restored = int(np.unpackbits((current ^ old) & mask).sum())
    current[...] = (current & ~mask) | (old & mask)
    return restored


# --- process memory (HIL) ----------------------------------------------------------------------
def read_process_memory(pid: int, address: int, size: int) -> bytes:
    """Read ``size`` bytes at virtual ``address`` of process ``pid`` through ``/proc/PID/mem``.

    Needs ptrace-attach permission on the target (root, or the same user when
    ``kernel.yama.ptrace_scope`` is 0 or the target is a descendant that is dumpable);
    raises ``PermissionError`` otherwise and ``OSError`` for an unmapped address.
    """
    fd = os.open(f"/proc/{int(pid)}/mem", os.O_RDONLY)
    try:
        data = os.pread(fd, size, address)
    finally:
        os.close(fd)
    if len(data) != size:
        raise OSError(f"short read of process {pid} memory at {address:#x}")
    return data


def flip_process_memory(pid: int, address: int, bit: int) -> Injection:
    """Invert bit ``bit`` (0..7) of the byte at virtual ``address`` in process ``pid``.

    The HIL harness's way to upset a partition's raw memory (code, heap, stacks) without its
    cooperation. Same permissions as :func:`read_process_memory`. The kernel writes even
    read-only mappings this way (like a debugger planting a breakpoint), which is what an
    upset in a text page is. The returned record's bit offsets count from address 0;
    flipping the same bit again undoes it.
    """
    if not isinstance(bit, int) or not 0 <= bit <= 7:
        raise ValueError(f"bit must be 0..7, got {bit!r}")
    path = f"/proc/{int(pid)}/mem"
    fd = os.open(path, os.O_RDWR)
    try:
        old = os.pread(fd, 1, address)
        if len(old) != 1:
            raise OSError(f"cannot read process {pid} memory at {address:#x}")
        new = bytes([old[0] ^ (1 << bit)])
        if os.pwrite(fd, new, address) != 1:
            raise OSError(f"short write to process {pid} memory at {address:#x}")
    finally:
        os.close(fd)
    offset = 8 * address + bit
    return Injection(f"pid:{pid}", SingleBitUpset(bit=offset), address, (offset,), old, new)


def activation_upset_hooks(replicas: list, count: int, seed: int) -> dict[int, dict]:
    """``after`` hooks (per replica index) flipping ``count`` random bits in activations, right
    after they are computed. Runs inside a worker.

    The sites (replica, tensor, bit) are drawn from ``seed`` weighted by tensor size, so an
    upset in a large feature map is likelier than in a logit, as in real memory.
    """
    rng = np.random.default_rng(seed)
    hooks_by_replica: list[dict] = [{} for _ in replicas]
    sites = []
    for index, replica in enumerate(replicas):
        for life in replica.model.lives:
            if life.name in replica.model.input_names or life.nbytes == 0:
                continue
            sites.append((index, life.name, life.nbytes))
    if not sites or count <= 0:
        return {}
    weights = np.array([s[2] for s in sites], dtype=np.float64)
    chosen = rng.choice(len(sites), size=count, p=weights / weights.sum())
    for pick in chosen:
        index, name, nbytes = sites[int(pick)]
        bit = int(rng.integers(0, nbytes * 8))
        previous = hooks_by_replica[index].get(name)

        def hook(buffer, _bit=bit, _previous=previous):
            if _previous is not None:
                _previous(buffer)
            flip_bits(buffer.reshape(-1).view(np.uint8), [_bit])

        hooks_by_replica[index][name] = hook
    return {i: h for i, h in enumerate(hooks_by_replica) if h}
