"""The recovery state machine, alone: invented clock, no processes (see flight/recovery.py)."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import event as label
from hypothesis import given
from hypothesis import strategies as st

from flight import events
from flight.errors import ConfigError
from flight.recovery import (
    Crashed,
    DegradeRedundancy,
    DisablePartition,
    Enable,
    EnterSafeMode,
    ExitCode,
    Exited,
    ExitSafeMode,
    HeartbeatMissed,
    KillPartition,
    MemoryUpsets,
    PartitionPolicy,
    PartitionStarted,
    PartitionState,
    ProcessorReset,
    Reason,
    RecoveryError,
    RecoveryFSM,
    RestartCompleted,
    RestartPartition,
    RestartReplica,
    RestartType,
    ReverifyWeights,
    StartFailed,
    Step,
    Strategy,
    SupervisorPolicy,
    SystemState,
    Tick,
    VoteAlarm,
    worst_case_restarts,
)

S = PartitionState
FAILURE_REASONS = {Reason.HANG, Reason.CRASH, Reason.EXIT, Reason.VOTE, Reason.START_FAILED}


def boot(policy: SupervisorPolicy, log: events.EventLog | None = None) -> RecoveryFSM:
    fsm = RecoveryFSM(policy, now=0.0, log=log)
    for name in policy.names:
        assert fsm.handle(PartitionStarted(name), 0.0) == ()
    return fsm


def come_up(fsm: RecoveryFSM, actions, now: float) -> None:
    """What the supervisor does: every restarted partition comes up."""
    for action in actions:
        if isinstance(action, RestartPartition):
            fsm.handle(PartitionStarted(action.name), now)


def abc(**kw) -> SupervisorPolicy:
    return SupervisorPolicy(tuple(PartitionPolicy(n) for n in "abc"), **kw)


# --- strategies, restart types, hang vs crash -------------------------------------------------
@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("one_for_one", [RestartPartition("b", Reason.CRASH, "tmr", "b")]),
        (
            "rest_for_one",
            [
                KillPartition("c", Reason.SIBLING, "b"),
                RestartPartition("b", Reason.CRASH, "tmr", "b"),
                RestartPartition("c", Reason.SIBLING, "tmr", "b"),
            ],
        ),
        (
            "one_for_all",
            [
                KillPartition("c", Reason.SIBLING, "b"),
                KillPartition("a", Reason.SIBLING, "b"),
                RestartPartition("a", Reason.SIBLING, "tmr", "b"),
                RestartPartition("b", Reason.CRASH, "tmr", "b"),
                RestartPartition("c", Reason.SIBLING, "tmr", "b"),
            ],
        ),
    ],
)
def test_strategies_kill_in_reverse_and_restart_in_order(strategy, expected):
    fsm = boot(abc(strategy=strategy))
    assert list(fsm.handle(Crashed("b", signal=11), 1.0)) == expected
    restarted = {a.name for a in expected if isinstance(a, RestartPartition)}
    for name in "abc":
        assert fsm.state(name) is (S.RESTARTING if name in restarted else S.NOMINAL)
    # siblings' restarts do not count against their own intensity, only as "sibling"
    assert fsm.status("b").restarts == {"crash": 1}
    if strategy != "one_for_one":
        assert fsm.status("c").restarts == {"sibling": 1} and fsm.status("c").failures == {}


def test_only_running_siblings_are_restarted():
    parts = (
        PartitionPolicy("a"),
        PartitionPolicy("b", max_restarts=0, ladder=("disable",)),
        PartitionPolicy("c"),
        PartitionPolicy("d"),
    )
    fsm = boot(SupervisorPolicy(parts, strategy="one_for_all"))
    # disabling b restarts nobody: the others keep running without it
    assert fsm.handle(Crashed("b"), 1.0) == (DisablePartition("b", Reason.CRASH),)
    fsm.handle(Crashed("c"), 2.0)  # c, a, d restarting
    fsm.handle(PartitionStarted("a"), 2.5)
    fsm.handle(PartitionStarted("d"), 2.5)
    assert fsm.handle(HeartbeatMissed("d"), 3.0) == (
        KillPartition("d", Reason.HANG, "d"),
        KillPartition("a", Reason.SIBLING, "d"),
        RestartPartition("a", Reason.SIBLING, "tmr", "d"),
        RestartPartition("d", Reason.HANG, "tmr", "d"),
    )  # b disabled and c already restarting are left alone


def test_hang_is_killed_first_crash_is_only_restarted():
    fsm = boot(abc())
    assert fsm.handle(HeartbeatMissed("a"), 1.0) == (
        KillPartition("a", Reason.HANG, "a"),
        RestartPartition("a", Reason.HANG, "tmr", "a"),
    )
    fsm.handle(PartitionStarted("a"), 1.5)
    assert fsm.handle(Crashed("a", exit_code=1), 2.0) == (
        RestartPartition("a", Reason.CRASH, "tmr", "a"),
    )
    fsm.handle(PartitionStarted("a"), 2.5)
    assert fsm.state("a") is S.NOMINAL
    assert fsm.status("a").restarts == {"hang": 1, "crash": 1}
    assert fsm.status("a").failures == {"hang": 1, "crash": 1}


def test_restart_types_follow_otp():
    parts = (
        PartitionPolicy("perm"),
        PartitionPolicy("trans", restart="transient"),
        PartitionPolicy("temp", restart=RestartType.TEMPORARY),
    )
    fsm = boot(SupervisorPolicy(parts))
    # permanent: restarted even after a normal exit
    assert fsm.handle(Exited("perm"), 1.0) == (
        RestartPartition("perm", Reason.EXIT, "tmr", "perm"),
    )
    # transient: restarted after an abnormal end only
    assert fsm.handle(Exited("trans", normal=False), 1.0) == (
        RestartPartition("trans", Reason.CRASH, "tmr", "trans"),
    )
    fsm.handle(PartitionStarted("trans"), 1.5)
    assert fsm.handle(Exited("trans"), 2.0) == ()
    assert fsm.state("trans") is S.STOPPED
    # temporary: never restarted; a hung one is still killed
    assert fsm.handle(HeartbeatMissed("temp"), 2.0) == (KillPartition("temp", Reason.HANG, "temp"),)
    assert fsm.state("temp") is S.STOPPED
    assert fsm.handle(Crashed("temp"), 3.0) == ()  # the killed process's exit: stale
    assert fsm.status("temp").stale == 1


def test_temporary_sibling_is_killed_not_restarted():
    parts = (PartitionPolicy("a"), PartitionPolicy("t", restart="temporary"))
    fsm = boot(SupervisorPolicy(parts, strategy="one_for_all"))
    assert fsm.handle(Crashed("a"), 1.0) == (
        KillPartition("t", Reason.SIBLING, "a"),
        RestartPartition("a", Reason.CRASH, "tmr", "a"),
    )
    assert fsm.state("t") is S.STOPPED


def test_crash_while_restarting_is_counted_not_acted_on():
    fsm = boot(abc())
    fsm.handle(HeartbeatMissed("a"), 1.0)
    assert fsm.handle(Crashed("a", signal=9), 1.1) == ()  # our own kill, reported back
    assert fsm.status("a").stale == 1 and fsm.status("a").failures == {"hang": 1}
    # once the new process is spawned, its crash is a real failure
    fsm.handle(RestartCompleted("a"), 1.2)
    assert fsm.state("a") is S.STARTING
    assert fsm.handle(Crashed("a"), 1.3) == (RestartPartition("a", Reason.CRASH, "tmr", "a"),)


def test_a_restart_that_does_not_come_up_is_a_failure():
    parts = (PartitionPolicy("a", start_deadline=2.0), PartitionPolicy("b", start_deadline=None))
    fsm = RecoveryFSM(SupervisorPolicy(parts), now=0.0)
    assert fsm.handle(Tick(), 1.9) == ()
    assert fsm.handle(Tick(), 2.0) == (
        KillPartition("a", Reason.START_FAILED, "a"),
        RestartPartition("a", Reason.START_FAILED, "tmr", "a"),
    )
    assert fsm.handle(Tick(), 100.0)[0] == KillPartition("a", Reason.START_FAILED, "a")
    assert fsm.state("b") is S.STARTING  # no deadline: waits forever
    assert fsm.handle(StartFailed("b", "did not come up"), 101.0)[-1] == RestartPartition(
        "b", Reason.START_FAILED, "tmr", "b"
    )
    assert fsm.handle(StartFailed("a"), 101.0)[-1].reason is Reason.START_FAILED
    fsm.handle(PartitionStarted("a"), 101.5)
    assert fsm.handle(StartFailed("a"), 102.0) == ()  # running: stale
    assert fsm.status("a").failures == {"start_failed": 3}


# --- intensity and escalation -----------------------------------------------------------------
def crash_loop(fsm, name, times):
    """Crash ``name`` at each time (bringing restarts up at once); return each call's actions."""
    out = []
    for t in times:
        actions = fsm.handle(Crashed(name), t)
        come_up(fsm, actions, t)
        out.append(actions)
    return out


