"""The native voter against plain numpy references, for arbitrary sizes, offsets and dtypes."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from flight import errors
from flight.vote import compare, prepare, vote, vote_words

DTYPES = [np.uint8, np.int16, np.float32, np.float64, np.uint64]


def _padded_words(buf: np.ndarray) -> np.ndarray:
    """Bytes as 8-byte words, the trailing partial word zero-padded (the voter's unit)."""
    raw = np.ascontiguousarray(buf).view(np.uint8).ravel()
    pad = (-raw.size) % 8
    return np.concatenate([raw, np.zeros(pad, np.uint8)]).view(np.uint64)


def _reference_vote(a, b, c):
    a8, b8, c8 = (np.ascontiguousarray(x).view(np.uint8).ravel() for x in (a, b, c))
    out = (a8 & b8) | (a8 & c8) | (b8 & c8)
    wa, wb, wc, wo = (_padded_words(x) for x in (a8, b8, c8, out))
    lost = tuple(int(np.count_nonzero(w != wo)) for w in (wa, wb, wc))
    corrected = int(np.count_nonzero((wa != wo) | (wb != wo) | (wc != wo)))
    return out, lost, corrected


@st.composite
def triples(draw, max_len=600):
    """Three replicas: misaligned slices of larger buffers, any length, then viewed as a dtype."""
    n = draw(st.integers(0, max_len))
    offset = draw(st.integers(0, 7))
    data = draw(st.binary(min_size=n, max_size=n))
    base = np.frombuffer(data, np.uint8)
    reps = []
    for _ in range(3):
        holder = np.zeros(n + 16, np.uint8)
        holder[offset : offset + n] = base
        reps.append(holder[offset : offset + n])
    return reps


@given(triples(), st.integers(0, 2), st.data())
def test_single_replica_corruption_is_fully_masked(reps, victim, data):
    original = reps[0].copy()
    n = original.size
    mask = np.frombuffer(data.draw(st.binary(min_size=n, max_size=n)), np.uint8)
    reps[victim] ^= mask
    result = vote(*reps)
    assert np.array_equal(result.out, original)
    hit_words = int(np.count_nonzero(_padded_words(mask)))
    expected_lost = [0, 0, 0]
    expected_lost[victim] = hit_words
    assert result.lost == tuple(expected_lost)
    assert result.corrected == hit_words


@given(triples(), st.sampled_from(DTYPES), st.data())
def test_matches_numpy_reference_for_any_three_buffers(reps, dtype, data):
    n = reps[0].size
    for i in (1, 2):
        reps[i] ^= np.frombuffer(data.draw(st.binary(min_size=n, max_size=n)), np.uint8)
    itemsize = np.dtype(dtype).itemsize
    usable = n - n % itemsize
    typed = [r[:usable].view(dtype) for r in reps]
    out, lost, corrected = _reference_vote(*typed)
    result = vote(*typed)
    assert result.out.dtype == np.dtype(dtype) and result.out.shape == typed[0].shape
    assert result.out.view(np.uint8).tobytes() == out.tobytes()
    assert result.lost == lost and result.corrected == corrected


@given(triples(), st.integers(0, 2))
def test_out_may_alias_an_input(reps, alias):
    reps[1][::7] ^= 0x5A  # replica 1 outvoted wherever it was hit
    expected = _reference_vote(*reps)
    result = vote(*reps, out=reps[alias])
    assert result.out is reps[alias]
    assert reps[alias].tobytes() == expected[0].tobytes()
    assert (result.lost, result.corrected) == expected[1:]


@pytest.mark.parametrize("out_offset", [0, 8, 3])  # streaming stores need a 16-aligned out
def test_large_buffer_spanning_many_chunks(out_offset):
    rng = np.random.default_rng(7)
    n = 300_003  # 2.4 MB: above the non-temporal-store threshold, with a ragged tail
    a = rng.integers(0, 2**63, n, dtype=np.uint64)
    b, c = a.copy(), a.copy()
    b[[0, 255, 256, 1023, 1024, 70_000, 299_999]] ^= 1
    c[[99_999, 300_002]] ^= 1 << 63
    holder = np.empty(n * 8 + 16, np.uint8)
    out = holder[out_offset : out_offset + n * 8].view(np.uint8)
    result = vote(a, b, c, out=out)
    assert result.out is out and out.tobytes() == a.tobytes()
    assert result.lost == (0, 7, 2) and result.corrected == 9
    assert vote(a, b, c, out=a).lost == (0, 7, 2)  # aliased out takes the scanning path


def test_bytes_inputs_give_a_bytearray():
    result = vote(b"abcdefghi", b"abcdefghj", b"abcdefghi")
    assert result.out == bytearray(b"abcdefghi")
    assert result.lost == (0, 1, 0)


@st.composite
def word_triples(draw):
    word = draw(st.sampled_from([1, 2, 4, 8]))
    nwords = draw(st.integers(0, 200))
    # Small alphabet so that equal, two-equal and all-different words all occur.
    values = st.lists(st.integers(0, 3), min_size=nwords, max_size=nwords)
    dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[word]
    return [np.array(draw(values), dtype=dtype) for _ in range(3)]


@given(word_triples())
def test_vote_words_flags_every_all_different_word(reps):
    a, b, c = reps
    all_diff = (a != b) & (a != c) & (b != c)
    majority = np.where((a == b) | (a == c), a, np.where(b == c, b, 0))
    result = vote_words(a, b, c)
    assert result.no_majority == int(all_diff.sum())
    expected_first = int(np.flatnonzero(all_diff)[0]) if all_diff.any() else -1
    assert result.first_no_majority == expected_first
    assert result.ok == (not all_diff.any())
    has_majority = ~all_diff
    assert np.array_equal(result.out[has_majority], majority[has_majority])
    lost = tuple(int(((x != majority) & has_majority).sum()) for x in reps)
    assert result.lost == lost
    assert result.corrected == int((((a != b) | (a != c)) & has_majority).sum())


@given(
    st.sampled_from([1, 2, 4, 8]),
    st.integers(0, 3 * 2048 + 40),
    st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 2), st.booleans(), st.integers(1, 127)),
        max_size=6,
    ),
    st.integers(-1, 2),
)
@example(word=1, nbytes=5000, hits=[(0.6, 1, True, 1)], alias=-1)  # no majority in chunk 2
@example(word=8, nbytes=6144, hits=[(0.9, 0, False, 3), (0.5, 2, True, 5)], alias=0)
def test_vote_words_over_many_chunks_with_sparse_damage(word, nbytes, hits, alias):
    """Buffers of several 2 KiB chunks where most chunks agree (the memcmp-and-copy path) and a
    few words are hit, in one replica (corrected) or differently in two (no majority)."""
    dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[word]
    nwords = nbytes // word
    golden = np.random.default_rng(nbytes).integers(0, 2**63, nwords, dtype=np.uint64).astype(dtype)
    reps = [golden.copy() for _ in range(3)]
    for position, replica, twice, flip in hits:
        if nwords:
            index = min(int(position * nwords), nwords - 1)
            reps[replica][index] ^= dtype(flip)
            if twice:  # a different flip in a second replica: all three now differ
                reps[(replica + 1) % 3][index] ^= dtype(flip | 0x80)
    a, b, c = (r.copy() for r in reps)
    all_diff = (a != b) & (a != c) & (b != c)
    majority = np.where((a == b) | (a == c), a, b)
    out = reps[alias] if alias >= 0 else np.empty_like(golden)
    result = vote_words(*reps, out=out)
    assert result.out is out
    assert result.no_majority == int(all_diff.sum())
    assert result.first_no_majority == (int(np.flatnonzero(all_diff)[0]) if all_diff.any() else -1)
    ok = ~all_diff
    assert np.array_equal(out[ok], majority[ok])
    assert result.lost == tuple(int(((x != majority) & ok).sum()) for x in (a, b, c))


