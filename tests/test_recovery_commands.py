"""The recovery machine's ground-command inputs, alone: invented clock, no processes.

SetRedundancy, RestartCommanded, DisableCommanded, Enable and ExitSafeMode (what the link sends),
ModelFailed (what a failed model upload reports), and ``RecoveryFSM.can``, the query the link
asks before it executes a command. See docs/supervisor.md, "Ground commands".
"""

from __future__ import annotations

import json

import pytest
from hypothesis import event as label
from hypothesis import given
from hypothesis import strategies as st

from flight import events
from flight.modes import MODES, REPLICAS
from flight.recovery import (
    Crashed,
    DegradeRedundancy,
    DisableCommanded,
    DisablePartition,
    Enable,
    EnterSafeMode,
    Exited,
    ExitSafeMode,
    HeartbeatMissed,
    KillPartition,
    ModelFailed,
    PartitionPolicy,
    PartitionStarted,
    PartitionState,
    ProcessorReset,
    Reason,
    RecoveryError,
    RecoveryFSM,
    Refusal,
    RestartCommanded,
    RestartPartition,
    RollBackModel,
    SetRedundancy,
    SupervisorPolicy,
    SystemState,
    Tick,
    VoteAlarm,
)

S = PartitionState
COMMANDED = Reason.COMMANDED


def boot(policy: SupervisorPolicy, log: events.EventLog | None = None) -> RecoveryFSM:
    fsm = RecoveryFSM(policy, now=0.0, log=log)
    for name in policy.names:
        fsm.handle(PartitionStarted(name), 0.0)
    return fsm


def one(**kw) -> SupervisorPolicy:
    return SupervisorPolicy((PartitionPolicy("a", **kw),))


def stale_events(log: events.EventLog) -> list[dict]:
    return [e.fields for e in log if e.name == "RECOVERY_STALE_EVENT"]


# --- SetRedundancy ----------------------------------------------------------------------------
def test_set_redundancy_restarts_in_the_new_mode_which_survives_a_snapshot():
    policy = one()
    log = events.EventLog()
    fsm = boot(policy, log)
    assert fsm.handle(SetRedundancy("a", "dwc"), 1.0) == (
        RestartPartition("a", COMMANDED, "dwc", "a"),
    )
    assert fsm.mode("a") == "dwc" and fsm.state("a") is S.RESTARTING
    fsm.handle(PartitionStarted("a"), 1.0)
    assert fsm.state("a") is S.DEGRADED  # less than configured, by command
    started = [e.fields for e in log if e.name == "PARTITION_STARTED"]
    assert started[-1]["mode"] == "dwc"

    restored = RecoveryFSM.from_dict(policy, json.loads(json.dumps(fsm.to_dict())), now=2.0)
    assert restored.mode("a") == "dwc"
    restored.handle(PartitionStarted("a"), 2.0)
    assert restored.state("a") is S.DEGRADED
    assert restored.handle(Crashed("a"), 3.0) == (RestartPartition("a", Reason.CRASH, "dwc", "a"),)

    restored.handle(PartitionStarted("a"), 3.0)
    assert restored.handle(SetRedundancy("a", "tmr"), 4.0) == (
        RestartPartition("a", COMMANDED, "tmr", "a"),
    )
    restored.handle(PartitionStarted("a"), 4.0)
    assert restored.state("a") is S.NOMINAL and restored.mode("a") == "tmr"
    assert restored.status("a").restarts == {"commanded": 2, "crash": 1}


def test_set_redundancy_forgets_the_vote_history_when_the_mode_changes():
    fsm = boot(SupervisorPolicy((PartitionPolicy("a"),), vote_alarms=1))
    assert fsm.handle(VoteAlarm("a", 2), 1.0) != ()  # stage 1 for replica 2: reverified
    fsm.handle(SetRedundancy("a", "dwc"), 2.0)
    fsm.handle(PartitionStarted("a"), 2.0)
    assert fsm.to_dict()["partitions"]["a"]["votes"] == {}
    assert fsm.handle(VoteAlarm("a", 2), 3.0) == ()  # a replica dwc does not run: stale


def test_the_ladder_degrades_from_a_commanded_mode():
    fsm = boot(one(max_restarts=0))
    fsm.handle(SetRedundancy("a", "dwc"), 1.0)
    fsm.handle(PartitionStarted("a"), 1.0)
    actions = fsm.handle(Crashed("a"), 2.0)
    assert actions[0] == DegradeRedundancy("a", "dwc", "none")