def test_exactly_r_restarts_in_t_then_escalation():
    policy = SupervisorPolicy((PartitionPolicy("a", max_restarts=3, period=10.0),))
    fsm = boot(policy)
    results = crash_loop(fsm, "a", [1.0, 2.0, 3.0, 4.0])
    assert all(r == (RestartPartition("a", Reason.CRASH, "tmr", "a"),) for r in results[:3])
    assert results[3][0] == DegradeRedundancy("a", "tmr", "dwc")
    assert fsm.status("a").escalations == 1


def test_sliding_window_forgets_restarts_older_than_t():
    policy = SupervisorPolicy((PartitionPolicy("a", max_restarts=3, period=10.0),))
    fsm = boot(policy)
    crash_loop(fsm, "a", [0.5, 5.0, 9.0])
    # at 10.4 the restart at 0.5 is more than 10 s old: a fresh restart is allowed
    assert crash_loop(fsm, "a", [10.6])[0][0] == RestartPartition("a", Reason.CRASH, "tmr", "a")
    # but 5.0, 9.0 and 10.6 are all within 10 s of 14.9
    assert crash_loop(fsm, "a", [14.9])[0][0] == DegradeRedundancy("a", "tmr", "dwc")


def test_zero_restarts_escalates_at_once():
    policy = SupervisorPolicy((PartitionPolicy("a", max_restarts=0, ladder=["disable"]),))
    fsm = boot(policy)
    assert fsm.handle(HeartbeatMissed("a"), 1.0) == (
        KillPartition("a", Reason.HANG, "a"),
        DisablePartition("a", Reason.HANG),
    )
    assert fsm.state("a") is S.DISABLED
    assert fsm.handle(Crashed("a"), 2.0) == () and fsm.handle(Tick(), 50.0) == ()


