"""Triple-modular-redundancy voting and duplicate-with-compare: the thin Python face of the C voter.

The C code does the byte work; this module validates buffers, maps status codes to
:mod:`flight.errors` and packs the counts into small result records. A replica that is outvoted
is a *fault*, reported in the result (and counted by the caller as an event), never an exception.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from flight import errors
from flight.native import check_status, ffi, lib

__all__ = [
    "CompareResult",
    "PreparedVote",
    "VoteResult",
    "VoteWordsResult",
    "compare",
    "prepare",
    "vote",
    "vote_words",
]


class VoteResult(NamedTuple):
    """Outcome of :func:`vote`.

    ``corrected`` counts 8-byte words (a trailing partial word counts as one) in which at least
    one replica was outvoted; ``lost[i]`` counts the words replica ``i`` lost.
    """

    out: Any
    corrected: int
    lost: tuple[int, int, int]


class VoteWordsResult(NamedTuple):
    """Outcome of :func:`vote_words`. ``no_majority`` words are detected, uncorrectable errors:
    their value in ``out`` is a bitwise-majority guess that must not be delivered as good."""

    out: Any
    corrected: int
    lost: tuple[int, int, int]
    no_majority: int
    first_no_majority: int

    @property
    def ok(self) -> bool:
        """True when every word had a majority (the output may be delivered)."""
        return self.no_majority == 0


class CompareResult(NamedTuple):
    """Outcome of :func:`compare`: mismatching words and the index of the first (-1 if none)."""

    mismatches: int
    first_mismatch: int

    @property
    def equal(self) -> bool:
        return self.mismatches == 0


_UNANIMOUS = (0, 0, 0)  # lost counts when the native voter reports nothing corrected
_BYTES = ffi.typeof("uint8_t[]")  # views as byte arrays: len() is the size in bytes

# Stats records for the native voters to write into, taken from a pool and put back. A record in
# use belongs to one call only: the C call releases the GIL, so two threads may vote at once, and
# a signal handler may vote between a call and the read of its record. Allocating one per call
# would cost more than the vote of a 4 KiB buffer; popping and pushing a list costs ~35 ns,
# less than a threading.local lookup.
_STATS_POOL: list[Any] = []
_COMPARE_POOL: list[tuple[Any, Any]] = []


def _take_stats(_pool: list[Any] = _STATS_POOL) -> Any:
    try:
        return _pool.pop()
    except IndexError:
        return ffi.new("flight_vote_stats *")


def _take_compare_record(_pool: list[tuple[Any, Any]] = _COMPARE_POOL) -> tuple[Any, Any]:
    try:
        return _pool.pop()
    except IndexError:
        return ffi.new("uint64_t *"), ffi.new("int64_t *")


def _buffer_error(obj: Any, name: str, exc: Exception) -> errors.FlightError:
    """Translate a buffer-protocol failure into the specific flight error."""
    if isinstance(exc, TypeError):
        return errors.BufferTypeError(f"{name} does not expose a buffer ({type(obj).__name__})")
    if "contiguous" in str(exc):
        shape = getattr(obj, "shape", None)
        return errors.NotContiguousError(f"{name} is not C-contiguous (shape {shape})")
    return errors.ReadOnlyBufferError(f"{name} is read-only: {exc}")


def _view(obj: Any, name: str) -> Any:
    """A cffi view of obj's bytes, without copying."""
    try:
        return ffi.from_buffer(_BYTES, obj)
    except (TypeError, ValueError, BufferError) as exc:
        raise _buffer_error(obj, name, exc) from exc


def _out_view(out: Any) -> Any:
    try:
        return ffi.from_buffer(_BYTES, out, True)
    except (TypeError, ValueError, BufferError) as exc:
        if isinstance(exc, TypeError) and isinstance(out, bytes):
            raise errors.ReadOnlyBufferError("out is read-only (bytes)") from exc
        raise _buffer_error(out, "out", exc) from exc


def _new_out(a: Any, n: int) -> Any:
    """The output buffer of a vote without ``out``: an array like ``a``, else n bytes."""
    return np.empty_like(a) if isinstance(a, np.ndarray) else bytearray(n)


def _views3(a: Any, b: Any, c: Any, out: Any) -> tuple[Any, Any, Any, Any, Any]:
    """cffi views of the three replicas and of out (created like a when None)."""
    try:
        va, vb, vc = (
            ffi.from_buffer(_BYTES, a),
            ffi.from_buffer(_BYTES, b),
            ffi.from_buffer(_BYTES, c),
        )
    except (TypeError, ValueError, BufferError):
        va, vb, vc = _view(a, "a"), _view(b, "b"), _view(c, "c")  # raises the specific error
    n = len(va)
    if len(vb) != n or len(vc) != n:
        raise errors.SizeMismatchError(f"replicas differ in size: {n}, {len(vb)}, {len(vc)} bytes")
    if out is None:
        out = _new_out(a, n)
    vo = _out_view(out)
    if len(vo) != n:
        raise errors.SizeMismatchError(f"out has {len(vo)} bytes, replicas have {n}")
    return va, vb, vc, vo, out


_from_buffer = ffi.from_buffer
_native_vote = lib.flight_vote
_new_tuple = tuple.__new__


