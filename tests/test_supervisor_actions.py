"""The supervisor carrying out recovery actions, with real forked workers.

Faults arrive the way they do on a board: memory is corrupted through the public objects (a
weight copy's bytes, ``job.weights.raw(i)``; all copies of one block) from the run's progress
callback, between frames; activation upsets reach the worker through its request, the path
simulated radiation takes; a deadline a worker cannot meet. Nothing in the supervisor is
patched. Each test then checks what the action did to memory, processes and counters.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from flight.mission import load_mission
from flight.partition import Ctl
from flight.supervisor import Supervisor

MISSION = """
[mission]
name = "actions"
seed = 1
test_mode = true

[schedule]
minor_frame_ms = 20
minor_frames_per_major = 5

[[partition]]
name = "classifier"
job = "model"
model = "digits_cnn.flm"
dataset = "digits_test.npz"
period_frames = 1
deadline_ms = {deadline_ms}
redundancy = "{redundancy}"
placement = "{placement}"
restart_type = "permanent"
heartbeat_timeout_ms = 5000
max_restarts = 3
restart_period_s = 3600
escalation = ["degrade", "disable"]

[recovery]
strategy = "one_for_one"
processor_reset_max = 30
processor_reset_period_s = 60
vote_alarm_threshold = 3
vote_alarm_period_s = 3600
storm_upset_threshold = 10

[scrub]
block_size = 4096
bytes_per_frame = {scrub_bytes}

[watchdog]
kind = "none"