@pytest.mark.parametrize("configured", MODES)
@pytest.mark.parametrize("requested", MODES)
def test_set_redundancy_allows_the_configured_mode_and_any_lower_one(configured, requested):
    ladder = ("disable",) if configured == "none" else ("degrade", "disable")
    fsm = boot(one(redundancy=configured, ladder=ladder))
    command = SetRedundancy("a", requested)
    if REPLICAS[requested] <= REPLICAS[configured]:
        assert fsm.can(command) is None
        assert fsm.handle(command, 1.0) == (RestartPartition("a", COMMANDED, requested, "a"),)
    else:  # more replicas than the partition has weight copies
        assert fsm.can(command) is Refusal.INVALID_ARGUMENT
        before = fsm.to_dict()
        with pytest.raises(RecoveryError, match="cannot run mode"):
            fsm.handle(command, 1.0)
        assert fsm.to_dict() == before  # a rejected input changes nothing


@pytest.mark.parametrize(
    "command",
    [
        SetRedundancy("a", "qmr"),
        SetRedundancy("a", None),
        SetRedundancy("a", ["tmr"]),
        SetRedundancy("x", "tmr"),
        SetRedundancy(None, "tmr"),
        RestartCommanded("x"),
        DisableCommanded("x"),
        Enable("x"),
    ],
)
def test_bad_arguments_are_invalid_for_can_and_raise_in_handle(command):
    fsm = boot(one())
    assert fsm.can(command) is Refusal.INVALID_ARGUMENT
    before = fsm.to_dict()
    with pytest.raises(RecoveryError):
        fsm.handle(command, 1.0)
    assert fsm.to_dict() == before


# --- refusals by state: one table for can() and handle() ---------------------------------------
def policy_for_states() -> SupervisorPolicy:
    return SupervisorPolicy(
        (
            PartitionPolicy("core", max_restarts=0, ladder=("safe_mode", "reset")),
            PartitionPolicy("p", restart="transient", in_safe_mode=False),
        )
    )


def machine_with_p_in(state: S, log: events.EventLog) -> RecoveryFSM:
    """A machine whose partition ``p`` is in ``state`` (reached the way the supervisor would)."""
    policy = policy_for_states()
    if state is S.STARTING:
        return RecoveryFSM(policy, now=0.0, log=log)
    fsm = boot(policy, log)
    if state is S.DEGRADED:
        fsm.handle(SetRedundancy("p", "dwc"), 0.5)
        fsm.handle(PartitionStarted("p"), 0.5)
    elif state is S.RESTARTING:
        fsm.handle(Crashed("p"), 0.5)
    elif state is S.DISABLED:
        fsm.handle(DisableCommanded("p"), 0.5)
    elif state is S.STOPPED:
        fsm.handle(Exited("p"), 0.5)  # transient, normal exit
    elif state is S.SUSPENDED:
        fsm.handle(HeartbeatMissed("core"), 0.5)  # safe mode; p is not kept in it
    assert fsm.state("p") is state
    return fsm


N, B = Refusal.NOT_ALLOWED, Refusal.BUSY
STATES = [S.STARTING, S.NOMINAL, S.DEGRADED, S.RESTARTING, S.DISABLED, S.STOPPED, S.SUSPENDED]
EXPECTED = {  # command -> refusal in each of STATES (None: it applies)
    SetRedundancy("p", "dwc"): [B, None, None, B, N, N, N],
    RestartCommanded("p"): [B, None, None, B, N, N, N],
    DisableCommanded("p"): [None, None, None, None, N, N, None],
    Enable("p"): [N, N, N, N, None, None, N],
}