def vote(a: Any, b: Any, c: Any, out: Any = None) -> VoteResult:
    """Bitwise majority ``(a&b)|(a&c)|(b&c)`` of three equal-size buffers.

    Any dtype, shape, length and alignment; C-contiguous numpy arrays or bytes-like objects.
    ``out`` (same size, writable; may be one of the inputs) receives the vote without any
    allocation; when omitted, a new array like ``a`` (or a bytearray) is returned.
    """
    # The common case (three numpy arrays, nothing to correct) takes the short path below. A
    # 4 KiB vote costs little more than its four buffer views and the native call, so every
    # step counts: from_buffer gets positional arguments (a keyword costs as much as a view),
    # and module globals stand in for keyword-only defaults (which would keep CPython from
    # specialising the call). Anything unusual goes through _views3, which also produces the
    # specific errors. docs/voter.md has the costs, piece by piece.
    try:
        va, vb, vc = _from_buffer(a), _from_buffer(b), _from_buffer(c)
        if out is None:
            out = _new_out(a, len(va))
        vo = _from_buffer(_BYTES, out, True)
        n = len(va)
        if len(vb) != n or len(vc) != n or len(vo) != n:
            raise errors.SizeMismatchError  # sorted out (and explained) by _views3
    except (TypeError, ValueError, BufferError):
        va, vb, vc, vo, out = _views3(a, b, c, out)
        n = len(va)
    try:
        stats = _STATS_POOL.pop()
    except IndexError:
        stats = _take_stats()
    corrected = _native_vote(va, vb, vc, vo, n, stats)
    if corrected == 0:
        _STATS_POOL.append(stats)
        return _new_tuple(VoteResult, (out, 0, _UNANIMOUS))
    lost = tuple(stats.lost)
    _STATS_POOL.append(stats)
    check_status(min(corrected, 0))
    return _new_tuple(VoteResult, (out, corrected, lost))


class PreparedVote:
    """A vote over fixed buffers, validated once.

    The executor's memory plan allocates replica outputs once, so the per-frame vote need not
    re-check the buffers: calling a prepared vote costs the native call and little else. The
    buffers are held (kept alive) for the life of the object.
    """

    __slots__ = ("_args", "_n", "_out", "_stats", "_words")

    def __init__(self, a: Any, b: Any, c: Any, out: Any, word_size: int | None = None) -> None:
        va, vb, vc, vo, self._out = _views3(a, b, c, out)
        self._n = len(va)
        self._words = _word_size(a, word_size)
        self._args = (va, vb, vc, vo)
        self._stats = ffi.new("flight_vote_stats *")

    @property
    def out(self) -> Any:
        return self._out

    def __call__(self) -> VoteResult:
        """Bitwise majority into ``out`` (see :func:`vote`)."""
        corrected = lib.flight_vote(*self._args, self._n, self._stats)
        if corrected == 0:
            return VoteResult(self._out, 0, _UNANIMOUS)
        check_status(min(corrected, 0))
        return VoteResult(self._out, corrected, tuple(self._stats.lost))

    def words(self) -> VoteWordsResult:
        """Word-wise majority into ``out`` (see :func:`vote_words`)."""
        status = lib.flight_vote_words(*self._args, self._n, self._words, self._stats)
        return _words_result(self._out, status, self._stats)


def prepare(a: Any, b: Any, c: Any, out: Any, word_size: int | None = None) -> PreparedVote:
    """Validate three replica buffers and an output once; return a cheap-to-call vote.

    Not thread-safe: one prepared vote per thread (each holds its own stats record).
    """
    return PreparedVote(a, b, c, out, word_size)


def _word_size(a: Any, word_size: int | None) -> int:
    if word_size is not None:
        return word_size
    if isinstance(a, np.ndarray) and a.itemsize in (1, 2, 4, 8):
        return a.itemsize
    return 8


def vote_words(
    a: Any, b: Any, c: Any, out: Any = None, word_size: int | None = None
) -> VoteWordsResult:
    """Word-wise majority that also reports words where all three replicas differ.

    The word is the array's element (itemsize 1, 2, 4 or 8) unless ``word_size`` is given;
    8 bytes for plain buffers. The buffer length must be a multiple of the word size.
    """
    va, vb, vc, vo, out = _views3(a, b, c, out)
    w = _word_size(a, word_size)
    stats = _take_stats()
    status = lib.flight_vote_words(va, vb, vc, vo, len(va), w, stats)
    result = _words_result(out, status, stats)  # reads stats before it goes back to the pool
    _STATS_POOL.append(stats)
    return result


def _words_result(out: Any, status: int, stats: Any) -> VoteWordsResult:
    """Result of a native word vote (status: not-unanimous word count, or a negative error)."""
    if status == 0:
        return _new_tuple(VoteWordsResult, (out, 0, _UNANIMOUS, 0, -1))
    check_status(min(status, 0))
    return VoteWordsResult(
        out, stats.corrected, tuple(stats.lost), stats.no_majority, stats.first_no_majority
    )


def compare(a: Any, b: Any, word_size: int | None = None) -> CompareResult:
    """Duplicate-with-compare: count mismatching words of two equal-size buffers.

    Word size as in :func:`vote_words`. Equal buffers cost one ``memcmp``.
    """
    va, vb = _view(a, "a"), _view(b, "b")
    if len(va) != len(vb):
        raise errors.SizeMismatchError(f"buffers differ in size: {len(va)} and {len(vb)} bytes")
    w = _word_size(a, word_size)
    count, first = record = _take_compare_record()
    status = lib.flight_compare(va, vb, len(va), w, count, first)
    result = _new_tuple(CompareResult, (count[0], first[0]))
    _COMPARE_POOL.append(record)
    check_status(status)
    return result