[cds]
directory = "{cds}"
"""

#: A scrub budget of one 4 KiB block in each of three copies: the scrubber checks block
#: ``frame % nblocks`` in frame ``frame`` (it resumes where it stopped, round-robin), so a block
#: corrupted right after its check stays unseen by the scrubber for ``nblocks - 1`` frames.
ONE_BLOCK = 3 * 4096
#: The whole region (all three copies of the demo weights) every frame.
WHOLE_REGION = 294912


def _supervisor(
    tmp_path,
    placement="time",
    redundancy="tmr",
    scrub_bytes=WHOLE_REGION,
    deadline_ms=20,
) -> Supervisor:
    cds = tmp_path / "state"
    cds.mkdir(exist_ok=True)
    text = MISSION.format(
        placement=placement,
        redundancy=redundancy,
        scrub_bytes=scrub_bytes,
        deadline_ms=deadline_ms,
        cds=cds,
    )
    path = tmp_path / "mission.toml"
    path.write_text(text)
    return Supervisor(load_mission(path), realtime=False)


def _block(region, block: int) -> slice:
    start, stop = region.block_bytes(block)
    return slice(start, stop)


def _poison(copy: np.ndarray, where: slice, value: float) -> None:
    """Overwrite a block of one weight copy with ``value`` (float32): every weight in it is
    wrong, so the replica computing with this copy is outvoted on every input."""
    copy[where].view(np.float32)[...] = value


# --- a replica that keeps losing votes: reverify its weights, then restart it -----------------
@pytest.mark.parametrize("placement", ["time", "space"])
def test_a_replica_that_keeps_losing_votes_is_reverified_then_restarted(tmp_path, placement):
    """Replica 2's weight copy is corrupted in block 0 right after the scrubber checked it, so
    the replica is outvoted every frame until something other than the scrubber acts. Three
    alarms: ReverifyWeights repairs the block. Corrupted again, three more alarms:
    RestartReplica reloads the copy from the golden image and clears the replica's arena
    (space placement: forks its worker again, the other workers untouched)."""
    supervisor = _supervisor(tmp_path, placement=placement, scrub_bytes=ONE_BLOCK)
    seen: dict = {"original": None, "reverified": [], "restarted": []}

    def fault(report, sup):
        p = sup.partitions[0]
        weights = p.job.weights
        block = _block(weights, 0)
        assert weights.nblocks > 12  # the scrubber does not come back to block 0 in this run
        if report.frame == 0:  # the scrubber has just checked block 0
            seen["original"] = weights.raw(2)[block].copy()
            seen["pids"] = [w.pid for w in p.workers]
            _poison(weights.raw(2), block, 3.0)
            return
        if sup.reverified > len(seen["reverified"]):
            seen["reverified"].append(
                (report.frame, np.array_equal(weights.raw(2)[block], seen["original"]))
            )
            _poison(weights.raw(2), block, -3.0)  # the fault is back: keeps losing votes
        if p.stats.replica_restarts > len(seen["restarted"]):
            seen["restarted"].append(
                {
                    "frame": report.frame,
                    "restored": np.array_equal(weights.raw(2)[block], seen["original"]),
                    "arena_cleared": not p.job.replicas[2].arena.any(),
                    "others_kept": all(p.job.replicas[i].arena.any() for i in (0, 1)),
                    "pids": [w.pid for w in p.workers],
                }
            )

    summary = supervisor.run(frames=12, progress=fault)
    # frames 1-3 outvoted: reverified in frame 3, bytes restored (the scrubber never got there)
    assert seen["reverified"] == [(3, True)]
    assert summary["weights_reverified"] == 1
    assert summary["scrub_repairs"] == 1  # the reverification's repair, counted
    # frames 4-6 outvoted again: the replica restarted in frame 6
    (restart,) = seen["restarted"]
    assert restart["frame"] == 6
    assert restart["restored"], "replica 2's copy was not reloaded from the golden image"
    assert restart["arena_cleared"] and restart["others_kept"]
    if placement == "space":
        before, after = seen["pids"], restart["pids"]
        assert after[2] != before[2], "replica 2's worker was not forked again"
        assert after[:2] == before[:2], "the other replicas' workers must not be touched"
    else:
        assert restart["pids"] == seen["pids"]  # one worker; it is not restarted
    stats = summary["partitions"]["classifier"]
    assert stats["replica_restarts"] == 1
    lost = stats["lost_by_replica"]
    assert lost[:2] == [0, 0] and lost[2] > 0
    assert summary["events"]["VOTE_CORRECTED"] == 6  # frames 1-6 only: none after the restart
    assert summary["events"]["REPLICA_VOTE_ALARM"] == 6
    assert summary["delivered"] == 12 and summary["withheld"] == 0
    assert summary["corrected"] == 6
    assert summary["restarts"] == 0 and summary["escalations"] == 0  # the partition kept going
    assert summary["events"]["REGION_REWRITTEN"] == 1


# --- a block no copy of which can be proven good: the golden reload ---------------------------
def test_an_unrepairable_block_is_rewritten_from_the_golden_image(tmp_path):
    """Block 5 corrupted differently in all three copies (each bit wrong in at most one copy,
    so the bitwise majority is the zero block, which its CRC refutes): the scrubber marks it
    unrepairable, the supervisor rewrites it from the golden image before the replicas compute
    again, and the outputs are right."""
    supervisor = _supervisor(tmp_path)  # the scrubber walks the whole region each frame
    seen: dict = {}

    def fault(report, sup):
        p = sup.partitions[0]
        weights = p.job.weights
        block = _block(weights, 5)
        if report.frame == 2:
            seen["original"] = weights.raw(0)[block].copy()
            assert seen["original"].any()  # else the zero majority would be the right value
            for i, pattern in enumerate((0x11, 0x22, 0x44)):
                weights.raw(i)[block] = pattern
        elif report.frame == 3:
            seen["restored"] = all(
                np.array_equal(weights.raw(i)[block], seen["original"]) for i in range(3)
            )
            seen["outputs_agree"] = all(
                np.array_equal(p.job.outputs[i], p.job.outputs[0]) for i in (1, 2)
            )

    summary = supervisor.run(frames=8, progress=fault)
    assert summary["scrub_unrepairable"] == 1
    assert summary["events"]["SCRUB_BLOCK_UNREPAIRABLE"] == 1
    assert summary["golden_reloads"] == 1 and summary["events"]["REGION_REWRITTEN"] == 1
    assert seen["restored"], "the block was not rewritten from the golden image"
    assert seen["outputs_agree"]  # the replicas computed frame 3 with the reloaded block
    assert summary["delivered"] == 8 and summary["withheld"] == 0
    assert summary["corrected"] == 0 and summary["accuracy"] >= 0.95
    assert summary["partitions"]["classifier"]["lost_by_replica"] == [0, 0, 0]


# --- DWC: re-execute once; withhold and alarm when the replicas keep disagreeing --------------
def _upsets_on_request(supervisor, frames: set[int], count: int, once: bool) -> list[int]:
    """Give the partition's worker ``count`` activation upsets with its requests in ``frames``
    (only the frame's first request if ``once``, else the re-execution's too): what simulated
    radiation does in the compute window, through the same request slot, so that the worker's
    own upset hooks corrupt its replicas' activations. Returns the frames of the hits."""
    worker = supervisor.partitions[0].workers[0]
    hit_frames: list[int] = []
    original = worker.request

    def request(sequence, activation_upsets=0, seed=0):
        frame = supervisor.frame
        if frame in frames and not (once and frame in hit_frames):
            hit_frames.append(frame)
            activation_upsets += count
        original(sequence, activation_upsets=activation_upsets, seed=seed)

    worker.request = request
    return hit_frames


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
def test_dwc_reexecutes_on_a_mismatch_and_withholds_when_it_persists(tmp_path, persistent):
    supervisor = _supervisor(tmp_path, redundancy="dwc")
    supervisor.start()  # the workers exist from here on (and are not restarted in this run)
    hits = _upsets_on_request(supervisor, {4, 5, 6} if persistent else {4}, 64, not persistent)
    summary = supervisor.run(frames=10)
    stats = summary["partitions"]["classifier"]
    events = summary["events"]
    assert stats["mode"] == "dwc"
    if not persistent:
        # hit once: the mismatch, one re-execution without the upsets, the output delivered
        assert hits == [4]
        assert stats["dwc_reexecutions"] == 1 and events["DWC_MISMATCH"] == 1
        assert summary["delivered"] == 10 and summary["withheld"] == 0
        assert summary["corrected"] == 1  # the delivered output needed the re-execution
        assert "REPLICA_VOTE_ALARM" not in events
    else:
        # hit in both executions of frames 4-6: withheld each time, a vote alarm each time,
        # and the third alarm has the weights reverified
        assert hits == [4, 4, 5, 5, 6, 6]
        assert stats["dwc_reexecutions"] == 3 and events["DWC_MISMATCH"] == 3
        assert summary["delivered"] == 7 and summary["withheld"] == 3
        assert events["REPLICA_VOTE_ALARM"] == 3
        assert summary["recovery"]["classifier"]["vote_alarms"] == 3
        assert summary["weights_reverified"] == 1
    assert summary["restarts"] == 0