def test_full_ladder_degrade_disable_safe_mode_reset():
    log = events.EventLog(capacity=512)
    ladder = ("degrade", "disable", "safe_mode", "reset")
    policy = SupervisorPolicy((PartitionPolicy("a", max_restarts=1, period=60.0, ladder=ladder),))
    fsm = boot(policy, log)
    t = iter(range(1, 100))
    restart = (RestartPartition,)

    def crash():
        actions = fsm.handle(Crashed("a"), next(t))
        come_up(fsm, actions, fsm.now)
        return [type(a) for a in actions]

    assert crash() == [*restart]
    assert crash() == [DegradeRedundancy, RestartPartition]
    assert fsm.state("a") is S.DEGRADED and fsm.mode("a") == "dwc"
    assert crash() == [*restart]
    assert crash() == [DegradeRedundancy, RestartPartition]
    assert fsm.mode("a") == "none"
    assert crash() == [*restart]
    assert crash() == [DisablePartition]
    assert fsm.state("a") is S.DISABLED and fsm.status("a").next_step is Step.SAFE_MODE
    # ground re-enables it; it keeps failing: safe mode, then processor reset
    come_up(fsm, fsm.handle(Enable("a"), next(t)), fsm.now)
    assert crash() == [*restart]
    assert crash() == [EnterSafeMode, RestartPartition]
    assert fsm.system_state is SystemState.SAFE_MODE
    assert crash() == [*restart]
    final = fsm.handle(Crashed("a"), next(t))
    assert final == (ProcessorReset("a: escalation ladder reached reset", ExitCode.ESCALATION),)
    assert final[0].exit_code == 70 and fsm.system_state is SystemState.RESET
    for event in (Crashed("a"), PartitionStarted("a"), Tick(), Enable("a"), ExitSafeMode()):
        assert fsm.handle(event, fsm.now + 1) == ()
    assert fsm.status("a").escalations == 5
    counts = log.counts()
    assert counts["REDUNDANCY_DEGRADED"] == 2
    assert counts["PARTITION_DISABLED"] == counts["PARTITION_ENABLED"] == 1
    assert counts["SAFE_MODE_ENTERED"] == counts["PROCESSOR_RESET_REQUESTED"] == 1
    assert counts["RESTART_INTENSITY_EXCEEDED"] == 5
    assert counts["PARTITION_CRASHED"] == 10
    assert counts["PARTITION_RESTARTED"] == 9  # 5 after crashes, 3 escalations, 1 enable
    assert fsm.status("a").restarts == {"crash": 5, "escalation": 3, "enabled": 1}


def test_disable_as_last_step_repeats_after_enable():
    policy = SupervisorPolicy((PartitionPolicy("a", max_restarts=1, ladder=("disable",)),))
    fsm = boot(policy)
    for round_ in range(3):
        results = crash_loop(fsm, "a", [10.0 * round_ + 1, 10.0 * round_ + 2])
        assert results[1] == (DisablePartition("a", Reason.CRASH),)
        come_up(fsm, fsm.handle(Enable("a"), 10.0 * round_ + 3), 10.0 * round_ + 3)
    assert fsm.status("a").escalations == 3
    assert fsm.handle(Enable("a"), 40.0) == ()  # already running: stale command


def test_safe_mode_suspends_and_resumes_partitions_not_marked_for_it():
    parts = (
        PartitionPolicy("core", max_restarts=0, ladder=("safe_mode", "reset")),
        PartitionPolicy("payload", in_safe_mode=False),
        PartitionPolicy("idle", in_safe_mode=False, restart="temporary"),
    )
    fsm = boot(SupervisorPolicy(parts))
    fsm.handle(Exited("idle"), 0.5)  # ended by design: stays stopped through safe mode
    actions = fsm.handle(HeartbeatMissed("core"), 1.0)
    assert actions == (
        EnterSafeMode("core: repeated hang"),
        KillPartition("payload", Reason.SAFE_MODE, "payload"),
        KillPartition("core", Reason.HANG, "core"),
        RestartPartition("core", Reason.ESCALATION, "tmr", "core"),
    )
    assert fsm.state("payload") is S.SUSPENDED and fsm.state("idle") is S.STOPPED
    assert fsm.handle(Crashed("payload"), 1.1) == ()  # our kill reported back
    assert fsm.handle(Enable("idle"), 1.2) == ()  # enabled, but suspended until safe mode ends
    assert fsm.state("idle") is S.SUSPENDED
    assert fsm.handle(ExitSafeMode(), 5.0) == (
        RestartPartition("payload", Reason.RESUMED, "tmr", "payload"),
        RestartPartition("idle", Reason.RESUMED, "tmr", "idle"),
    )
    assert fsm.system_state is SystemState.NOMINAL
    assert fsm.handle(ExitSafeMode(), 6.0) == ()


def test_commands_that_do_not_apply_are_counted_and_saved():
    policy = SupervisorPolicy(
        (PartitionPolicy("a", max_restarts=0, ladder=("safe_mode", "reset")),)
    )
    fsm = boot(policy)
    assert fsm.handle(ExitSafeMode(), 1.0) == () and fsm.stale_commands == 1
    fsm.handle(Crashed("a"), 2.0)  # safe mode: now the command applies and is not stale
    assert fsm.handle(ExitSafeMode(), 3.0) == () and fsm.stale_commands == 1
    assert fsm.system_state is SystemState.NOMINAL
    fsm.handle(ExitSafeMode(), 4.0)
    restored = RecoveryFSM.from_dict(policy, json.loads(json.dumps(fsm.to_dict())))
    assert restored.stale_commands == 2


