"""The restart table: per-partition and supervisor-wide recovery policy, and its one validator.

Every rule about restarts, intensities and escalation ladders lives here, in the policies'
``__post_init__``; a policy that exists is valid. The mission parser builds the policy from the
file through :func:`policy_from_mission` while it loads (:mod:`flight.mission`), so a mission
that loads always yields a policy, and the same rules never exist twice with different wording.
Errors name the fields by :class:`Labels`: the policy's own field names by default, the mission
file's keys (``[recovery] processor_reset_max``, ``partition 'x': escalation``) when built from a
mission.

Import-light on purpose (standard library, :mod:`flight.errors`, :mod:`flight.modes`): loading
a mission must stay cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import InitVar, dataclass, field
from enum import StrEnum
from typing import Any

from flight import errors
from flight.modes import MODES
from flight.recovery.messages import RestartType, Step, Strategy

__all__ = [
    "FIELD_NAMES",
    "MISSION_KEYS",
    "Labels",
    "PartitionPolicy",
    "SupervisorPolicy",
    "policy_from_mission",
    "worst_case_restarts",
]

_LADDER_ORDER = tuple(Step)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Labels:
    """What validation messages call each policy field, so an error names what the user wrote.

    ``partition`` maps :class:`PartitionPolicy` fields to the names used after
    ``partition 'x':``; ``supervisor`` maps :class:`SupervisorPolicy` fields to full names.
    A field not in the map is called by its own name.
    """

    partition: Mapping[str, str] = field(default_factory=dict)
    supervisor: Mapping[str, str] = field(default_factory=dict)

    def of_partition(self, name: str) -> str:
        return self.partition.get(name, name)

    def of_supervisor(self, name: str) -> str:
        return self.supervisor.get(name, name)


#: The policies' own field names (a policy built in code).
FIELD_NAMES = Labels()

#: The mission file's keys (docs in :mod:`flight.mission`).
MISSION_KEYS = Labels(
    partition={
        "restart": "restart_type",
        "period": "restart_period_s",
        "ladder": "escalation",
        "start_deadline": "start_deadline_s",
    },
    supervisor={
        "partitions": "[[partition]]",
        "strategy": "[recovery] strategy",
        "max_restarts": "[recovery] processor_reset_max",
        "period": "[recovery] processor_reset_period_s",
        "max_safe_mode_entries": "[recovery] safe_mode_max",
        "safe_mode_period": "[recovery] safe_mode_period_s",
        "vote_alarms": "[recovery] vote_alarm_threshold",
        "vote_period": "[recovery] vote_alarm_period_s",
        "storm_upsets": "[recovery] storm_upset_threshold",
    },
)


def _config(condition: bool, message: str) -> None:
    if not condition:
        raise errors.ConfigError(message)


def _count(what: str, value: Any, minimum: int) -> None:
    _config(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{what} must be an integer >= {minimum}, not {value!r}",
    )


def _seconds(what: str, value: Any) -> None:
    _config(
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0,
        f"{what} must be a finite number of seconds > 0, not {value!r}",
    )


def _enum(kind: type[StrEnum], what: str, value: Any) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise errors.ConfigError(
            f"{what} must be one of {[k.value for k in kind]}, not {value!r}"
        ) from None


@dataclass(frozen=True)
class PartitionPolicy:
    """How one partition is restarted and escalated (one row of the restart table).

    ``max_restarts`` restarts are allowed within any ``period`` seconds; the next failure takes
    the next ``ladder`` step, and every step gives the partition a fresh window. Strings are
    accepted for the enum fields (mission files are TOML). ``labels`` (not stored) names the
    fields in validation errors.
    """

    name: str
    restart: RestartType = RestartType.PERMANENT
    max_restarts: int = 3
    period: float = 60.0
    redundancy: str = "tmr"
    ladder: tuple[Step, ...] = (Step.DEGRADE, Step.DISABLE)
    #: seconds a (re)start may take before it counts as failed (checked on ``Tick``)
    start_deadline: float | None = 10.0
    #: keeps running in safe mode (otherwise killed on entry and restarted on exit)
    in_safe_mode: bool = True
    labels: InitVar[Labels] = FIELD_NAMES

    def __post_init__(self, labels: Labels) -> None:
        _config(
            isinstance(self.name, str) and _NAME.fullmatch(self.name) is not None,
            f"partition name must be letters, digits, '_', '.', '-', not {self.name!r}",
        )
        where = f"partition {self.name!r}"
        key = labels.of_partition
        object.__setattr__(
            self, "restart", _enum(RestartType, f"{where}: {key('restart')}", self.restart)
        )
        _count(f"{where}: {key('max_restarts')}", self.max_restarts, 0)
        _seconds(f"{where}: {key('period')}", self.period)
        _config(
            self.redundancy in MODES,
            f"{where}: {key('redundancy')} must be one of {MODES}, not {self.redundancy!r}",
        )
        if self.start_deadline is not None:
            _seconds(f"{where}: {key('start_deadline')}", self.start_deadline)
        _config(
            isinstance(self.in_safe_mode, bool), f"{where}: {key('in_safe_mode')} must be a bool"
        )
        ladder_key = key("ladder")
        _config(
            not isinstance(self.ladder, str | bytes) and isinstance(self.ladder, Iterable),
            f"{where}: {ladder_key} must be a list of steps, not {self.ladder!r}",
        )
        ladder = tuple(_enum(Step, f"{where}: {ladder_key} step", s) for s in self.ladder)
        object.__setattr__(self, "ladder", ladder)
        steps = [s.value for s in ladder]
        _config(len(ladder) > 0, f"{where}: {ladder_key} is empty; it needs at least one step")
        _config(len(set(ladder)) == len(ladder), f"{where}: {ladder_key} lists a step twice")
        order = [_LADDER_ORDER.index(s) for s in ladder]
        _config(
            order == sorted(order),
            f"{where}: {ladder_key} steps must go in the order "
            f"{[s.value for s in _LADDER_ORDER]}, each at most once; got {steps}",
        )
        _config(
            ladder[-1] in (Step.DISABLE, Step.RESET),
            f"{where}: the {ladder_key} must end with 'disable' or 'reset', so that a partition "
            f"that keeps failing always has somewhere to go (got {steps})",
        )
        _config(
            not (Step.DEGRADE in ladder and self.redundancy == "none"),
            f"{where}: {ladder_key} step 'degrade' on a simplex partition "
            f"({key('redundancy')} 'none') can do nothing",
        )

    @property
    def modes(self) -> tuple[str, ...]:
        """The redundancy modes the partition can run: its configured one and every lower one.

        The partition holds as many weight copies as its configured mode has replicas, so no
        mode with more replicas can run. The ladder degrades within these, a
        ``SetRedundancy`` command may choose any of them, and a snapshot may hold only these.
        """
        return MODES[MODES.index(self.redundancy) :]


def worst_case_restarts(policy: PartitionPolicy) -> int:
    """Restarts a crash-looping partition can order before its ladder stops it.

    A fast crash loop puts all of them inside any supervisor-wide window, so this is what the
    supervisor's own restart intensity must allow for the ladder to play out. Commanded
    restarts (``Enable``, ``ExitSafeMode``, ``SetRedundancy``, ``RestartCommanded``) and model
    rollbacks are not counted, so each stretch between two 'disable' steps is a separate run.
    """
    if policy.restart is RestartType.TEMPORARY:
        return 0
    r = policy.max_restarts
    worst = current = r
    levels = MODES.index("none") - MODES.index(policy.redundancy)
    for step in policy.ladder:
        if step is Step.DEGRADE:
            current += levels * (1 + r)
        elif step is Step.SAFE_MODE and policy.in_safe_mode:
            current += 1 + r
        elif step in (Step.SAFE_MODE, Step.DISABLE):  # stopped until a command restarts it
            worst = max(worst, current)
            current = r
        elif step is Step.RESET:
            break
    return max(worst, current)


@dataclass(frozen=True)
class SupervisorPolicy:
    """Supervisor-wide policy: the ordered partitions, the strategy and the backstops.

    * ``max_restarts`` in ``period``: restarts over all partitions (one per decision, however
      many siblings the strategy restarts); one more is a processor reset
      (``ExitCode.RESTART_INTENSITY``).
    * ``max_safe_mode_entries`` in ``safe_mode_period``: safe-mode ladder steps (including one
      taken while already in safe mode); one more is a processor reset
      (``ExitCode.RESET_BUDGET``).
    * ``vote_alarms`` alarms of one replica within ``vote_period``: reverify its weights; the
      same again: restart the replica; again: restart the partition (cause "vote").
    * ``storm_upsets``: an *upset storm* is on while the scrubber has found at least this many
      upsets in protected memory (``MemoryUpsets``) within the last ``vote_period``. A
      storm holds the last vote remedy (the partition restart that leads to degradation): a
      restart cannot stop radiation, and a degraded partition would deliver what TMR masked.
      Reverification and replica restarts still happen. 0 turns the guard off.

    The partitions' own rows are validated when they are built, with their own ``labels``;
    ``labels`` (not stored) names the fields in the errors raised here.
    """

    partitions: tuple[PartitionPolicy, ...]
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 30
    period: float = 60.0
    max_safe_mode_entries: int = 2
    safe_mode_period: float = 3600.0
    vote_alarms: int = 3
    vote_period: float = 10.0
    storm_upsets: int = 0
    labels: InitVar[Labels] = FIELD_NAMES

    def __post_init__(self, labels: Labels) -> None:
        key = labels.of_supervisor
        _config(
            not isinstance(self.partitions, str | bytes | Mapping)
            and isinstance(self.partitions, Iterable),
            f"{key('partitions')} must be a list of PartitionPolicy",
        )
        partitions = tuple(self.partitions)
        object.__setattr__(self, "partitions", partitions)
        _config(len(partitions) > 0, "the supervisor needs at least one partition")
        for p in partitions:
            _config(isinstance(p, PartitionPolicy), f"not a PartitionPolicy: {p!r}")
        names = [p.name for p in partitions]
        _config(len(set(names)) == len(names), f"partition names must be unique: {names}")
        object.__setattr__(self, "strategy", _enum(Strategy, key("strategy"), self.strategy))
        _count(key("max_restarts"), self.max_restarts, 1)
        _seconds(key("period"), self.period)
        _count(key("max_safe_mode_entries"), self.max_safe_mode_entries, 0)
        _seconds(key("safe_mode_period"), self.safe_mode_period)
        _count(key("vote_alarms"), self.vote_alarms, 1)
        _seconds(key("vote_period"), self.vote_period)
        _count(key("storm_upsets"), self.storm_upsets, 0)
        ladder, restarts = labels.of_partition("ladder"), labels.of_partition("max_restarts")
        for p in partitions:
            worst = worst_case_restarts(p)
            _config(
                worst <= self.max_restarts,
                f"partition {p.name!r} may order up to {worst} restarts before its {ladder} "
                f"stops it ({restarts} {p.max_restarts} per window, {ladder} "
                f"{[s.value for s in p.ladder]}), but the supervisor allows only "
                f"{self.max_restarts} restarts in {self.period:g} s over all partitions "
                f"({key('max_restarts')}, {key('period')}): a crash loop would reset the "
                f"processor before the {ladder} plays out; raise {key('max_restarts')} or "
                f"lower the partition's {restarts}",
            )
            _config(
                Step.SAFE_MODE not in p.ladder or self.max_safe_mode_entries > 0,
                f"partition {p.name!r}: {ladder} goes to safe_mode but "
                f"{key('max_safe_mode_entries')} is 0: every safe-mode step would be a "
                f"processor reset",
            )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.partitions)


def policy_from_mission(mission: Any) -> SupervisorPolicy:
    """The restart table of a :class:`flight.mission.Mission`, validated; errors name the
    mission file's keys.

    :func:`flight.mission.parse_mission` calls this while it loads, so a mission that loads
    always yields its policy. ``[recovery] order`` must list every partition once. The mission
    is taken as it comes (the mission parser sits a layer above and imports this module).
    """
    rec = mission.recovery
    names = [spec.name for spec in mission.partitions]
    for n in rec.order:
        _config(
            n in names,
            f"[recovery] order names unknown partition {n!r} (partitions: {', '.join(names)})",
        )
    for n in names:
        _config(
            n in rec.order, f"[recovery] order leaves out partition {n!r}: list every partition"
        )
        _config(rec.order.count(n) == 1, f"[recovery] order lists partition {n!r} twice")
    partitions = {
        spec.name: PartitionPolicy(
            name=spec.name,
            restart=spec.restart_type,
            max_restarts=spec.max_restarts,
            period=spec.restart_period_s,
            redundancy=spec.redundancy,
            ladder=tuple(spec.escalation),
            start_deadline=spec.start_deadline_s,
            in_safe_mode=spec.in_safe_mode,
            labels=MISSION_KEYS,
        )
        for spec in mission.partitions
    }
    return SupervisorPolicy(
        partitions=tuple(partitions[name] for name in rec.order),
        strategy=rec.strategy,
        max_restarts=rec.processor_reset_max,
        period=rec.processor_reset_period_s,
        max_safe_mode_entries=rec.safe_mode_max,
        safe_mode_period=rec.safe_mode_period_s,
        vote_alarms=rec.vote_alarm_threshold,
        vote_period=rec.vote_alarm_period_s,
        storm_upsets=rec.storm_upset_threshold,
        labels=MISSION_KEYS,
    )
