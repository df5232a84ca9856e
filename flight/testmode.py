"""Test mode: what a board may do to itself only when its mission says ``test_mode = true``.

Simulated radiation (upsets in the weight copies, their CRC tables and the live activations,
these applied inside the workers by :func:`flight.inject.activation_upset_hooks`), the SDC
oracle (a fault-free reference computation that tells a wrong delivered output from a right
one), and, next, the HIL agent that executes a harness's injection requests. The gate is
here, in the library: :class:`TestMode` refuses to exist for a mission without test mode, so
no caller (the CLI, a script, a future link command) can inject into a flight configuration.

The oracle must not itself become a source of false alarms: an upset in the reference's
weights would turn every later frame into "SDC". Its weights are therefore kept as a protected
region with two copies and CRCs, verified (and repaired) before each use, and a mismatch is
confirmed on the second copy before it counts: a reference that disagrees with itself is
reported as an *oracle upset* (an event and a counter), never counted as SDC.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import numpy as np

from flight import errors, events

__all__ = ["Oracle", "TestMode", "Verdict", "require_test_mode"]


def require_test_mode(mission: Any, what: str) -> None:
    """Raise ConfigError unless the mission enables test mode (the injection gate)."""
    if not getattr(mission, "test_mode", False):
        raise errors.ConfigError(
            f"{what} is a test-mode feature: mission {mission.name!r} has test_mode = false "
            "(set [mission] test_mode = true on a test rig; never in flight)"
        )


class Verdict(StrEnum):
    MATCH = "match"  #: the delivered output is the reference's
    SDC = "sdc"  #: it differs, and the reference agrees with itself: silent data corruption
    ORACLE_UPSET = "oracle_upset"  #: the reference disagrees with itself: not judged


class Oracle:
    """A partition's fault-free reference: the same model in private memory, two protected
    weight copies, verified before each use (see the module docstring)."""

    def __init__(self, spec: Any, block_size: int, log: events.EventLog) -> None:
        from flight.model import load as load_model

        self.name = spec.name
        self.log = log
        self.model = load_model(
            spec.model_path, copies=2, block_size=block_size, region_name=f"{spec.name}/oracle"
        )
        self.output_name = self.model.output_names[0]
        self.replicas = [self.model.replica(0), self.model.replica(1)]
        self.upsets = 0  # oracle upsets found: weight blocks repaired, or self-disagreement

    def warm_up(self, x: np.ndarray) -> None:
        for replica in self.replicas:
            replica.run(x)

    def judge(self, x: np.ndarray, delivered: np.ndarray) -> Verdict:
        """Compare a delivered output with the reference's on the same input."""
        self._verify()
        golden = self.replicas[0].run(x)[self.output_name]
        if golden.tobytes() == delivered.tobytes():
            return Verdict.MATCH
        second = self.replicas[1].run(x)[self.output_name]  # confirm on the other copy
        if second.tobytes() == golden.tobytes():
            return Verdict.SDC
        self._upset("the reference's two copies disagree")
        return Verdict.ORACLE_UPSET

    def _verify(self) -> None:
        """Check every block of both copies and the CRC tables; repair what can be proven,
        reload the rest from the golden image."""
        report = self.model.weights.repair()  # its own events stay out of the mission's log
        if report.unrepairable:
            self.model.reload_blocks(self.model.weights.suspect_blocks)
        if not report.clean:
            self._upset(f"{report.errors} weight block(s) repaired")

    def _upset(self, detail: str) -> None:
        self.upsets += 1
        self.log.emit(events.ORACLE_UPSET, partition=self.name, detail=detail)


class TestMode:
    """Simulated radiation and the SDC oracle over a supervisor's model jobs.

    ``jobs`` maps partition names to :class:`flight.jobs.ModelJob`. Radiation hits each job's
    weight copies and their CRC-table copies all frame long, and its replicas' activation
    arenas during the compute window (drawn here, applied inside the worker).
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        mission: Any,
        jobs: Mapping[str, Any],
        environment: str,
        accelerate: float,
        log: events.EventLog,
    ) -> None:
        from flight.radiation import ENVIRONMENTS, RadiationSimulator, Target, region_targets

        require_test_mode(mission, f"simulated radiation ({environment!r})")
        if environment not in ENVIRONMENTS:
            raise errors.ConfigError(
                f"unknown radiation environment {environment!r}; one of {sorted(ENVIRONMENTS)}"
            )
        block_size = mission.scrub.block_size
        self.oracles = {
            spec.name: Oracle(spec, block_size, log)
            for spec in mission.partitions
            if spec.name in jobs
        }
        for name, oracle in self.oracles.items():  # compile its kernels now, not in frame 1
            oracle.warm_up(np.asarray(jobs[name].input))
        weights: list[Any] = []
        activations: list[Any] = []
        for name, job in jobs.items():
            weights += region_targets(job.weights, tables=True)
            for i, replica in enumerate(job.replicas):
                arena = replica.arena.view(np.uint8)
                activations.append(Target(f"{name}/activations[{i}]", arena, apply=False))
        self._weight_names = [t.name for t in weights]
        self._all_names = self._weight_names + [t.name for t in activations]
        self.radiation = RadiationSimulator(
            ENVIRONMENTS[environment],
            weights + activations,
            seed=int(mission.seed),
            accelerate=accelerate,
        )

    def idle(self, seconds: float) -> None:
        """The frame's idle part: upsets land in the weight copies and CRC tables."""
        self.radiation.advance(seconds, only=self._weight_names)

    def compute(self, seconds: float) -> dict[str, int]:
        """The compute window: weights and live activations exposed. Returns the activation
        upsets drawn per partition, for its worker to apply."""
        per_partition: dict[str, int] = {}
        for injection in self.radiation.advance(seconds, only=self._all_names):
            name, _, kind = injection.target.partition("/")
            if kind.startswith("activations"):
                per_partition[name] = per_partition.get(name, 0) + 1
        return per_partition

    def judge(self, name: str, x: np.ndarray, delivered: np.ndarray) -> Verdict:
        return self.oracles[name].judge(x, delivered)

    def upsets(self) -> dict[str, int]:
        """Upsets that arrived, by target (the radiation simulator's counts)."""
        return self.radiation.counts()

    @property
    def oracle_upsets(self) -> int:
        return sum(o.upsets for o in self.oracles.values())