def test_safe_mode_entry_budget_ends_in_processor_reset():
    ladder = ("safe_mode", "reset")
    parts = tuple(PartitionPolicy(n, max_restarts=0, ladder=ladder) for n in "ab")
    policy = SupervisorPolicy(parts, max_safe_mode_entries=1, safe_mode_period=100.0)
    fsm = boot(policy)
    assert type(fsm.handle(Crashed("a"), 1.0)[0]) is EnterSafeMode
    fsm.handle(PartitionStarted("a"), 1.0)
    fsm.handle(ExitSafeMode(), 2.0)
    assert fsm.handle(Crashed("b"), 3.0) == (
        ProcessorReset(
            "more than 1 safe-mode entries in 100 s (b: repeated crash)", ExitCode.RESET_BUDGET
        ),
    )
    # out of the window, the same second entry is allowed
    fsm = boot(policy)
    fsm.handle(Crashed("a"), 1.0)
    assert type(fsm.handle(Crashed("b"), 101.5)[0]) is RestartPartition  # already in safe mode
    assert fsm.system_state is SystemState.SAFE_MODE


def test_supervisor_wide_restart_intensity_resets_the_processor():
    parts = tuple(PartitionPolicy(f"p{i}", max_restarts=1, ladder=("disable",)) for i in range(4))
    fsm = boot(SupervisorPolicy(parts, max_restarts=3, period=10.0))
    for i in range(3):
        assert type(fsm.handle(Crashed(f"p{i}"), 1.0 + i)[0]) is RestartPartition
    (reset,) = fsm.handle(Crashed("p3"), 5.0)
    assert reset.exit_code is ExitCode.RESTART_INTENSITY and int(reset.exit_code) == 72


# --- vote alarms ------------------------------------------------------------------------------
def test_vote_alarms_reverify_then_restart_replica_then_partition():
    log = events.EventLog()
    fsm = boot(abc(vote_alarms=3, vote_period=10.0), log)

    def alarms(n, t0, replica=1):
        return [fsm.handle(VoteAlarm("a", replica, "lost"), t0 + 0.1 * i) for i in range(n)]

    assert alarms(2, 1.0) == [(), ()]
    assert alarms(1, 2.0) == [(ReverifyWeights("a", 1),)]
    assert alarms(3, 3.0)[-1] == (RestartReplica("a", 1),)
    assert alarms(3, 4.0)[-1] == (
        KillPartition("a", Reason.VOTE, "a"),
        RestartPartition("a", Reason.VOTE, "tmr", "a"),
    )
    status = fsm.status("a")
    assert (status.vote_alarms, status.reverifies, status.replica_restarts) == (9, 1, 1)
    assert status.restarts == {"vote": 1}
    assert log.count(events.REPLICA_VOTE_ALARM) == 9
    assert log.count(events.REPLICA_REVERIFY_REQUESTED) == log.count(events.REPLICA_RESTARTED) == 1


def test_sparse_vote_alarms_do_nothing_and_quiet_resets_the_remedy():
    fsm = boot(abc(vote_alarms=2, vote_period=10.0))
    assert [fsm.handle(VoteAlarm("b", 0), t) for t in (1.0, 12.0, 23.0)] == [(), (), ()]
    assert fsm.handle(VoteAlarm("b", 0), 24.0) == (ReverifyWeights("b", 0),)
    # quiet for longer than the period: the reverification worked, start over
    fsm.handle(VoteAlarm("b", 0), 40.0)
    assert fsm.handle(VoteAlarm("b", 0), 41.0) == (ReverifyWeights("b", 0),)
    # other replicas are tracked separately
    assert fsm.handle(VoteAlarm("b", 2), 42.0) == ()


def test_vote_alarm_without_a_culprit_reverifies_all_then_restarts():
    fsm = boot(abc(vote_alarms=1))
    assert fsm.handle(VoteAlarm("c", None, "no majority"), 1.0) == (ReverifyWeights("c", None),)
    assert fsm.handle(VoteAlarm("c", None), 2.0)[-1] == RestartPartition(
        "c", Reason.VOTE, "tmr", "c"
    )


def test_vote_alarm_from_a_replica_dropped_by_degradation_is_stale():
    policy = SupervisorPolicy((PartitionPolicy("a", max_restarts=0),), vote_alarms=1)
    fsm = boot(policy)
    come_up(fsm, fsm.handle(Crashed("a"), 1.0), 1.0)
    assert fsm.mode("a") == "dwc"
    assert fsm.handle(VoteAlarm("a", 2), 2.0) == ()
    assert fsm.status("a").stale == 1
    assert fsm.handle(VoteAlarm("a", 1), 3.0) == (ReverifyWeights("a", 1),)


# --- upset storms ----------------------------------------------------------------------------
def _to_the_last_remedy(fsm: RecoveryFSM, t0: float) -> None:
    """Vote alarms of replica 1 through reverification and replica restart (vote_alarms=1)."""
    assert fsm.handle(VoteAlarm("a", 1), t0) == (ReverifyWeights("a", 1),)
    assert fsm.handle(VoteAlarm("a", 1), t0 + 0.1) == (RestartReplica("a", 1),)