def test_vote_words_word_size_defaults_and_override():
    a = np.zeros(4, np.float32)
    b = a.copy()
    c = a.copy()
    b[1], c[1] = 1.0, 2.0  # element 1 differs in all three
    assert vote_words(a, b, c).first_no_majority == 1
    assert vote_words(a, b, c, word_size=8).first_no_majority == 0
    assert vote_words(bytes(16), bytes(16), bytes(16)).no_majority == 0


@given(triples(), st.data())
def test_compare_counts_mismatching_words(reps, data):
    a, b = reps[0], reps[1]
    n = a.size
    b ^= np.frombuffer(data.draw(st.binary(min_size=n, max_size=n)), np.uint8)
    word = data.draw(st.sampled_from([1, 2, 4, 8]))
    usable = n - n % word
    dt = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[word]
    wa, wb = a[:usable].view(dt), b[:usable].view(dt)
    diff = np.flatnonzero(wa != wb)
    result = compare(wa, wb)
    assert result.mismatches == diff.size
    assert result.first_mismatch == (int(diff[0]) if diff.size else -1)
    assert result.equal == (diff.size == 0)


# --- each buffer at its own misalignment ---------------------------------------------------------
WORD_DTYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _placed(data: np.ndarray, offset: int) -> np.ndarray:
    """A copy of ``data`` starting ``offset`` bytes into a fresh buffer (numpy allows unaligned
    views), so that every buffer of a call can have its own misalignment."""
    raw = np.ascontiguousarray(data).view(np.uint8).ravel()
    holder = np.zeros(raw.size + 24, np.uint8)
    placed = holder[offset : offset + raw.size]
    placed[:] = raw
    return placed.view(data.dtype)


