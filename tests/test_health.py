"""The health monitor's decisions (flight.health) on scripted workers: completion, deadline,
heartbeat-progress hang, the last look, crash. The real processes are in test_supervisor."""

from __future__ import annotations

import pytest

from flight.health import Outcome, execute
from flight.partition import WorkerDied


class ScriptedWorker:
    """Each wait for completion plays one step of the script: (heartbeat beats, done?), or
    "die"; time is not involved."""

    def __init__(self, *script, done_after_s=0.001):
        self.script = list(script)
        self.heartbeat = 7
        self.heartbeat_at_release = 0
        self.done_after_s = done_after_s  # the worker's completion stamp, from release
        self.waits = 0

    def request(self, sequence, activation_upsets=0, seed=0):
        self.heartbeat_at_release = self.heartbeat

    def wait_done(self, sequence, timeout):
        self.waits += 1
        step = self.script.pop(0)
        if step == "die":
            raise WorkerDied("scripted")
        beats, done = step
        self.heartbeat += beats
        return done


def _run(*workers):
    return execute(list(workers), 1, 0.01, 0.05, [0] * len(workers), seed=0)


def test_done_within_the_deadline_is_ok_and_on_time():
    result = _run(ScriptedWorker((2, True)))
    assert result.outcome is Outcome.OK and not result.late


def test_lateness_is_judged_by_the_workers_completion_stamp():
    """Seen done at the first look, but stamped after the deadline (the supervisor looked
    late): a deadline miss all the same; and the converse is not one."""
    assert _run(ScriptedWorker((2, True), done_after_s=0.02)).late
    assert not _run(ScriptedWorker((1, False), (1, True), done_after_s=0.009)).late


def test_a_slow_worker_that_keeps_beating_is_late_not_hung():
    worker = ScriptedWorker((1, False), (1, False), (1, False), (1, True), done_after_s=0.2)
    result = _run(worker)
    assert result.outcome is Outcome.OK and result.late and worker.waits == 4


def test_a_worker_whose_heartbeat_stands_still_is_hung():
    worker = ScriptedWorker((1, False), (1, False), (0, False), (0, False))
    result = _run(worker)
    assert result.outcome is Outcome.HANG and result.late and worker.waits == 4


def test_a_worker_that_never_took_the_request_is_hung_after_one_timeout():
    result = _run(ScriptedWorker((0, False), (0, False), (0, False)))
    assert result.outcome is Outcome.HANG


def test_finishing_just_as_the_wait_ran_out_is_not_a_hang():
    result = _run(ScriptedWorker((1, False), (0, False), (0, True), done_after_s=0.06))
    assert result.outcome is Outcome.OK and result.late


@pytest.mark.parametrize("victim", [0, 1])
def test_a_dead_worker_is_a_crash(victim):
    workers = [ScriptedWorker((1, True)), ScriptedWorker((1, True))]
    workers[victim].script = ["die"]
    assert _run(*workers).outcome is Outcome.CRASH
