"""Board-level campaigns (:mod:`hil.campaign.board_level`) against a spawned board on loopback:
hangs and crashes detected and recovered with board-time figures, data-site upsets judged
against the harness's own golden outputs, process-memory upsets, a supervisor killed by its
upset restarted by the (emulated) init system, and a board that stops answering.

The board is the module's process-global one (spawned on first use, stopped at the end), so
the batches here share one cold start. The default suite runs a handful of injections; the
100-injection campaigns are ``slow``.
"""

from __future__ import annotations

import os
import signal

import pytest

from hil.boards import BoardUnreachable
from hil.campaign import board_level as bl
from hil.campaign.outcome import Outcome
from hil.campaign.spec import parse_spec

SPEC = """
[campaign]
name = "board"
seed = {seed}
runs = 100
[target]
level = "board"
[fault]
model = "{fault}"
{lines}
[[arm]]
name = "tmr"
redundancy = "tmr"
[[arm]]
name = "none"
redundancy = "none"
"""


def _spec(fault: str, *lines: str, seed: int = 7):
    return parse_spec(SPEC.format(fault=fault, lines="\n".join(lines), seed=seed))


def _run(spec, indices, arm: str = "tmr"):
    return bl.run_batch(bl.Batch(spec, arm, tuple(indices)))


@pytest.fixture(scope="module", autouse=True)
def _board():
    yield
    bl.close_board()


def test_draws_are_reproducible_and_the_same_for_every_arm():
    spec = _spec("seu", 'sites = ["weights", "activations", "outputs", "crc-tables", "cds"]')
    draws = [bl.draw(spec, i) for i in range(200)]
    assert draws == [bl.draw(spec, i) for i in range(200)]
    assert len({(d.offset, d.bit) for d in draws}) == 200
    assert {d.site for d in draws} == set(spec.fault.sites)
    assert all(d.offset % 4 == 0 and 0 <= d.bit < 32 for d in draws)
    assert all(d.node for d in draws if d.site == "activations")
    assert {d.replica(3) for d in draws} == {0, 1, 2} and {d.replica(1) for d in draws} == {0}
    other = _spec(
        "seu", 'sites = ["weights", "activations", "outputs", "crc-tables", "cds"]', seed=8
    )
    assert bl.draw(other, 0) != draws[0]
    crash = _spec("crash", 'signals = ["SIGKILL", "SIGSEGV"]')
    assert {bl.draw(crash, i).signal for i in range(50)} == {"SIGKILL", "SIGSEGV"}
    assert {bl.draw(crash, i).site for i in range(50)} == {"partition"}
    mbu = _spec("mbu", 'sites = ["weights"]', "mbu_bits = 4")
    assert all(bl.draw(mbu, i).cluster == 4 and bl.draw(mbu, i).bit <= 28 for i in range(50))


def test_golden_outputs_are_the_harness_own_for_the_boards_data_set(tmp_path):
    import numpy as np

    from flight.errors import ConfigError
    from flight.model import load

    spec = _spec("seu", 'sites = ["weights", "outputs"]')
    golden = bl.Golden.compute(spec)
    model_path, dataset = bl.board_data(spec)
    with np.load(dataset) as data:
        x = data["x"].astype(np.float32)
    assert len(golden) == len(x)
    model = load(model_path, copies=1)
    shape = model.shapes[model.input_names[0]]
    for i in (0, len(x) - 1):
        assert golden.outputs[i].tobytes() == model.run(x[i : i + 1].reshape(shape)).tobytes()
        assert golden.rows()[i][2] == int(np.argmax(golden.outputs[i]))
    weight_bits = 8 * model.weights.nbytes
    assert weight_bits < bl.fault_space(spec) < 2 * weight_bits
    # a spec naming another model file than the board runs is refused before anything starts
    other = tmp_path / "other.flm"
    other.write_bytes(model_path.read_bytes() + b"\0")
    wrong = parse_spec(SPEC.format(fault="seu", lines="", seed=0).replace(
        'level = "board"', f'level = "board"\nmodel = "{other}"'
    ))  # fmt: skip
    with pytest.raises(ConfigError, match="another model"):
        bl.board_data(wrong)


def _detected_and_recovered(results, outcome: Outcome) -> None:
    for r in results:
        assert r.outcome is outcome and r.injected and r.old != r.new, r
        assert r.site == "partition" and r.bit == -1 and r.byte_offset == -1
        assert r.detect_s is not None and r.recover_s is not None, r
        assert 0 <= r.detect_s <= r.recover_s, r
        assert (
            r.extra["detected_by"]
            == f"PARTITION_{'HUNG' if outcome is Outcome.HANG else 'CRASHED'}"
        )
        assert r.worker.startswith("udp://127.0.0.1:")


