"""Simplex, DWC and TMR execution of a model, with upsets in weights and activations."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from flight import errors
from flight.model import io
from flight.redundancy import RedundantRunner

DEMO = resources.files("flight") / "data" / "digits_cnn.flm"
X = np.load(resources.files("flight") / "data" / "digits_test.npz")["x"][:1]


@pytest.fixture()
def model():
    return io.load(DEMO.read_bytes())


def test_tmr_masks_a_corrupted_replica_and_counts_it(model):
    golden = model.run(X)
    model.weights.raw(2)[:4096] ^= 0xFF  # replica 2's first weights destroyed
    result = RedundantRunner(model, "tmr").run(X)
    assert result.delivered and np.array_equal(result.output, golden)
    assert result.corrected > 0 and result.lost[2] > 0 and result.lost[:2] == (0, 0)


def _corrupt_output(model, replica_index, element, value):
    """Make one replica's output buffer take ``value`` at ``element`` after every run."""
    replica = model.replica(replica_index)
    name = model.output_names[0]
    original_run = replica.run

    def run(x, **kwargs):
        out = original_run(x, **kwargs)
        out[name].reshape(-1)[element] = value
        return out

    replica.run = run


def test_tmr_withholds_when_no_majority(model):
    runner = RedundantRunner(model, "tmr")
    for i in range(3):
        _corrupt_output(model, i, 3, float(i + 100))  # element 3 differs in all three
    result = runner.run(X)
    assert not result.delivered and result.output is None
    assert result.no_majority == 1


def test_tmr_withholds_a_vote_that_two_replicas_did_not_compute_whole(model):
    """Replicas 1 and 2 both hit: replica 2 alone wrong in word 2, and both agreeing on a wrong
    value in word 5 (two upsets rounding a logit the same way, seen under a flare). Every word
    has a majority and replica 1 lost nothing, but only one replica computed the vote whole."""
    runner = RedundantRunner(model, "tmr")
    _corrupt_output(model, 1, 5, 12.0)
    _corrupt_output(model, 2, 2, 11.0)
    original = model.replica(2).run

    def both_wrong(x, **kwargs):  # replica 2 also wrong in word 5, like replica 1
        out = original(x, **kwargs)
        out[model.output_names[0]].reshape(-1)[5] = 12.0
        return out

    model.replica(2).run = both_wrong
    result = runner.run(X)
    assert not result.delivered and result.output is None and result.split
    assert result.no_majority == 0 and result.lost[1] == 0 and result.lost[0] > 0


def test_tmr_two_faulty_replicas_are_withheld_even_in_different_words(model):
    runner = RedundantRunner(model, "tmr")
    _corrupt_output(model, 0, 2, 11.0)
    _corrupt_output(model, 1, 5, 12.0)  # the word vote would be right; two replicas were hit
    result = runner.run(X)
    assert not result.delivered and result.split and result.lost == (1, 1, 0)


def test_tmr_two_replicas_agreeing_outvote_the_third(model):
    runner = RedundantRunner(model, "tmr")
    golden = model.run(X)
    _corrupt_output(model, 0, 7, 55.0)
    result = runner.run(X)
    assert result.delivered and np.array_equal(result.output, golden)
    assert result.lost == (1, 0, 0) and result.corrected == 1


def test_dwc_delivers_when_equal_and_withholds_persistent_mismatch(model):
    runner = RedundantRunner(model, "dwc")
    clean = runner.run(X)
    assert clean.delivered and not clean.reexecuted
    model.weights.raw(1)[:2048] ^= 0x10  # a persistent fault: re-execution cannot clear it
    result = runner.run(X)
    assert result.reexecuted and not result.delivered and result.output is None
    assert result.mismatches > 0


def test_dwc_reexecution_clears_a_transient_fault(model):
    runner = RedundantRunner(model, "dwc")
    replica = model.replica(1)
    name = model.output_names[0]
    original_run = replica.run
    calls = {"n": 0}

    def flaky_run(x, **kwargs):  # an upset in the output buffer, on the first execution only
        out = original_run(x, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            out[name].reshape(-1).view(np.uint32)[0] ^= 1
        return out

    replica.run = flaky_run
    result = runner.run(X)
    assert result.reexecuted and result.delivered and result.mismatches == 1


def test_modes_need_enough_copies():
    with pytest.raises(errors.ConfigError):
        RedundantRunner(io.load(DEMO.read_bytes(), copies=1), "tmr")
    with pytest.raises(errors.ConfigError):
        RedundantRunner(io.load(DEMO.read_bytes(), copies=2), "quad")


def _flip_exponent(buffer):
    buffer.reshape(-1).view(np.uint32)[5] ^= np.uint32(1 << 30)  # 0.0 -> 2.0, x -> huge


def test_vote_points_resync_a_corrupted_activation(model):
    from flight.redundancy import VotePoints

    golden = model.run(X)
    replicas = [model.replica(i) for i in range(3)]
    staged = VotePoints(replicas, ["relu2.out", "relu1.out"])  # any order
    assert staged.names == ["relu1.out", "relu2.out"]
    staged.run(X, hooks={1: {"relu1.out": _flip_exponent}})
    outputs = [r.buffer(model.output_names[0]) for r in replicas]
    assert staged.corrected == 1 and staged.no_majority == 0 and staged.unsafe == 0
    assert all(np.array_equal(o, golden) for o in outputs)  # replica 1 was resynced


def _set_word(index, value):
    def hook(buffer):
        buffer.reshape(-1)[index] = value

    return hook


@pytest.mark.parametrize(
    "hooks",
    [
        # replicas 0 and 1 hit in different words: each word has a majority, but only
        # replica 2 computed the tensor whole, so the write-back is a chimera
        {0: {"relu1.out": _set_word(3, 7.0)}, 1: {"relu1.out": _set_word(9, 7.0)}},
        # all three differ in one word: the write-back is a bitwise guess
        {i: {"relu1.out": _set_word(5, 10.0 + i)} for i in range(3)},
    ],
    ids=["two-replicas-hit", "no-majority"],
)
def test_a_vote_point_that_writes_back_a_guess_is_unsafe(model, hooks):
    """The resync makes every replica's output agree afterwards, so the final vote cannot tell;
    the vote point itself must say the inference is not evidence."""
    from flight.redundancy import VotePoints

    replicas = [model.replica(i) for i in range(3)]
    staged = VotePoints(replicas, ["relu1.out"])
    staged.run(X, hooks=hooks)
    outputs = [r.buffer(model.output_names[0]) for r in replicas]
    assert all(np.array_equal(o, outputs[0]) for o in outputs)  # unanimous after the resync
    assert staged.unsafe == 1


def test_without_vote_points_the_upset_reaches_the_output(model):
    golden = model.run(X)
    out = model.replica(1).run(X, after={"relu1.out": _flip_exponent})[model.output_names[0]]
    assert not np.array_equal(out, golden)


def test_segments_equal_a_whole_run(model):
    replica = model.replica(0)
    whole = replica.run(X)[model.output_names[0]].copy()
    cut = replica.node_index("maxpool1.out") + 1
    replica.run(X, stop=cut)
    assert np.array_equal(replica.run(None, start=cut)[model.output_names[0]], whole)