@pytest.mark.parametrize("command", list(EXPECTED), ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("index", range(len(STATES)), ids=[s.value for s in STATES])
def test_can_says_what_handle_does_in_every_state(command, index):
    state, refusal = STATES[index], EXPECTED[command][index]
    log = events.EventLog()
    fsm = machine_with_p_in(state, log)
    assert fsm.can(command) is refusal
    stale = fsm.status("p").stale
    actions = fsm.handle(command, 1.0)
    if refusal is None:
        assert actions != ()
        assert fsm.status("p").stale == stale
        assert fsm.state("p") is not state
    else:
        assert actions == ()
        assert fsm.state("p") is state
        assert fsm.status("p").stale == stale + 1
        assert stale_events(log)[-1] == {
            "partition": "p",
            "at": 1.0,
            "input": type(command).__name__,
            "state": state.value,
            "refused": refusal.value,
        }


def test_every_refusal_names_a_link_failure_code():
    """The link reports a refusal as FailureCode[refusal.name] (the machine cannot import it)."""
    from flight.link.codes import FailureCode

    assert {r.name: FailureCode[r.name] for r in Refusal} == {
        "INVALID_ARGUMENT": FailureCode.INVALID_ARGUMENT,
        "NOT_ALLOWED": FailureCode.NOT_ALLOWED,
        "BUSY": FailureCode.BUSY,
    }


def test_after_a_processor_reset_every_command_is_not_allowed():
    fsm = boot(one(max_restarts=0, ladder=("reset",)))
    assert type(fsm.handle(Crashed("a"), 1.0)[0]) is ProcessorReset
    for command in (
        SetRedundancy("a", "tmr"),
        RestartCommanded("a"),
        DisableCommanded("a"),
        Enable("a"),
        ExitSafeMode(),
    ):
        assert fsm.can(command) is Refusal.NOT_ALLOWED
        assert fsm.handle(command, 2.0) == ()


def test_can_is_a_pure_query_of_commands_only():
    fsm = boot(one())
    before = fsm.to_dict()
    for command in (SetRedundancy("a", "none"), RestartCommanded("a"), DisableCommanded("a")):
        assert fsm.can(command) is None
    assert fsm.to_dict() == before and fsm.state("a") is S.NOMINAL
    for not_a_command in (Crashed("a"), ModelFailed("a"), Tick(), "enable a"):
        with pytest.raises(RecoveryError, match="not a recovery command"):
            fsm.can(not_a_command)


# --- RestartCommanded -------------------------------------------------------------------------
def test_commanded_restarts_use_neither_restart_budget():
    """R = 1 per partition, 5 for the supervisor: twenty commanded restarts, model rollbacks
    and mode changes leave both untouched, so the next crash is still restarted once."""
    policy = SupervisorPolicy(
        (PartitionPolicy("a", max_restarts=1, ladder=("degrade", "disable")),), max_restarts=5
    )
    fsm = boot(policy)
    now = 0.0
    for command in [RestartCommanded("a"), ModelFailed("a", "trial"), SetRedundancy("a", "tmr")]:
        for _ in range(7):
            now += 0.1
            actions = fsm.handle(command, now)
            assert actions[-1] == RestartPartition("a", actions[-1].reason, "tmr", "a")
            assert actions[-1].reason in (COMMANDED, Reason.MODEL_FAILED)
            fsm.handle(PartitionStarted("a"), now)
    saved = fsm.to_dict()
    assert saved["restart_times"] == [] and saved["partitions"]["a"]["window"] == []
    assert fsm.handle(Crashed("a"), now + 0.1) == (RestartPartition("a", Reason.CRASH, "tmr", "a"),)
    fsm.handle(PartitionStarted("a"), now + 0.1)
    assert fsm.handle(Crashed("a"), now + 0.2)[0] == DegradeRedundancy("a", "tmr", "dwc")
    assert fsm.status("a").restarts == {
        "commanded": 14,
        "model_failed": 7,
        "crash": 1,
        "escalation": 1,
    }


def test_restart_commanded_restarts_only_that_partition_in_its_mode():
    policy = SupervisorPolicy(tuple(PartitionPolicy(n) for n in "abc"), strategy="one_for_all")
    fsm = boot(policy)
    fsm.handle(SetRedundancy("b", "none"), 1.0)
    fsm.handle(PartitionStarted("b"), 1.0)
    assert fsm.handle(RestartCommanded("b"), 2.0) == (
        RestartPartition("b", COMMANDED, "none", "b"),
    )
    assert [fsm.state(n) for n in "abc"] == [S.NOMINAL, S.RESTARTING, S.NOMINAL]


# --- DisableCommanded and Enable --------------------------------------------------------------
def test_disable_commanded_kills_and_disables_until_enabled():
    policy = one()
    log = events.EventLog()
    fsm = boot(policy, log)
    assert fsm.handle(DisableCommanded("a"), 1.0) == (
        KillPartition("a", COMMANDED, "a"),
        DisablePartition("a", COMMANDED),
    )
    assert fsm.state("a") is S.DISABLED
    disabled = [e.fields for e in log if e.name == "PARTITION_DISABLED"]
    assert disabled == [{"partition": "a", "at": 1.0, "cause": "commanded"}]
    assert fsm.handle(Crashed("a"), 1.1) == ()  # our kill reported back: stale

    restored = RecoveryFSM.from_dict(policy, json.loads(json.dumps(fsm.to_dict())), now=2.0)
    assert restored.state("a") is S.DISABLED  # survives a supervisor restart
    assert restored.can(Enable("a")) is None
    assert restored.handle(Enable("a"), 3.0) == (RestartPartition("a", Reason.ENABLED, "tmr", "a"),)
    restored.handle(PartitionStarted("a"), 3.0)
    assert restored.state("a") is S.NOMINAL


def test_disabling_a_suspended_partition_keeps_it_down_after_safe_mode():
    fsm = machine_with_p_in(S.SUSPENDED, events.EventLog())
    assert fsm.handle(DisableCommanded("p"), 1.0) == (DisablePartition("p", COMMANDED),)
    assert fsm.handle(ExitSafeMode(), 2.0) == ()  # core kept running; p stays disabled
    assert fsm.system_state is SystemState.NOMINAL and fsm.state("p") is S.DISABLED


def test_a_partition_disabled_by_the_ladder_is_enabled_by_command():
    fsm = boot(one(max_restarts=0, ladder=("disable",)))
    assert fsm.handle(Crashed("a"), 1.0) == (DisablePartition("a", Reason.CRASH),)
    assert fsm.can(Enable("a")) is None
    assert fsm.handle(Enable("a"), 2.0) == (RestartPartition("a", Reason.ENABLED, "tmr", "a"),)
    assert fsm.can(Enable("a")) is Refusal.NOT_ALLOWED  # restarting now


# --- ExitSafeMode -----------------------------------------------------------------------------
def test_safe_mode_is_left_by_command_and_suspended_partitions_restart():
    fsm = machine_with_p_in(S.SUSPENDED, events.EventLog())
    assert fsm.system_state is SystemState.SAFE_MODE
    assert fsm.can(ExitSafeMode()) is None
    assert fsm.handle(ExitSafeMode(), 2.0) == (RestartPartition("p", Reason.RESUMED, "tmr", "p"),)
    assert fsm.system_state is SystemState.NOMINAL
    assert fsm.can(ExitSafeMode()) is Refusal.NOT_ALLOWED
    stale = fsm.stale_commands
    assert fsm.handle(ExitSafeMode(), 3.0) == () and fsm.stale_commands == stale + 1


def test_commands_for_a_partition_kept_in_safe_mode_apply_during_safe_mode():
    fsm = machine_with_p_in(S.SUSPENDED, events.EventLog())
    fsm.handle(PartitionStarted("core"), 1.0)
    assert fsm.state("core") is S.NOMINAL
    assert fsm.can(SetRedundancy("core", "dwc")) is None
    assert fsm.can(SetRedundancy("p", "dwc")) is Refusal.NOT_ALLOWED  # suspended
    assert fsm.handle(RestartCommanded("core"), 2.0) == (
        RestartPartition("core", COMMANDED, "tmr", "core"),
    )


# --- ModelFailed ------------------------------------------------------------------------------
def test_model_failed_rolls_back_then_restarts_in_the_current_mode():
    log = events.EventLog()
    fsm = boot(one(), log)
    fsm.handle(SetRedundancy("a", "dwc"), 1.0)
    fsm.handle(PartitionStarted("a"), 1.0)
    assert fsm.handle(ModelFailed("a", "trial frames withheld"), 2.0) == (
        RollBackModel("a", "trial frames withheld"),
        RestartPartition("a", Reason.MODEL_FAILED, "dwc", "a"),
    )
    assert fsm.state("a") is S.RESTARTING
    assert fsm.status("a").failures == {"model_failed": 1}
    rolled = [e.fields for e in log if e.name == "MODEL_ROLLED_BACK"]
    assert rolled == [{"partition": "a", "at": 2.0, "reason": "trial frames withheld"}]
    names = [e.name for e in log]
    assert names.index("MODEL_ROLLED_BACK") < len(names) - 1
    assert names[-1] == "PARTITION_RESTARTED"


@pytest.mark.parametrize("state", [S.STARTING, S.RESTARTING])
def test_a_model_that_fails_to_load_is_rolled_back_and_started_again(state):
    fsm = machine_with_p_in(state, events.EventLog())
    assert fsm.handle(ModelFailed("p", "load failed"), 1.0) == (
        RollBackModel("p", "load failed"),
        RestartPartition("p", Reason.MODEL_FAILED, "tmr", "p"),
    )


@pytest.mark.parametrize("state", [S.DISABLED, S.STOPPED, S.SUSPENDED])
def test_a_partition_that_is_down_only_gets_its_model_rolled_back(state):
    fsm = machine_with_p_in(state, events.EventLog())
    assert fsm.handle(ModelFailed("p", "trial"), 1.0) == (RollBackModel("p", "trial"),)
    assert fsm.state("p") is state


def test_model_failed_checks_its_arguments():
    fsm = boot(one())
    with pytest.raises(RecoveryError, match="unknown partition"):
        fsm.handle(ModelFailed("x", "trial"), 1.0)
    with pytest.raises(RecoveryError, match="reason must be a str"):
        fsm.handle(ModelFailed("a", 3), 1.0)


def test_a_rollback_while_in_safe_mode_is_not_an_escalation():
    fsm = machine_with_p_in(S.SUSPENDED, events.EventLog())
    fsm.handle(PartitionStarted("core"), 1.0)
    actions = fsm.handle(ModelFailed("core", "trial"), 2.0)
    assert not any(isinstance(a, EnterSafeMode | ProcessorReset) for a in actions)
    assert fsm.status("core").escalations == 1  # only the one that entered safe mode


# --- any sequence: can() predicts handle(), commands never spend the budgets -------------------
NAMES = ("a", "b")
COMMANDS = (SetRedundancy, RestartCommanded, DisableCommanded, Enable, ExitSafeMode)


def command_inputs():
    named = st.sampled_from(NAMES)
    modes = st.sampled_from(MODES)
    return st.one_of(
        st.builds(SetRedundancy, named, modes),
        st.builds(RestartCommanded, named),
        st.builds(DisableCommanded, named),
        st.builds(Enable, named),
        st.just(ExitSafeMode()),
    )


def fault_inputs():
    named = st.sampled_from(NAMES)
    return st.one_of(
        st.builds(Crashed, named),
        st.builds(HeartbeatMissed, named),
        st.builds(PartitionStarted, named),
        st.builds(ModelFailed, named, st.just("trial")),
    )


@given(
    redundancy=st.sampled_from(["tmr", "dwc"]),
    steps=st.lists(
        st.tuples(st.one_of(command_inputs(), fault_inputs(), fault_inputs()), st.booleans()),
        min_size=10,
        max_size=40,
    ),
)
def test_can_predicts_handle_and_commands_spend_no_budget(redundancy, steps):
    """Whatever happened before, a command that ``can`` refuses orders nothing and is counted,
    and no command (nor a model rollback) spends a restart budget or moves a ladder. The flag
    of each step: the supervisor brings the partitions it restarts up at once."""
    policy = SupervisorPolicy(
        (
            PartitionPolicy(
                "a",
                redundancy=redundancy,
                max_restarts=0,  # every failure of "a" escalates: safe mode comes soon
                ladder=("degrade", "safe_mode", "reset"),
            ),
            PartitionPolicy("b", redundancy=redundancy, in_safe_mode=False),
        ),
        max_safe_mode_entries=100,
    )
    fsm = boot(policy, events.EventLog())
    now = 0.0
    for event, come_up_at_once in steps:
        now += 0.5
        is_command = isinstance(event, COMMANDS)
        refusal = fsm.can(event) if is_command else None
        if is_command:
            label(f"{type(event).__name__}: {refusal}, system {fsm.system_state.value}")
        reset = fsm.system_state is SystemState.RESET  # then every input returns (), uncounted
        if reset and is_command:
            assert refusal is not None
        before = fsm.to_dict()
        if refusal is Refusal.INVALID_ARGUMENT:
            with pytest.raises(RecoveryError):
                fsm.handle(event, now)
            continue
        actions = fsm.handle(event, now)
        after = fsm.to_dict()
        for action in actions:
            if isinstance(action, RestartPartition):
                assert action.mode in policy.partitions[NAMES.index(action.name)].modes
        if refusal is not None:
            assert actions == ()
            if reset:
                assert {**after, "now": 0} == {**before, "now": 0}
            elif hasattr(event, "name"):
                assert after["partitions"][event.name]["stale"] == (
                    before["partitions"][event.name]["stale"] + 1
                )
            else:
                assert after["stale"] == before["stale"] + 1
        if is_command or isinstance(event, ModelFailed):  # budgets and ladder: faults only
            assert after["restart_times"] == before["restart_times"]
            assert after["safe_mode_times"] == before["safe_mode_times"]
            for name in NAMES:
                for key in ("level", "escalations"):
                    assert after["partitions"][name][key] == before["partitions"][name][key]
        if come_up_at_once:
            for action in actions:
                if isinstance(action, RestartPartition):
                    fsm.handle(PartitionStarted(action.name), now)
    RecoveryFSM.from_dict(policy, json.loads(json.dumps(fsm.to_dict())), now=now)