def test_an_upset_storm_holds_the_vote_restart_that_would_degrade():
    log = events.EventLog()
    fsm = boot(abc(vote_alarms=1, vote_period=10.0, storm_upsets=5), log)
    assert fsm.handle(MemoryUpsets(3), 1.0) == () and not fsm.storm
    assert fsm.handle(MemoryUpsets(2), 2.0) == () and fsm.storm  # 5 within the period
    _to_the_last_remedy(fsm, 3.0)  # the cheap remedies still happen in a storm
    for t in (3.2, 3.3, 3.4):
        assert fsm.handle(VoteAlarm("a", 1), t) == ()  # held, again and again
    assert fsm.handle(VoteAlarm("a", None, "no majority"), 3.5) == (ReverifyWeights("a", None),)
    assert fsm.handle(VoteAlarm("a", None, "no majority"), 3.6) == ()  # held too
    status = fsm.status("a")
    assert status.storm_holds == 4 and status.restarts == {} and status.mode == "tmr"
    assert log.count(events.VOTE_ESCALATION_HELD) == 4
    # the storm passes (no upsets for a whole period): the next alarm restarts the partition
    assert not fsm.handle(Tick(), 11.5) and not fsm.storm
    assert fsm.handle(VoteAlarm("a", 1), 11.6)[-1] == RestartPartition("a", Reason.VOTE, "tmr", "a")


def test_without_a_storm_the_same_alarms_restart_and_degrade():
    """The control: quiet memory (a failing replica, not radiation) or the guard off."""
    for policy, upsets in ((abc(vote_alarms=1, storm_upsets=5), 4), (abc(vote_alarms=1), 10**6)):
        fsm = boot(policy)
        fsm.handle(MemoryUpsets(upsets), 1.0)
        assert not fsm.storm
        _to_the_last_remedy(fsm, 2.0)
        assert fsm.handle(VoteAlarm("a", 1), 2.2)[-1] == RestartPartition(
            "a", Reason.VOTE, "tmr", "a"
        )


def test_storm_evidence_stays_small_however_long_the_storm():
    """Reports at 20 Hz for an hour: the record (saved in the CDS) keeps at most one bucket per
    1/64 of the window, and the storm ends when the window holds fewer upsets than the
    threshold (within a bucket's width)."""
    fsm = boot(abc(vote_period=10.0, storm_upsets=100))
    last = 0.0
    for frame in range(20 * 3600):
        last = frame / 20
        fsm.handle(MemoryUpsets(1), last)
        if frame >= 200 and frame % 997 == 0:
            assert fsm.storm  # 200 upsets in every 10 s window
    assert len(fsm.to_dict()["upsets"]) <= 65
    fsm.handle(Tick(), last + 4.0)  # the last 6 s of reports (120 upsets) are in the window
    assert fsm.storm
    fsm.handle(Tick(), last + 6.0)  # the last 4 s (80)
    assert not fsm.storm
    fsm.handle(Tick(), last + 10.1)
    assert fsm.to_dict()["upsets"] == []


def test_storm_evidence_survives_a_supervisor_restart():
    policy = abc(vote_alarms=1, storm_upsets=5)
    fsm = boot(policy)
    fsm.handle(MemoryUpsets(7), 1.0)
    _to_the_last_remedy(fsm, 2.0)
    fsm.handle(VoteAlarm("a", 1), 2.2)
    restored = RecoveryFSM.from_dict(policy, json.loads(json.dumps(fsm.to_dict())), now=3.0)
    assert restored.storm and restored.status("a").storm_holds == 1
    old = {k: v for k, v in fsm.to_dict().items() if k != "upsets"}  # written before the guard
    for part in old["partitions"].values():
        del part["storm_holds"]
    assert RecoveryFSM.from_dict(policy, old).status("a").storm_holds == 0


def test_storm_inputs_and_policy_are_checked():
    fsm = boot(abc())
    for bad in (-1, 1.5, True, None):
        with pytest.raises(RecoveryError, match="memory upset count"):
            fsm.handle(MemoryUpsets(bad), 1.0)
    with pytest.raises(ConfigError, match="storm_upsets"):
        abc(storm_upsets=-1)


# --- bugs raise -------------------------------------------------------------------------------
def test_programming_errors_raise():
    parts = (PartitionPolicy("a"), PartitionPolicy("s", redundancy="none", ladder=["disable"]))
    fsm = boot(SupervisorPolicy(parts))
    with pytest.raises(RecoveryError, match="unknown partition 'x'"):
        fsm.handle(Crashed("x"), 1.0)
    with pytest.raises(RecoveryError, match="no replica 3"):
        fsm.handle(VoteAlarm("a", 3), 1.0)
    with pytest.raises(RecoveryError, match="no replica True"):
        fsm.handle(VoteAlarm("a", True), 1.0)
    with pytest.raises(RecoveryError, match="simplex"):
        fsm.handle(VoteAlarm("s", 0), 1.0)
    with pytest.raises(RecoveryError, match="not a recovery input"):
        fsm.handle("crash", 1.0)  # type: ignore[arg-type]
    with pytest.raises(RecoveryError, match="finite"):
        fsm.handle(Tick(), float("nan"))
    fsm.handle(Tick(), 5.0)
    with pytest.raises(RecoveryError, match="backwards"):
        fsm.handle(Tick(), 4.0)
    with pytest.raises(RecoveryError):
        fsm.status("x")
    assert fsm.now == 5.0  # a rejected input changes nothing