# --- deadlines ----------------------------------------------------------------------------------
@pytest.mark.parametrize("placement", ["time", "space"])
def test_a_worker_stopped_for_less_than_the_heartbeat_timeout_is_late_not_hung(tmp_path, placement):
    """A worker SIGSTOPped between frames and continued 0.2 s after the next request was
    released (a thread watches the request slot, so the 20 ms deadline has passed whatever the
    machine's load): that frame is a deadline miss; the worker is not killed (heartbeat timeout
    5 s), its output is delivered and nothing is restarted."""
    supervisor = _supervisor(tmp_path, placement=placement)
    seen: dict = {}

    def resume_after_release(worker, pid: int, released_before: int) -> None:
        deadline = time.monotonic() + 120
        while int(worker.ctl[Ctl.REQUEST]) == released_before and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):  # killed as hung (a failing run)
            os.kill(pid, signal.SIGCONT)

    def stopper(report, sup):
        p = sup.partitions[0]
        seen.setdefault("misses", []).append(p.stats.deadline_misses)
        seen.setdefault("pids", []).append(p.workers[-1].pid)
        if report.frame == 3:
            worker = p.workers[-1]
            seen["pid"] = worker.pid
            os.kill(worker.pid, signal.SIGSTOP)
            seen["thread"] = threading.Thread(
                target=resume_after_release,
                args=(worker, worker.pid, int(worker.ctl[Ctl.REQUEST])),
                daemon=True,
            )
            seen["thread"].start()

    summary = supervisor.run(frames=8, progress=stopper)
    seen["thread"].join()
    misses = seen["misses"]
    assert misses[4] - misses[3] == 1, misses  # the frame of the stop was late ...
    assert summary["deadline_misses"] == misses[-1] >= 1
    # ... and not a hang: same worker, every output delivered, no failure
    assert summary["recovery"]["classifier"]["failures"] == {}
    assert summary["restarts"] == 0 and set(seen["pids"][3:]) == {seen["pid"]}
    assert summary["delivered"] == 8 and summary["withheld"] == 0


# --- simulated radiation in the CRC tables during `flight run` --------------------------------
def test_flight_run_radiation_reaches_the_crc_tables_and_the_scrubber_repairs_them(tmp_path):
    proc = subprocess.run(
        [
            sys.executable, "-m", "flight.cli", "run", "--environment", "flare",
            "--accelerate", "1e6", "--frames", "60", "--fast", "--json",
            "--state-dir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    tables = {k: v for k, v in summary["upsets"].items() if ".crc[" in k}
    assert set(tables) == {f"classifier/weights.crc[{i}]" for i in range(3)}, summary["upsets"]
    assert sum(tables.values()) > 0
    assert summary["events"]["SCRUB_CRC_TABLE_REPAIRED"] > 0