@st.composite
def misaligned_words(draw):
    """(word size, three damaged replicas, golden, offsets of a, b, c, out): buffers of up to
    three 2 KiB voter chunks, hit in a few words of one replica (a majority remains) or of two
    (all three differ); offsets distinct modulo 8 and 0-15 in all."""
    word = draw(st.sampled_from(sorted(WORD_DTYPES)))
    dtype = WORD_DTYPES[word]
    nwords = draw(st.one_of(st.integers(0, 40), st.integers(0, 3 * 2048 // word + 3)))
    golden = np.random.default_rng(nwords).integers(0, 2**63, nwords, np.uint64).astype(dtype)
    reps = [golden.copy() for _ in range(3)]
    hits = st.tuples(st.floats(0, 1), st.integers(0, 2), st.booleans(), st.integers(1, 127))
    for position, replica, twice, flip in draw(st.lists(hits, max_size=8)):
        if nwords:
            index = min(int(position * nwords), nwords - 1)
            reps[replica][index] ^= dtype(flip)
            if twice:
                reps[(replica + 1) % 3][index] ^= dtype(flip | 0x80)
    residues = draw(st.permutations(range(8)))[:4]
    offsets = [r + 8 * draw(st.integers(0, 1)) for r in residues]
    return word, reps, golden, offsets


@given(misaligned_words())
def test_vote_words_with_every_buffer_misaligned_differently(case):
    _, reps, golden, offsets = case
    a, b, c = (_placed(r, off) for r, off in zip(reps, offsets, strict=False))
    out = _placed(np.zeros_like(golden), offsets[3])
    if golden.size:
        assert len({x.ctypes.data % 8 for x in (a, b, c, out)}) == 4
    all_diff = (a != b) & (a != c) & (b != c)
    has_majority = ~all_diff
    majority = np.where((a == b) | (a == c), a, b)
    bitwise = (a & b) | (a & c) | (b & c)
    result = vote_words(a, b, c, out=out)
    assert result.out is out
    assert np.array_equal(out, bitwise)  # the majority word, or the documented bitwise guess
    assert np.array_equal(out[has_majority], majority[has_majority])
    assert result.no_majority == int(all_diff.sum())
    first = int(np.flatnonzero(all_diff)[0]) if all_diff.any() else -1
    assert result.first_no_majority == first
    assert result.lost == tuple(int(((x != majority) & has_majority).sum()) for x in (a, b, c))
    assert result.corrected == int((((a != b) | (a != c)) & has_majority).sum())
    assert [x.tobytes() for x in (a, b, c)] == [r.tobytes() for r in reps]  # inputs untouched
    event("no majority somewhere" if all_diff.any() else "a majority everywhere")
    event("corrected" if result.corrected else "unanimous")


@given(misaligned_words())
def test_vote_with_every_buffer_misaligned_differently(case):
    _, reps, _, offsets = case
    a, b, c = (_placed(r, off) for r, off in zip(reps, offsets, strict=False))
    out = _placed(np.zeros_like(a), offsets[3])
    expected, lost, corrected = _reference_vote(a, b, c)
    result = vote(a, b, c, out=out)
    assert result.out is out and out.view(np.uint8).tobytes() == expected.tobytes()
    assert (result.lost, result.corrected) == (lost, corrected)


@given(misaligned_words(), st.sampled_from([None, 1, 2, 4, 8]))
def test_compare_with_each_buffer_misaligned_differently(case, word_size):
    word, reps, _, offsets = case
    a, b = _placed(reps[0], offsets[0]), _placed(reps[1], offsets[1])
    if word_size is not None and a.nbytes % word_size:
        word_size = None
    w = word if word_size is None else word_size
    wa, wb = (x.view(np.uint8).view(WORD_DTYPES[w]) for x in (a, b))
    diff = np.flatnonzero(wa != wb)
    result = compare(a, b, word_size=word_size)
    assert result.mismatches == diff.size
    assert result.first_mismatch == (int(diff[0]) if diff.size else -1)
    event("mismatch" if diff.size else "equal")


def test_errors_are_specific():
    x = np.zeros(64, np.uint8)
    with pytest.raises(errors.SizeMismatchError):
        vote(x, x, x[:10])
    with pytest.raises(errors.SizeMismatchError):
        vote(x, x, x, out=np.zeros(63, np.uint8))
    with pytest.raises(errors.SizeMismatchError):
        compare(x, x[:3])
    with pytest.raises(errors.NotContiguousError):
        vote(x[::2], x[::2], x[::2])
    with pytest.raises(errors.NotContiguousError):
        vote(x, x, x, out=np.zeros(128, np.uint8)[::2])
    ro = np.zeros(64, np.uint8)
    ro.flags.writeable = False
    with pytest.raises(errors.ReadOnlyBufferError):
        vote(x, x, x, out=ro)
    with pytest.raises(errors.ReadOnlyBufferError):
        vote(x, x, x, out=bytes(64))
    with pytest.raises(errors.BufferTypeError):
        vote(1, 2, 3)
    with pytest.raises(errors.OverlapError):
        big = np.zeros(65, np.uint8)
        vote(big[:64], big[:64], big[:64], out=big[1:])
    with pytest.raises(errors.WordSizeError):
        vote_words(x, x, x, word_size=3)
    with pytest.raises(errors.WordSizeError):
        vote_words(x[:6], x[:6], x[:6], word_size=4)
    with pytest.raises(errors.WordSizeError):
        compare(x, x, word_size=16)
    # every one of them is a FlightError, and the root is never what is raised
    with pytest.raises(errors.FlightError) as info:
        vote(x, x, x[:1])
    assert type(info.value) is not errors.FlightError


def _peak_bytes(call, repeat: int = 10) -> int:
    """Peak traced memory above the starting point while ``call`` runs ``repeat`` times: a
    buffer allocated and freed inside the call counts (numpy reports its buffers to
    tracemalloc), unlike in a before/after comparison."""
    call()  # warm up (pools, caches)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(repeat):
            call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_writing_into_out_does_not_allocate():
    n = 1 << 20
    a = np.ones(n, np.uint8)
    b, c = a.copy(), a.copy()
    c[::4096] ^= 1  # some words to correct: the counting path, not only the unanimous one
    out = np.empty_like(a)
    words = np.empty_like(a)
    prepared = prepare(a, b, c, np.empty_like(a))
    calls = {
        "vote": lambda: vote(a, b, c, out=out),
        "vote aliased": lambda: vote(a, b, c, out=c),
        "vote_words": lambda: vote_words(a, b, c, out=words),
        "compare": lambda: compare(a, b),
        "prepared": prepared,
        "prepared words": prepared.words,
    }
    for name, call in calls.items():
        peak = _peak_bytes(call)
        assert peak < 4096, f"{name} peaked at {peak} bytes of new allocations"


@given(triples(), st.integers(0, 2))
def test_prepared_vote_equals_one_shot_vote(reps, victim):
    out = np.empty_like(reps[0])
    prepared = prepare(*reps, out)
    reps[victim][::5] ^= 0x21  # buffers change between frames; the prepared vote sees it
    expected = vote(*reps)
    result = prepared()
    assert result.out is out and out.tobytes() == bytes(expected.out)
    assert (result.corrected, result.lost) == (expected.corrected, expected.lost)
    words = prepared.words()
    reference = vote_words(*reps, word_size=1)
    assert words.no_majority == reference.no_majority
    assert words.lost == reference.lost


def test_prepared_vote_validates_once_up_front():
    x = np.zeros(64, np.uint8)
    with pytest.raises(errors.SizeMismatchError):
        prepare(x, x, x, np.zeros(8, np.uint8))
    ro = np.zeros(64, np.uint8)
    ro.flags.writeable = False
    with pytest.raises(errors.ReadOnlyBufferError):
        prepare(x, x, x, ro)


def test_concurrent_votes_keep_their_own_counts():
    """The C call releases the GIL: votes in several threads overlap, and each must report the
    damage of its own buffers (the stats records are per call, not shared)."""
    from concurrent.futures import ThreadPoolExecutor

    n = 1 << 19  # 4 MiB of uint64: long enough for the native calls to overlap

    def one(k: int) -> tuple[tuple[int, int, int], int, bool]:
        a = np.full(n, k, np.uint64)
        b, c = a.copy(), a.copy()
        b[: k + 1] ^= 1  # thread k: replica 1 loses k + 1 words, replica 2 loses 2k + 1
        c[n - 2 * k - 1 :] ^= 2
        expected = a.copy()
        results = [vote(a, b, c, out=np.empty_like(a)) for _ in range(5)]
        words = [vote_words(a, b, c) for _ in range(5)]
        same = all(np.array_equal(r.out, expected) for r in results + words)
        assert {r.lost for r in results} == {r.lost for r in words}
        return results[0].lost, results[0].corrected, same

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(one, range(8)))
    for k, (lost, corrected, same) in enumerate(outcomes):
        assert lost == (0, k + 1, 2 * k + 1) and corrected == 3 * k + 2 and same