# --- policy validation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "partition name"),
        ({"name": "a b"}, "partition name"),
        ({"restart": "sometimes"}, "restart must be one of"),
        ({"max_restarts": -1}, "max_restarts must be an integer >= 0"),
        ({"max_restarts": 1.5}, "max_restarts"),
        ({"max_restarts": True}, "max_restarts"),
        ({"period": 0}, "period"),
        ({"period": float("inf")}, "period"),
        ({"redundancy": "qmr"}, "redundancy"),
        ({"start_deadline": -1.0}, "start_deadline"),
        ({"in_safe_mode": "yes"}, "in_safe_mode"),
        ({"ladder": ()}, "empty"),
        ({"ladder": "disable"}, "list of steps"),
        ({"ladder": ("reboot",)}, "ladder step must be one of"),
        ({"ladder": ("disable", "disable")}, "twice"),
        ({"ladder": ("disable", "degrade")}, "in the order"),
        ({"ladder": ("degrade", "safe_mode")}, "must end with 'disable' or 'reset'"),
        ({"redundancy": "none"}, "'degrade' on a simplex"),
    ],
)
def test_partition_policy_validation(kwargs, message):
    kwargs = {"name": "a", **kwargs}
    with pytest.raises(ConfigError, match=message):
        PartitionPolicy(**kwargs)


def test_partition_policy_accepts_strings_from_mission_files():
    p = PartitionPolicy("cam-1.v2", restart="transient", ladder=["degrade", "reset"])
    assert p.restart is RestartType.TRANSIENT and p.ladder == (Step.DEGRADE, Step.RESET)
    s = SupervisorPolicy([p], strategy="rest_for_one")
    assert s.strategy is Strategy.REST_FOR_ONE and s.partitions == (p,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"partitions": ()}, "at least one partition"),
        ({"partitions": "ab"}, "list of PartitionPolicy"),
        ({"partitions": ("a",)}, "not a PartitionPolicy"),
        ({"partitions": (PartitionPolicy("a"), PartitionPolicy("a"))}, "unique"),
        ({"strategy": "all_for_one"}, "strategy"),
        ({"max_restarts": 0}, "max_restarts"),
        ({"period": -5}, "period"),
        ({"max_safe_mode_entries": -1}, "max_safe_mode_entries"),
        ({"safe_mode_period": 0}, "safe_mode_period"),
        ({"vote_alarms": 0}, "vote_alarms"),
        ({"vote_period": None}, "vote_period"),
    ],
)
def test_supervisor_policy_validation(kwargs, message):
    kwargs = {"partitions": (PartitionPolicy("a"),), **kwargs}
    with pytest.raises(ConfigError, match=message):
        SupervisorPolicy(**kwargs)


def test_partition_budget_larger_than_the_supervisor_budget_is_a_conflict():
    greedy = PartitionPolicy("a", max_restarts=10, ladder=("degrade", "disable"))
    assert worst_case_restarts(greedy) == 10 + 2 * 11
    with pytest.raises(ConfigError, match=r"up to 32 restarts .* only 30 restarts in 60 s"):
        SupervisorPolicy((greedy,), max_restarts=30)
    SupervisorPolicy((greedy,), max_restarts=32)  # exactly enough
    with pytest.raises(ConfigError, match="max_safe_mode_entries is 0"):
        SupervisorPolicy(
            (PartitionPolicy("a", ladder=("safe_mode", "reset")),), max_safe_mode_entries=0
        )


@pytest.mark.parametrize(
    ("kwargs", "worst"),
    [
        ({"restart": "temporary"}, 0),
        ({"max_restarts": 2, "ladder": ("reset",)}, 2),
        ({"max_restarts": 2, "redundancy": "dwc", "ladder": ("degrade", "reset")}, 5),
        ({"max_restarts": 1, "ladder": ("safe_mode", "reset")}, 3),
        ({"max_restarts": 1, "ladder": ("safe_mode", "reset"), "in_safe_mode": False}, 1),
        ({"max_restarts": 4, "ladder": ("disable", "safe_mode", "reset")}, 9),
    ],
)
def test_worst_case_restarts(kwargs, worst):
    assert worst_case_restarts(PartitionPolicy("a", **kwargs)) == worst


# --- events and snapshots ---------------------------------------------------------------------
def test_every_transition_is_a_counted_event():
    log = events.EventLog()
    fsm = RecoveryFSM(abc(strategy="rest_for_one"), now=0.0, log=log)
    for name in "abc":
        fsm.handle(PartitionStarted(name), 0.0)
    fsm.handle(HeartbeatMissed("b"), 1.0)
    fsm.handle(Crashed("b"), 1.1)  # stale
    fsm.handle(Exited("a"), 2.0)
    assert log.counts() == {
        "PARTITION_STARTED": 3,
        "PARTITION_HUNG": 1,
        "PARTITION_EXITED": 1,
        "PARTITION_RESTARTED": 3,
        "RECOVERY_STALE_EVENT": 1,
    }
    hung = next(e for e in log if e.name == "PARTITION_HUNG")
    assert hung.fields == {"partition": "b", "at": 1.0}
    restarted = [e.fields for e in log if e.name == "PARTITION_RESTARTED"]
    assert restarted[1] == {"partition": "c", "at": 1.0, "reason": "sibling", "trigger": "b"}
    assert all(definition.id >= 300 for definition in map(events.by_name, log.counts()))


