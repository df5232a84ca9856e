"""Model-level injections (hil.campaign.model_level): reproducible from (seed, index), independent
of batching, verified by read-back, and classified the way each redundancy mode decides."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import flight
from flight.model import load
from hil.campaign import model_level as ml
from hil.campaign.outcome import Outcome
from hil.campaign.spec import CampaignSpec, SpecError, parse_spec

DATA = Path(flight.__file__).parent / "data"
ARMS = """
[[arm]]
name = "none"
redundancy = "none"
[[arm]]
name = "dwc"
redundancy = "dwc"
[[arm]]
name = "tmr"
redundancy = "tmr"
[[arm]]
name = "tmr-vp"
redundancy = "tmr"
vote_points = ["relu2.out"]
"""


def make_spec(
    sites: list[str],
    fault: str = "seu",
    seed: int = 7,
    extra: str = "",
    model: str = "digits_cnn.flm",
) -> CampaignSpec:
    quoted = ", ".join(f'"{s}"' for s in sites)
    text = f"""
[campaign]
name = "model-level-test"
seed = {seed}
runs = 100
[target]
model = "{model}"
[fault]
model = "{fault}"
sites = [{quoted}]
{extra}
{ARMS}
"""
    return parse_spec(text)


@pytest.fixture(scope="module")
def golden() -> ml.Golden:
    return ml.Golden.compute(make_spec(["weights"]))


def run(spec: CampaignSpec, arm: str, indices, golden: ml.Golden) -> list:
    return ml.run_batch(ml.Batch(spec, arm, tuple(indices), golden))


def stable(result) -> dict:
    """A result without what legitimately changes between runs (time, who ran it)."""
    out = dataclasses.asdict(result)
    del out["duration_s"], out["worker"]
    return out


def outcomes(results) -> Counter:
    return Counter(r.outcome for r in results)


ALL_SITES = ["weights", "activations", "outputs", "crc-tables"]


def test_same_seed_and_index_give_the_same_run_and_every_arm_the_same_fault(golden):
    spec = make_spec(ALL_SITES)
    indices = range(40)
    first = {arm: run(spec, arm, indices, golden) for arm in ("none", "tmr")}
    ml.clear_cache()  # a fresh process's worth of models, runners and inputs
    again = run(spec, "tmr", indices, golden)
    assert [stable(r) for r in again] == [stable(r) for r in first["tmr"]]
    shipped = pickle.loads(pickle.dumps(ml.Batch(spec, "tmr", tuple(indices), golden)))
    assert [stable(r) for r in ml.run_batch(shipped)] == [stable(r) for r in first["tmr"]]
    assert ml.draw(spec, 5) == ml.draw(spec, 5)
    assert ml.draw(spec, 5) != ml.draw(spec, 6)
    assert ml.draw(spec, 5) != ml.draw(make_spec(ALL_SITES, seed=8), 5)
    # paired faults: the same site, tensor, word, bit and input in every arm
    for a, b in zip(first["none"], first["tmr"], strict=True):
        assert (a.site, a.layer, a.bit, a.byte_offset, a.extra["input"]) == (
            b.site,
            b.layer,
            b.bit,
            b.byte_offset,
            b.extra["input"],
        )
    assert {r.site for r in first["tmr"]} == set(ALL_SITES)


@pytest.mark.parametrize("fault", ["seu", "stuck-at"])
def test_results_do_not_depend_on_how_the_runs_are_batched(golden, fault):
    spec = make_spec(ALL_SITES, fault=fault)
    indices = list(range(48))
    for arm in ("none", "dwc", "tmr"):
        whole = run(spec, arm, indices, golden)
        pieces = [run(spec, arm, indices[i : i + 5], golden) for i in range(45, -1, -5)]
        split = sorted((r for piece in pieces for r in piece), key=lambda r: r.index)
        assert [stable(r) for r in split] == [stable(r) for r in whole]
    # the reference is never the model injected into
    assert ml._runner(spec, "none").model is not ml._golden_model(spec)
    # every injection was undone: the weight copies are the golden image again
    model = load(spec.target.model, copies=3)
    runner = ml._runner(spec, "tmr")
    for i in range(3):
        assert np.array_equal(runner.model.weights.raw(i), model.weights.raw(i))
        assert np.array_equal(runner.model.weights.crc_table(i), model.weights.crc_table(i))


def test_weight_and_activation_upsets_corrupt_simplex_and_never_tmr(golden):
    spec = make_spec(["weights", "activations", "outputs"])
    indices = range(300)
    none = run(spec, "none", indices, golden)
    tmr = run(spec, "tmr", indices, golden)
    sdc = [r for r in none if r.outcome is Outcome.SDC]
    assert len(sdc) > 0
    assert {r.site for r in sdc} == {"weights", "activations", "outputs"}
    assert all(r.top1_changed is not None for r in sdc)
    assert any(r.top1_changed for r in sdc) and not all(r.top1_changed for r in sdc)
    assert outcomes(tmr)[Outcome.SDC] == 0
    assert outcomes(tmr)[Outcome.DUE] == 0
    # paired faults: what corrupts simplex is what the voter corrects under TMR
    for a, b in zip(none, tmr, strict=True):
        if a.outcome is Outcome.SDC:
            assert b.outcome is Outcome.CORRECTED and b.corrected_words > 0, (a, b)


def test_a_stuck_at_on_a_bit_already_holding_its_value_is_not_injected(golden):
    spec = make_spec(["weights"], fault="stuck-at")
    results = run(spec, "none", range(200), golden)
    image = load(spec.target.model, copies=1).weights.raw(0)
    counts = outcomes(results)
    assert counts[Outcome.NOT_INJECTED] > 0 and counts[Outcome.NOT_INJECTED] < len(results)
    for r in results:
        d = ml.draw(spec, r.index)
        byte = image[4 * (r.byte_offset // 4) + d.bit // 8]
        holds = (int(byte) >> (d.bit % 8) & 1) == d.stuck
        assert (r.outcome is Outcome.NOT_INJECTED) == holds, r
        assert r.injected == (r.old != r.new) == (not holds)


def test_crc_table_injections_are_repaired_by_the_scrub_and_counted_corrected(golden):
    spec = make_spec(["crc-tables"], fault="mbu", extra="mbu_bits = 3")
    for arm in ("none", "tmr"):
        results = run(spec, arm, range(30), golden)
        assert {r.layer for r in results} == {"weights:digits_cnn"}
        assert {r.extra["replica"] for r in results} == {0, 1, 2}  # all three table copies
        assert all(r.outcome is Outcome.CORRECTED for r in results), outcomes(results)
        assert all(r.extra["scrub"]["table_repaired"] == 1 for r in results)
        assert ml._runner(spec, arm).model.weights.verify().clean


def test_output_upsets_are_corrected_by_tmr_and_by_dwc_re_execution(golden):
    spec = make_spec(["outputs"])
    none = run(spec, "none", range(40), golden)
    assert outcomes(none)[Outcome.SDC] == 40  # every output bit is observed
    tmr = run(spec, "tmr", range(40), golden)
    assert all(r.outcome is Outcome.CORRECTED and r.corrected_words == 1 for r in tmr)
    assert {r.extra["replica"] for r in tmr} == {0, 1, 2}
    dwc = run(spec, "dwc", range(40), golden)
    assert all(r.outcome is Outcome.CORRECTED and r.extra["reexecuted"] for r in dwc)
    assert all(r.extra["mismatches"] == 1 for r in dwc)  # the one word hit


def test_dwc_withholds_an_output_a_weight_upset_keeps_wrong_a_due(golden):
    # A weight upset survives DWC's re-execution (the copy is still wrong), so the two
    # replicas disagree twice and the output is withheld: a DUE exactly where simplex,
    # given the same fault, delivers a wrong output.
    spec = make_spec(["weights"])
    none = run(spec, "none", range(300), golden)
    dwc = run(spec, "dwc", range(300), golden)
    assert outcomes(dwc)[Outcome.DUE] > 0
    assert outcomes(dwc)[Outcome.SDC] == 0
    for a, b in zip(none, dwc, strict=True):
        assert (a.outcome is Outcome.SDC) == (b.outcome is Outcome.DUE), (a, b)
        if b.outcome is Outcome.DUE:
            assert b.extra["reexecuted"]


def test_an_activation_upset_flips_the_named_nodes_output(golden):
    spec = make_spec(["activations"])
    results = run(spec, "none", range(60), golden)
    model = load(spec.target.model, copies=1)
    inputs = ml.load_inputs(spec)
    assert len({r.layer for r in results}) >= 4
    seen: dict[str, np.ndarray] = {}
    for r in results:
        model.replica(0).run(
            inputs[r.extra["input"]],
            after={r.layer: lambda b, n=r.layer: seen.update({n: b.copy()})},
        )
        clean = seen[r.layer].reshape(-1).view(np.uint8)
        old = bytes.fromhex(r.old)
        assert clean[r.byte_offset : r.byte_offset + len(old)].tobytes() == old, r
        flipped = int.from_bytes(old, "little") ^ int.from_bytes(bytes.fromhex(r.new), "little")
        assert flipped == 1 << (r.bit % 8), r  # one bit, the drawn one, of that node's output
    assert outcomes(results)[Outcome.SDC] > 0


def test_vote_points_stop_an_activation_upset_at_the_next_vote(golden):
    spec = make_spec(["activations"])
    plain = run(spec, "tmr", range(200), golden)
    staged = run(spec, "tmr-vp", range(200), golden)
    early = [
        (a, b)
        for a, b in zip(plain, staged, strict=True)
        if a.layer in ("relu1.out", "relu2.out") and a.outcome is Outcome.CORRECTED
    ]
    assert early
    for a, b in early:
        # corrected at the vote point after relu2, so the output vote finds nothing to do
        assert "vote_point_words" not in a.extra
        assert b.outcome is Outcome.CORRECTED and b.extra["vote_point_words"] >= 1, b
        assert b.corrected_words == b.extra["vote_point_words"]
    assert outcomes(staged)[Outcome.SDC] == outcomes(staged)[Outcome.DUE] == 0


def test_fault_space_counts_the_bits_of_one_replica_per_site():
    spec = make_spec(["weights"])
    model = load(spec.target.model, copies=1)
    weights = 32 * sum(int(np.prod(shape)) for _offset, shape in model.layout.offsets.values())
    # the tensors' words only: no padding (conv panels rounded up to the tile, when there are any)
    assert ml.fault_space(spec) == weights <= 32 * model.weights.nbytes // 4
    outputs = 32 * 10
    assert ml.fault_space(make_spec(["outputs"])) == outputs
    assert ml.fault_space(make_spec(["weights", "outputs"])) == weights + outputs
    assert ml.fault_space(make_spec(["crc-tables"])) == 32 * model.weights.nblocks
    assert ml.inference_seconds(spec, "tmr", runs=3, rounds=1) > 0


def test_what_this_level_cannot_inject_is_refused(golden):
    spec = make_spec(["weights"])
    board_site = dataclasses.replace(spec, fault=dataclasses.replace(spec.fault, sites=("cds",)))
    with pytest.raises(SpecError, match="cds"):
        ml.draw(board_site, 0)
    hang = dataclasses.replace(spec, fault=dataclasses.replace(spec.fault, model="hang"))
    with pytest.raises(SpecError, match="hang"):
        ml.fault_space(hang)
    with pytest.raises(ValueError, match="index"):
        ml.draw(spec, -1)
    with pytest.raises(ValueError, match="index"):
        run(spec, "none", [0, -1], golden)
    short = ml.Golden(golden.outputs[:3], golden.top1[:3])
    with pytest.raises(ValueError, match="golden"):
        run(spec, "none", [0], short)
    with pytest.raises(KeyError, match="no arm"):
        run(spec, "nope", [0], golden)


def test_golden_round_trips_through_the_stores_rows(golden):
    back = ml.Golden.from_rows(reversed(golden.rows()), golden.outputs.shape[1:])
    assert back.outputs.tobytes() == golden.outputs.tobytes()
    assert np.array_equal(back.top1, golden.top1)
    with pytest.raises(ValueError, match="each once"):
        ml.Golden.from_rows(golden.rows()[1:], golden.outputs.shape[1:])


def test_a_model_file_changed_in_place_is_loaded_again(tmp_path):
    model = tmp_path / "model.flm"
    shutil.copyfile(DATA / "digits_cnn.flm", model)
    spec = make_spec(["weights"], model=str(model))
    before = ml.fault_space(spec)
    shutil.copyfile(DATA / "warmup.flm", model)  # another model under the same name
    after = ml.fault_space(spec)
    assert after != before
    assert after == ml.fault_space(make_spec(["weights"], model=str(DATA / "warmup.flm")))


def with_inputs(spec: CampaignSpec, path: Path) -> CampaignSpec:
    return dataclasses.replace(spec, target=dataclasses.replace(spec.target, inputs=path))


def test_inputs_come_from_the_spec_else_the_demo_data_else_seeded_random(tmp_path):
    digits = np.load(DATA / "digits_test.npz")["x"]
    spec = make_spec(["weights"])
    default = ml.load_inputs(spec)
    assert default.shape == (len(digits), 1, 1, 8, 8)
    assert np.array_equal(default.reshape(len(digits), -1), digits.reshape(len(digits), -1))
    np.save(tmp_path / "few.npy", digits[:5])
    np.savez(tmp_path / "few.npz", x=digits[5:8], y=np.arange(3))
    npy = with_inputs(spec, tmp_path / "few.npy")
    assert np.array_equal(ml.load_inputs(npy).reshape(5, -1), digits[:5].reshape(5, -1))
    npz = with_inputs(spec, tmp_path / "few.npz")
    assert ml.load_inputs(npz).shape == (3, 1, 1, 8, 8)
    assert ml.draw(npz, 7).input == 7 % 3
    np.save(tmp_path / "wrong.npy", np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(SpecError, match=r"wrong\.npy holds samples of shape \(5,\)"):
        ml.load_inputs(with_inputs(spec, tmp_path / "wrong.npy"))
    np.savez(tmp_path / "nox.npz", y=np.arange(3))
    with pytest.raises(SpecError, match="no array named 'x'"):
        ml.load_inputs(with_inputs(spec, tmp_path / "nox.npz"))
    # a model the demo data does not fit: random inputs, fixed by the seed
    other = ml.load_inputs(make_spec(["weights"], model="warmup.flm"))
    assert other.shape == (64, 1, 4, 8, 8)
    ml.clear_cache()  # drawn again, not remembered
    assert np.array_equal(other, ml.load_inputs(make_spec(["weights"], model="warmup.flm")))
    reseeded = ml.load_inputs(make_spec(["weights"], model="warmup.flm", seed=8))
    assert not np.array_equal(other, reseeded)


def test_a_vote_point_the_model_does_not_have_is_a_spec_error(golden):
    spec = make_spec(["weights"])
    arms = (dataclasses.replace(spec.arms[3], vote_points=("relu9.out",)),)
    with pytest.raises(SpecError, match=r"relu9\.out"):
        run(dataclasses.replace(spec, arms=arms), "tmr-vp", [0], golden)


@pytest.mark.slow
def test_ten_thousand_upsets_corrupt_simplex_and_never_tmr(golden):
    spec = make_spec(["weights", "activations", "outputs"])
    indices = range(10_000)
    none = outcomes(run(spec, "none", indices, golden))
    tmr = outcomes(run(spec, "tmr", indices, golden))
    assert none[Outcome.SDC] > 0
    assert tmr[Outcome.SDC] == tmr[Outcome.DUE] == 0
    assert none[Outcome.NOT_INJECTED] == tmr[Outcome.NOT_INJECTED] == 0  # an SEU always lands
    assert tmr[Outcome.CORRECTED] >= none[Outcome.SDC]  # each simplex SDC is outvoted