def test_hangs_and_crashes_are_detected_and_recovered():
    hangs = _run(_spec("hang"), range(3))
    _detected_and_recovered(hangs, Outcome.HANG)
    assert {r.new for r in hangs} == {b"T".hex()}  # the worker read back stopped
    crashes = _run(_spec("crash", 'signals = ["SIGKILL", "SIGSEGV"]'), range(4))
    _detected_and_recovered(crashes, Outcome.CRASH)
    assert {r.layer for r in crashes} == {"SIGKILL", "SIGSEGV"}
    assert [r.index for r in crashes] == [0, 1, 2, 3]


def test_data_upsets_are_judged_against_the_harness_golden_outputs():
    sites = 'sites = ["weights", "activations", "outputs", "crc-tables", "cds"]'
    tmr = _run(_spec("seu", sites), range(8))
    assert all(r.injected and r.outcome in (Outcome.MASKED, Outcome.CORRECTED) for r in tmr)
    for r in tmr:
        assert r.old != r.new and 0 <= r.bit < 32 and r.byte_offset >= 0
        if r.site in ("weights", "outputs"):  # the scrubber or the voter acted on each
            assert r.outcome is Outcome.CORRECTED, r
    # no voter: an upset output goes down wrong, and the harness sees it
    bare = _run(_spec("seu", 'sites = ["outputs"]'), range(2), arm="none")
    assert [r.outcome for r in bare] == [Outcome.SDC, Outcome.SDC]
    assert all(isinstance(r.top1_changed, bool) for r in bare)
    # a stuck-at bit already at its value changes nothing: not injected, never masked
    stuck = _run(_spec("stuck-at", 'sites = ["weights"]', seed=1), range(6))
    assert {r.outcome is Outcome.NOT_INJECTED for r in stuck} == {True, False}
    assert all((r.outcome is Outcome.NOT_INJECTED) == (r.old == r.new) for r in stuck)


def test_process_memory_upsets_are_reported_and_crashes_recovered():
    results = _run(_spec("seu", 'sites = ["process-memory"]', 'process = "both"'), range(6))
    assert {r.layer.split(":")[0] for r in results} == {"partition", "supervisor"}
    for r in results:
        assert r.site == "process-memory" and r.injected and len(r.old) == len(r.new) > 0
        if r.outcome in (Outcome.HANG, Outcome.CRASH):
            assert r.recover_s is not None, r


def test_a_supervisor_killed_by_its_upset_is_a_crash_recovered_by_the_init_system(monkeypatch):
    spec = _spec("seu", 'sites = ["process-memory"]', 'process = "supervisor"')
    rig = bl._rig_for(spec)
    board = rig.board
    restarts = len(board.restarts)
    send = rig.ground.send

    def send_then_kill(name, **args):  # the upset kills the supervisor (as some do)
        sent = send(name, **args)
        if name == "flip_memory":
            os.kill(board.pid, signal.SIGKILL)
        return sent

    monkeypatch.setattr(rig.ground, "send", send_then_kill)
    (result,) = _run(spec, [0])
    assert result.outcome is Outcome.CRASH and result.injected
    assert "SIGKILL" in result.extra["detected_by"]
    assert result.detect_s is not None and result.recover_s is not None
    assert result.recover_s > result.detect_s  # the init system's restart is inside it
    assert len(board.restarts) == restarts + 1


def test_a_board_that_stops_answering_fails_its_batch(monkeypatch):
    monkeypatch.setattr(bl, "RECOVERY_TIMEOUT", 3.0)
    monkeypatch.setattr(bl, "ACK_TIMEOUT", 3.0)
    spec = _spec("hang")
    rig = bl._rig_for(spec)
    os.kill(rig.board.pid, signal.SIGSTOP)  # hung whole: no watchdog thread left to exit 124
    with pytest.raises(BoardUnreachable):
        _run(spec, [0])
    assert bl._RIG is None and not rig.board.running  # dropped; the next batch starts anew


@pytest.mark.slow
def test_a_hundred_hangs_and_crashes_are_all_detected_and_recovered():
    hangs = [r for i in range(0, 50, 10) for r in _run(_spec("hang"), range(i, i + 10))]
    crash = _spec("crash", 'signals = ["SIGKILL", "SIGSEGV"]')
    crashes = [r for i in range(0, 50, 10) for r in _run(crash, range(i, i + 10))]
    _detected_and_recovered(hangs, Outcome.HANG)
    _detected_and_recovered(crashes, Outcome.CRASH)
    assert len(hangs) + len(crashes) == 100


@pytest.mark.slow
def test_a_process_memory_campaign_recovers_every_crash_and_hang():
    spec = _spec("seu", 'sites = ["process-memory"]', 'process = "both"', seed=11)
    results = [r for i in range(0, 100, 10) for r in _run(spec, range(i, i + 10))]
    assert len(results) == 100
    for r in results:
        if r.outcome in (Outcome.HANG, Outcome.CRASH):
            assert r.detect_s is not None and r.recover_s is not None, r