def busy_machine() -> tuple[SupervisorPolicy, RecoveryFSM]:
    parts = (
        PartitionPolicy("a", max_restarts=2, period=30.0, ladder=("degrade", "safe_mode", "reset")),
        PartitionPolicy("b", max_restarts=0, ladder=("disable",)),
        PartitionPolicy("c", in_safe_mode=False),
    )
    policy = SupervisorPolicy(parts, vote_alarms=2)
    fsm = boot(policy)
    crash_loop(fsm, "a", [1.0, 2.0, 3.0, 4.0])
    fsm.handle(Crashed("b"), 5.0)
    fsm.handle(VoteAlarm("a", 1), 6.0)
    fsm.handle(VoteAlarm("a", 1), 6.5)
    fsm.handle(VoteAlarm("a", 0), 7.0)
    return policy, fsm


def test_snapshot_round_trip_keeps_what_matters():
    policy, fsm = busy_machine()
    saved = json.loads(json.dumps(fsm.to_dict()))
    restored = RecoveryFSM.from_dict(policy, saved, now=8.0)
    assert restored.counters() == {
        name: {**c, "state": restored.state(name).value} for name, c in fsm.counters().items()
    }
    assert restored.state("b") is S.DISABLED  # disabled stays disabled
    assert restored.state("a") is S.STARTING  # the processes did not survive the supervisor
    assert restored.mode("a") == "dwc" and restored.status("a").next_step is Step.DEGRADE
    for m in (fsm, restored):  # same window and vote memory: same next decisions
        m.handle(PartitionStarted("a"), 8.0)
        assert m.handle(VoteAlarm("a", 1), 8.5) == ()
        assert m.handle(VoteAlarm("a", 1), 9.0) == (RestartReplica("a", 1),)
        assert crash_loop(m, "a", [9.5, 9.6])[1][0] == DegradeRedundancy("a", "dwc", "none")
    once = RecoveryFSM.from_dict(policy, restored.to_dict()).to_dict()
    assert RecoveryFSM.from_dict(policy, once).to_dict() == once  # restoring is idempotent


def test_every_saved_field_is_restored():
    """Nothing is saved that a restore does not read: dropping any one field of a snapshot
    either changes the restored machine or is rejected as malformed."""
    policy, fsm = busy_machine()
    data = json.loads(json.dumps(fsm.to_dict()))
    data["upsets"] = [[7.5, 3]]  # non-default values for the fields read with a default
    data["partitions"]["a"]["storm_holds"] = 2
    restored = RecoveryFSM.from_dict(policy, data, now=8.0).to_dict()
    paths = [(k,) for k in data if k not in ("version", "partitions")]
    paths += [("partitions", "a", k) for k in data["partitions"]["a"]]
    for path in paths:
        damaged = copy.deepcopy(data)
        *parents, last = path
        node = damaged
        for key in parents:
            node = node[key]
        del node[last]
        try:
            again = RecoveryFSM.from_dict(policy, damaged, now=8.0).to_dict()
        except ConfigError:
            continue
        assert again != restored, f"{path} is saved but never restored"


def test_snapshot_after_a_board_reboot_shifts_times_to_now():
    policy, fsm = busy_machine()
    restored = RecoveryFSM.from_dict(policy, fsm.to_dict(), now=0.5)  # clock restarted
    assert restored.now == 0.5
    assert max(restored.to_dict()["partitions"]["a"]["window"]) <= 0.5
    restored.handle(PartitionStarted("a"), 0.6)
    crash_loop(restored, "a", [0.7])  # the restart at 4.0 (now -2.5) still counts
    assert restored.handle(Crashed("a"), 0.8)[0] == DegradeRedundancy("a", "dwc", "none")


def test_snapshot_of_a_reset_machine_restarts_nominal():
    policy = SupervisorPolicy((PartitionPolicy("a", max_restarts=0, ladder=("reset",)),))
    fsm = boot(policy)
    assert type(fsm.handle(Crashed("a"), 1.0)[0]) is ProcessorReset
    restored = RecoveryFSM.from_dict(policy, fsm.to_dict(), now=2.0)
    assert restored.system_state is SystemState.NOMINAL and restored.state("a") is S.STARTING


def test_snapshot_mismatch_or_damage_is_a_config_error():
    policy, fsm = busy_machine()
    data = fsm.to_dict()
    with pytest.raises(ConfigError, match="partitions"):
        RecoveryFSM.from_dict(SupervisorPolicy((PartitionPolicy("a"),)), data)
    with pytest.raises(ConfigError, match="version"):
        RecoveryFSM.from_dict(policy, {**data, "version": 99})
    with pytest.raises(ConfigError, match="malformed"):
        RecoveryFSM.from_dict(policy, {k: v for k, v in data.items() if k != "system"})
    bad = json.loads(json.dumps(data))
    bad["partitions"]["b"]["mode"] = "tmr2"
    with pytest.raises(ConfigError, match="mode"):
        RecoveryFSM.from_dict(policy, bad)
    bad = json.loads(json.dumps(data))
    bad["partitions"]["b"]["level"] = 7
    with pytest.raises(ConfigError, match="ladder level"):
        RecoveryFSM.from_dict(policy, bad)


# --- property: arbitrary input sequences --------------------------------------------------------
LADDERS = [
    ("disable",),
    ("reset",),
    ("degrade", "disable"),
    ("degrade", "safe_mode", "reset"),
    ("degrade", "disable", "safe_mode", "reset"),
    ("safe_mode", "reset"),
]
NAMES = ("a", "b", "c")


@st.composite
def partition_policies(draw, name):
    redundancy = draw(st.sampled_from(["tmr", "dwc", "none"]))
    ladders = [lad for lad in LADDERS if redundancy != "none" or "degrade" not in lad]
    return PartitionPolicy(
        name,
        restart=draw(st.sampled_from(list(RestartType))),
        max_restarts=draw(st.integers(0, 3)),
        period=draw(st.sampled_from([1.0, 5.0, 10.0])),
        redundancy=redundancy,
        ladder=draw(st.sampled_from(ladders)),
        start_deadline=draw(st.sampled_from([None, 2.0])),
        in_safe_mode=draw(st.booleans()),
    )


@st.composite
def supervisor_policies(draw):
    parts = tuple(draw(partition_policies(n)) for n in NAMES)
    worst = max(worst_case_restarts(p) for p in parts)
    return SupervisorPolicy(
        parts,
        strategy=draw(st.sampled_from(list(Strategy))),
        max_restarts=max(1, worst) + draw(st.integers(0, 6)),
        period=draw(st.sampled_from([5.0, 30.0])),
        max_safe_mode_entries=draw(st.integers(1, 3)),
        safe_mode_period=20.0,
        vote_alarms=draw(st.integers(1, 3)),
        vote_period=5.0,
        storm_upsets=draw(st.sampled_from([0, 1, 3])),
    )


def inputs(policy: SupervisorPolicy):
    by_name = {p.name: p for p in policy.partitions}

    def vote(name):
        n = {"tmr": 3, "dwc": 2}.get(by_name[name].redundancy)
        if n is None:
            return st.builds(Crashed, st.just(name))
        return st.builds(VoteAlarm, st.just(name), st.one_of(st.none(), st.integers(0, n - 1)))

    named = st.sampled_from(NAMES)
    failures = st.one_of(
        st.builds(HeartbeatMissed, named),
        st.builds(Crashed, named, st.none(), st.sampled_from([None, 9, 11])),
        named.flatmap(vote),
    )
    others = st.one_of(
        st.builds(PartitionStarted, named),
        st.builds(RestartCompleted, named),
        st.builds(Exited, named, st.booleans()),
        st.builds(StartFailed, named),
        st.just(Tick()),
        st.builds(MemoryUpsets, st.integers(0, 3)),
        st.builds(Enable, named),
        st.just(ExitSafeMode()),
    )
    return st.one_of(failures, failures, others)  # failures drive the interesting paths


@st.composite
def scenarios(draw):
    policy = draw(supervisor_policies())
    times = st.sampled_from([0.0, 0.25, 1.0, 3.0, 12.0])
    # the flag: does the supervisor bring every restarted partition up right away?
    steps = draw(st.lists(st.tuples(times, inputs(policy), st.booleans()), min_size=5, max_size=40))
    return policy, steps


@given(scenarios())
def test_any_input_sequence_keeps_the_invariants(scenario):
    policy, steps = scenario
    by_name = {p.name: p for p in policy.partitions}
    fsm = RecoveryFSM(policy, now=0.0, log=events.EventLog())
    reset_seen = False
    # failure restarts per partition since its last escalation or enable
    history: dict[str, list[float]] = {n: [] for n in NAMES}

    def feed(event, now):
        nonlocal reset_seen
        before = {n: fsm.state(n) for n in NAMES}
        escalations = {n: fsm.status(n).escalations for n in NAMES}
        actions = fsm.handle(event, now)
        if reset_seen:
            assert actions == ()
            return actions
        for action in actions:
            label(type(action).__name__)
        resets = [a for a in actions if isinstance(a, ProcessorReset)]
        if resets:
            assert actions == (resets[0],) and fsm.system_state is SystemState.RESET
            reset_seen = True
            return actions
        if isinstance(event, VoteAlarm) and fsm.storm:  # an upset storm holds vote restarts
            assert not any(getattr(a, "reason", None) is Reason.VOTE for a in actions)
        for name in NAMES:
            if fsm.status(name).escalations != escalations[name]:
                history[name] = []
        if isinstance(event, Enable) and before[event.name] in (S.DISABLED, S.STOPPED):
            history[event.name] = []
        for action in actions:
            assert getattr(action, "name", "a") in NAMES
            if not isinstance(action, RestartPartition):
                continue
            name = action.name
            assert action.mode == fsm.mode(name)
            commanded = action.reason in (Reason.ENABLED, Reason.RESUMED)
            if before[name] is S.DISABLED:
                assert commanded and isinstance(event, Enable)
            if by_name[name].restart is RestartType.TEMPORARY:
                assert commanded
            if action.reason in FAILURE_REASONS:
                window = [t for t in history[name] if t > now - by_name[name].period]
                assert len(window) < by_name[name].max_restarts
                history[name] = [*window, now]
        return actions

    now = 0.0
    for dt, event, come_up_at_once in steps:
        now += dt
        actions = feed(event, now)
        if come_up_at_once:
            for action in actions:
                if isinstance(action, RestartPartition):
                    feed(PartitionStarted(action.name), now)
    snapshot = json.loads(json.dumps(fsm.to_dict()))
    RecoveryFSM.from_dict(policy, snapshot, now=now)


# --- the package: import-light ---------------------------------------------------------
def test_importing_the_recovery_package_and_the_mission_parser_stays_cheap():
    import subprocess
    import sys

    heavy = ("numpy", "numba", "cffi", "crcmod", "msgpack", "flight.supervisor")
    code = (
        "import sys, flight.mission, flight.recovery; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
