"""The supervisor: the frame schedule, redundant execution, health monitoring and recovery.

One supervisor process owns everything that must survive a partition's failure: the mission,
the models' weights (in shared memory, one copy per replica, scrubbed every frame), the recovery
state machine (:mod:`flight.recovery`, pure), the critical data store (:mod:`flight.cds`) and the
watchdog (:mod:`flight.watchdog`). Partitions (:mod:`flight.partition`) are forked workers that
only compute.

Each minor frame the supervisor, for every partition due in it:

1. writes the next input into the partition's shared input buffer (the demo job cycles through
   its data set), and lets the simulated radiation act (test mode, :mod:`flight.radiation`):
   bit flips land in weight copies now and in activations during the inference;
2. wakes the partition's worker(s) and waits for them up to the partition's deadline: a worker
   that dies is a *crash*, one still not done at its heartbeat timeout a *hang*;
3. votes (TMR, word by word), compares (DWC, re-executing once on a mismatch) or takes (simplex)
   the replicas' outputs; an output without a majority is *withheld*, never delivered; a replica
   that loses a vote raises a *vote alarm*;
4. in test mode with radiation, compares what it delivers with a fault-free shadow computation
   (private weights radiation never touches): a delivered output that differs is *silent data
   corruption* (SDC).

Then it runs the scrubber within its byte budget, strokes the watchdog if every partition proved
progress, feeds every fault to the recovery state machine and carries out its actions (kill,
restart, re-verify weights, degrade TMR -> DWC -> simplex, disable, safe mode, processor reset),
and commits counters to the critical data store once per major frame.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flight import errors, events
from flight.modes import REPLICAS
from flight.partition import PartitionProcess, WorkerDied
from flight.redundancy import decide
from flight.shm import shared_bytes, shared_zeros
from flight.vote import prepare

__all__ = ["FrameReport", "PartitionRuntime", "Supervisor"]


@dataclass
class PartitionStats:
    """Per-partition counters (housekeeping telemetry)."""

    frames: int = 0  # inferences attempted
    delivered: int = 0
    withheld: int = 0
    unavailable: int = 0  # frames skipped: partition restarting or disabled
    corrected: int = 0  # delivered outputs in which a vote corrected something
    correct: int = 0  # delivered outputs whose class matches the label
    labelled: int = 0
    sdc: int = 0
    dwc_reexecutions: int = 0
    replica_restarts: int = 0
    vote_point_corrections: int = 0  # words resynced at vote points
    golden_reloads: int = 0  # unrepairable weight blocks rewritten from the golden image
    deadline_misses: int = 0
    lost: list[int] = field(default_factory=lambda: [0, 0, 0])
    restarts: Counter = field(default_factory=Counter)
    restart_seconds: list[float] = field(default_factory=list)  # kill -> first good output


class PartitionRuntime:
    """One partition as the supervisor runs it: model, workers, votes, counters."""

    def __init__(
        self,
        spec: Any,
        model: Any,
        dataset: tuple[np.ndarray, np.ndarray] | None,
        shadow: Any | None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.model = model
        self.mode = spec.redundancy
        self.placement = spec.placement
        self.dataset = dataset
        self.shadow = shadow
        self.output_name = model.output_names[0]
        self.input = shared_zeros(model.shapes[model.input_names[0]])
        self.replicas = [model.replica(i) for i in range(model.copies)]
        self.outputs = [r.buffer(self.output_name) for r in self.replicas]
        self.vote = prepare(*self.outputs[:3], np.empty_like(self.outputs[0]))
        self.workers: list[PartitionProcess] = []
        self.sample = 0
        self.sequence = 0
        self.disabled = False
        self.pending_restart_since: float | None = None
        self.stats = PartitionStats()

    def active_replicas(self) -> list[int]:
        return list(range(REPLICAS[self.mode]))

    def build_workers(self, close_in_child: Callable[[], list[int]]) -> None:
        """Time placement: one worker computes the active replicas in turn; space placement:
        one worker per replica (each its own failure domain, running in parallel)."""
        active = self.active_replicas()
        self.vp_seen = 0  # vote-point corrections already counted from the current worker
        if self.placement == "space":
            self.workers = [
                PartitionProcess(
                    f"{self.name}[{i}]", [self.replicas[i]], self.input, close_in_child
                )
                for i in active
            ]
        else:
            self.workers = [
                PartitionProcess(
                    self.name, [self.replicas[i] for i in active], self.input, close_in_child
                )
            ]

    def next_input(self) -> int | None:
        """Load the next sample into the shared input buffer; returns its label, if any."""
        if self.dataset is None:
            self.input[...] = 0.0
            return None
        x, y = self.dataset
        index = self.sample % len(x)
        self.sample += 1
        self.input[...] = x[index : index + 1].reshape(self.input.shape)
        return int(y[index])


@dataclass
class FrameReport:
    frame: int
    delivered: int = 0
    withheld: int = 0
    corrected: int = 0
    sdc: int = 0
    faults: list[str] = field(default_factory=list)


class Supervisor:
    """Runs a mission: see the module docstring. Construct, then :meth:`run`."""

    def __init__(
        self,
        mission: Any,
        *,
        environment: str | None = None,
        accelerate: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        realtime: bool = True,
        cds_directory: str | None = None,
        fresh_recovery: bool = False,
        compute_window_s: float = 0.002,
    ) -> None:
        from flight import recovery
        from flight.cds import CriticalDataStore
        from flight.model import load as load_model
        from flight.scrub import Scrubber
        from flight.watchdog import make_watchdog

        self.mission = mission
        self.clock = clock
        self.realtime = realtime
        self.log = events.EventLog(capacity=1024, clock=clock)
        self.frame = 0
        self.stop_requested = False  # set from a signal handler: finish the frame, shut down
        self.reverified = 0
        self.exit_code: int | None = None
        self.safe_mode = False
        self.partitions: list[PartitionRuntime] = []
        rng_seed = int(mission.seed)
        self._rng = np.random.default_rng(rng_seed)
        simulate = environment is not None
        for spec in mission.partitions:
            if spec.vote_points and spec.placement == "space":
                raise errors.ConfigError(
                    f"partition {spec.name!r}: vote points need time placement (the replicas "
                    "must meet between layers; space-placed replicas only meet at the output)"
                )
            model = load_model(
                spec.model_path,
                copies=3,
                allocate=shared_bytes,
                block_size=mission.scrub.block_size,
                region_name=f"{spec.name}/weights",
            )
            for name in spec.vote_points:
                model.replica(0).node_index(name)  # ModelError now, not a dead worker later
            dataset = None
            if spec.dataset_path is not None:
                dataset = _load_dataset(spec, model.shapes[model.input_names[0]])
            shadow = load_model(spec.model_path, copies=1) if simulate else None
            runtime = PartitionRuntime(spec, model, dataset, shadow)
            self._warm_up(runtime)
            self.partitions.append(runtime)
        self.by_name = {p.name: p for p in self.partitions}
        self.scrubber = Scrubber(
            [p.model.weights for p in self.partitions], log=self.log, clock=clock
        )
        self.watchdog = make_watchdog(mission.watchdog, log=self.log)
        if cds_directory is None:
            mission.cds.ensure()
            cds_directory = str(mission.cds.directory)
        else:
            type(mission.cds)(Path(cds_directory)).ensure()  # create it, or say why not
        self.cds = CriticalDataStore(cds_directory, log=self.log)
        self.cds.claim()  # one supervisor per state directory, or CdsBusyError
        self.fsm, self.restored = self._recovery_state(
            recovery, policy_from_mission(mission), fresh_recovery
        )
        for p in self.partitions:  # a restored machine may have degraded or disabled some
            p.mode = self.fsm.mode(p.name)
            p.disabled = self.fsm.state(p.name).value in ("disabled", "stopped")
        self.cds_directory = str(cds_directory)
        self.boot = self.cds.begin_boot("flight run")
        self._committed: dict[str, int] = {}
        self.radiation = None
        self._weight_targets: list[str] = []
        self._activation_targets: list[str] = []
        # The simulated compute window of each frame: weights and live activations are exposed
        # during it. A fixed parameter, not the measured compute time, so that a seeded run
        # replays the same upsets on any machine.
        self._compute_s = compute_window_s
        if simulate:
            self.radiation = self._make_radiation(environment, accelerate, rng_seed)
        self._started = False

    # --- set-up -----------------------------------------------------------------------------
    def _recovery_state(self, recovery: Any, policy: Any, fresh: bool) -> tuple[Any, bool]:
        """The recovery state machine, restored from the CDS unless ``fresh`` or unusable:
        restart budgets, degraded modes and ladder positions survive a supervisor restart
        (a processor reset must not hand a failing partition a fresh budget)."""
        saved = None if fresh else self.cds.state("recovery")
        self._policy_id = _policy_fingerprint(policy)
        if saved and self.cds.state("recovery_policy") != self._policy_id:
            # the mission's recovery policy changed since the state was saved: its budgets and
            # modes no longer mean the same thing
            self.log.emit(events.RECOVERY_STATE_DISCARDED, reason="the mission's policy changed")
            saved = None
        if saved:
            try:
                fsm = recovery.RecoveryFSM.from_dict(policy, saved, now=self.clock(), log=self.log)
                self.log.emit(events.RECOVERY_STATE_RESTORED)
                return fsm, True
            except errors.ConfigError as exc:
                self.log.emit(events.RECOVERY_STATE_DISCARDED, reason=str(exc))
        return recovery.RecoveryFSM(policy, now=self.clock(), log=self.log), False

    @staticmethod
    def _warm_up(runtime: PartitionRuntime) -> None:
        """Compile (or load from the numba cache) every kernel in this process, before any
        fork, so that a (re)started worker computes at once."""
        for replica in runtime.replicas:
            replica.run(runtime.input)
        if runtime.shadow is not None:
            runtime.shadow.run(np.asarray(runtime.input))

    def _make_radiation(self, environment: str, accelerate: float, seed: int) -> Any:
        from flight.radiation import ENVIRONMENTS, RadiationSimulator, Target

        targets = []
        for p in self.partitions:
            for i in range(p.model.copies):
                targets.append(Target(f"{p.name}/weights[{i}]", p.model.weights.raw(i)))
                self._weight_targets.append(targets[-1].name)
            for i, replica in enumerate(p.replicas):
                # drawn here, applied inside the worker at a random node boundary (the
                # activations are live only while it computes)
                arena = replica.arena.view(np.uint8)
                targets.append(Target(f"{p.name}/activations[{i}]", arena, apply=False))
                self._activation_targets.append(targets[-1].name)
        return RadiationSimulator(
            ENVIRONMENTS[environment], targets, seed=seed, accelerate=accelerate
        )

    def _fds(self) -> list[int]:
        return [fd for p in self.partitions for w in p.workers for fd in w.fds()]

    def start(self) -> None:
        """Fork every partition's workers and wait until they are ready."""
        from flight import recovery

        if self._started:
            return
        for p in self.partitions:
            p.build_workers(self._fds)
            if p.disabled:  # restored disabled: stays down until a ground command enables it
                continue
            for worker in p.workers:
                worker.start()
            ready = all(w.wait_ready(timeout=p.spec.start_deadline_s) for w in p.workers)
            self._fsm(
                recovery.PartitionStarted(p.name)
                if ready
                else recovery.StartFailed(p.name, "worker did not report ready")
            )
        self._started = True

    def shutdown(self) -> None:
        for p in self.partitions:
            for worker in p.workers:
                worker.stop()
        with contextlib.suppress(Exception):
            self.cds.commit()
        self.cds.release()
        self.watchdog.close()

    # --- recovery -----------------------------------------------------------------------------
    def _fsm(self, event: Any) -> None:
        """Feed one input to the recovery state machine and carry out its actions in order."""
        for action in self.fsm.handle(event, self.clock()):
            if self.exit_code is not None:
                break
            self._apply(action)

    def _apply(self, action: Any) -> None:
        from flight import recovery as r

        if isinstance(action, r.KillPartition):
            for worker in self.by_name[action.name].workers:
                worker.kill()
        elif isinstance(action, r.RestartPartition):
            p = self.by_name[action.name]
            p.mode = action.mode
            p.disabled = False
            self._restart(p, reason=str(action.reason))
        elif isinstance(action, r.DegradeRedundancy):
            self.by_name[action.name].mode = action.to_mode  # the restart that applies it follows
        elif isinstance(action, r.ReverifyWeights):
            report = self.by_name[action.name].model.weights.repair(log=self.log)
            self.scrubber.counters.repaired += report.repaired
            self.reverified += 1
        elif isinstance(action, r.RestartReplica):
            self._restart_replica(self.by_name[action.name], action.replica)
        elif isinstance(action, r.DisablePartition):
            p = self.by_name[action.name]
            p.disabled = True
            for worker in p.workers:
                worker.kill()
        elif isinstance(action, r.EnterSafeMode):
            self.safe_mode = True
        elif isinstance(action, r.ProcessorReset):
            self.exit_code = int(action.exit_code)
            self.cds.log_reset(action.reason, None, "processor reset")
        else:  # an action kind this supervisor does not know: a bug
            raise RuntimeError(f"unhandled recovery action {action!r}")
        if not isinstance(action, r.DegradeRedundancy | r.ReverifyWeights):
            name = getattr(action, "name", None)
            self.cds.log_reset(
                str(getattr(action, "reason", type(action).__name__)), name, type(action).__name__
            )

    def _restart(self, p: PartitionRuntime, reason: str) -> None:
        """Kill the partition's workers and fork fresh ones from this (warm) process."""
        from flight import recovery as r

        started = self.clock()
        for worker in p.workers:
            worker.kill()
        p.build_workers(self._fds)
        for worker in p.workers:
            worker.start()
        ready = all(worker.wait_ready(timeout=p.spec.start_deadline_s) for worker in p.workers)
        p.stats.restarts[reason] += 1
        p.pending_restart_since = started
        if ready:
            self._fsm(r.PartitionStarted(p.name))
        else:
            self._fsm(r.StartFailed(p.name, "worker did not report ready"))

    def _reload_unrepairable(self) -> None:
        """Blocks the scrubber could not prove good are rewritten from the golden image (when
        its CRC checks out), so the replicas do not keep computing with them."""
        for p in self.partitions:
            suspect = p.model.weights.suspect_blocks
            if not suspect:
                continue
            reloaded, refused = p.model.reload_blocks(suspect)
            p.stats.golden_reloads += reloaded
            self.log.emit(
                events.REGION_REWRITTEN,
                region=p.model.weights.name,
                blocks=reloaded,
                refused=refused,
            )

    def _restart_replica(self, p: PartitionRuntime, replica: int) -> None:
        """Reload a replica's weight copy from the golden image and clear its arena; under
        space placement its worker process is forked again too."""
        reloaded, refused = p.model.reload_blocks(copies=[replica])
        self.log.emit(
            events.REGION_REWRITTEN,
            region=p.model.weights.name,
            copy=replica,
            blocks=reloaded,
            refused=refused,
        )
        p.replicas[replica].arena[...] = 0.0
        p.stats.replica_restarts += 1
        if p.placement == "space" and replica < len(p.workers):
            worker = p.workers[replica]
            worker.kill()
            worker.start()
            worker.wait_ready(timeout=p.spec.start_deadline_s)

    # --- one frame ----------------------------------------------------------------------------
    def _execute(self, p: PartitionRuntime, upsets: int) -> str:
        """Run the active replicas once: 'ok', 'hang' or 'crash'."""
        p.sequence += 1
        seed = int(self._rng.integers(0, 2**63))
        deadline = p.spec.deadline_ms / 1000.0
        hb_timeout = p.spec.heartbeat_timeout_ms / 1000.0
        per_worker = [0] * len(p.workers)
        for _ in range(upsets):
            per_worker[int(self._rng.integers(0, len(p.workers)))] += 1
        try:
            for worker, n in zip(p.workers, per_worker, strict=True):
                worker.request(p.sequence, activation_upsets=n, seed=seed)
            for worker in p.workers:
                if worker.wait_done(p.sequence, deadline):
                    continue
                p.stats.deadline_misses += 1
                # late: a slow frame, or a hang? wait up to the heartbeat timeout, then a last
                # look (it may have finished just as the wait ran out)
                if worker.wait_done(p.sequence, max(hb_timeout - deadline, 0.0)):
                    continue
                if not worker.wait_done(p.sequence, 0.0):
                    return "hang"
        except WorkerDied:
            return "crash"
        return "ok"

    def _run_partition(self, p: PartitionRuntime, report: FrameReport, upsets: int) -> bool:
        """One inference of one partition; returns True if it proved progress."""
        from flight import recovery

        state = self.fsm.state(p.name).value
        if p.disabled or state in ("disabled", "stopped", "suspended"):
            # stopped on purpose (disabled, temporary, suspended for safe mode): it is not
            # expected to make progress, and must not starve the watchdog
            p.stats.unavailable += 1
            return True
        if not all(w.alive for w in p.workers):
            p.stats.unavailable += 1
            return False
        label = p.next_input()
        p.stats.frames += 1
        outcome = self._execute(p, upsets)
        if outcome == "crash":
            dead = [w for w in p.workers if w.exited() or not w.alive]
            detail = ", ".join(w.describe_exit() for w in dead) or "pipe closed"
            report.faults.append(f"{p.name}: crash ({detail})")
            status = next((w.exit_status for w in dead if w.exit_status not in (None, -1)), None)
            signal_number = exit_code = None
            if status is not None and os.WIFSIGNALED(status):
                signal_number = os.WTERMSIG(status)
            elif status is not None:
                exit_code = os.WEXITSTATUS(status)
            self._fsm(recovery.Crashed(p.name, exit_code=exit_code, signal=signal_number))
            return False
        if outcome == "hang":
            report.faults.append(
                f"{p.name}: hang (no heartbeat within {p.spec.heartbeat_timeout_ms:g} ms)"
            )
            self._fsm(recovery.HeartbeatMissed(p.name))
            return False

        if p.placement == "time" and p.workers:
            seen = p.workers[0].vote_point_corrections
            p.stats.vote_point_corrections += seen - p.vp_seen
            p.vp_seen = seen
        output, delivered, corrected = self._decide(p)
        if delivered:
            p.stats.delivered += 1
            report.delivered += 1
            if corrected:
                p.stats.corrected += 1
                report.corrected += 1
            if label is not None:
                p.stats.labelled += 1
                p.stats.correct += int(int(np.argmax(output)) == label)
            if p.shadow is not None:
                golden = p.shadow.run(np.asarray(p.input))
                if golden.tobytes() != output.tobytes():
                    p.stats.sdc += 1
                    report.sdc += 1
        else:
            p.stats.withheld += 1
            report.withheld += 1
        if p.pending_restart_since is not None and delivered:
            p.stats.restart_seconds.append(self.clock() - p.pending_restart_since)
            p.pending_restart_since = None
        return True

    def _decide(self, p: PartitionRuntime) -> tuple[np.ndarray | None, bool, bool]:
        """Vote / compare / take the active replicas' outputs (flight.redundancy.decide), and
        turn what the decision saw into counters, events and recovery inputs."""
        from flight import recovery

        result = decide(p.mode, p.outputs, p.vote, lambda: self._execute(p, 0) == "ok")
        for i, lost in enumerate(result.lost):
            p.stats.lost[i] += lost
            if lost:
                self.log.emit(events.VOTE_CORRECTED, partition=p.name, replica=i, words=lost)
                self._fsm(recovery.VoteAlarm(p.name, replica=i, reason="outvoted"))
        if result.no_majority:
            self.log.emit(events.VOTE_NO_MAJORITY, partition=p.name, words=result.no_majority)
            self._fsm(recovery.VoteAlarm(p.name, replica=None, reason="no majority"))
        if result.reexecuted:
            self.log.emit(events.DWC_MISMATCH, partition=p.name)
            p.stats.dwc_reexecutions += 1
            if not result.delivered:
                self._fsm(recovery.VoteAlarm(p.name, replica=None, reason="DWC mismatch"))
        corrected = result.corrected > 0 or (result.reexecuted and result.delivered)
        return result.output, result.delivered, corrected

    def step(self) -> FrameReport:
        """Run one minor frame."""
        if not self._started:
            self.start()
        from flight import recovery

        schedule = self.mission.schedule
        report = FrameReport(self.frame)
        dt = schedule.minor_frame_ms / 1000.0
        exposure = min(self._compute_s, dt)
        if self.radiation is not None:
            # the frame's idle part: upsets land in the weight copies (the scrub may find them)
            self.radiation.advance(dt - exposure, only=self._weight_targets)
        scrub = self.scrubber.step(self.mission.scrub.bytes_per_frame)
        if scrub.errors_found:  # radiation evidence: tells an upset storm from a failing replica
            self._fsm(recovery.MemoryUpsets(scrub.errors_found))
        self._reload_unrepairable()
        activation_upsets: dict[str, int] = {}
        if self.radiation is not None:
            # the compute part: weights and live activations are exposed
            for injection in self.radiation.advance(
                exposure, only=self._weight_targets + self._activation_targets
            ):
                if "/activations" in injection.target:
                    name = injection.target.split("/", 1)[0]
                    activation_upsets[name] = activation_upsets.get(name, 0) + 1
        self._fsm(recovery.Tick())
        progress: dict[str, bool] = {}
        for p in self.partitions:
            due = self.frame % p.spec.period_frames == 0
            if not due:
                progress[p.name] = True
                continue
            progress[p.name] = self._run_partition(p, report, activation_upsets.get(p.name, 0))
        self.watchdog.stroke(progress)
        if (self.frame + 1) % schedule.minor_frames_per_major == 0:
            self._commit()
        self.frame += 1
        return report

    def _commit(self) -> None:
        """Counters (with complements) and the recovery state into the critical data store."""
        for key, value in self.summary(brief=True).items():
            if isinstance(value, int) and not isinstance(value, bool):
                delta = value - self._committed.get(key, 0)
                if delta > 0:
                    self.cds.add(key, delta)
                    self._committed[key] = value
        self.cds.set_state("recovery", self.fsm.to_dict())
        self.cds.set_state("recovery_policy", self._policy_id)
        self.cds.set_state("scrub_cursor", self.scrubber.counters.passes_completed)
        self.cds.commit()

    # --- the run loop -------------------------------------------------------------------------
    def run(
        self,
        frames: int | None = None,
        duration: float | None = None,
        progress: Callable[[FrameReport, Supervisor], None] | None = None,
    ) -> dict[str, Any]:
        """Run frames until ``frames`` or ``duration`` (seconds) or a processor reset."""
        self.start()
        period = self.mission.schedule.minor_frame_ms / 1000.0
        started = self.clock()
        next_frame = started
        try:
            while self.exit_code is None and not self.stop_requested:
                if frames is not None and self.frame >= frames:
                    break
                if duration is not None and self.clock() - started >= duration:
                    break
                report = self.step()
                if progress is not None:
                    progress(report, self)
                if self.realtime:
                    next_frame += period
                    delay = next_frame - self.clock()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        next_frame = self.clock()  # overrun: do not try to catch up
        finally:
            self.shutdown()
        summary = self.summary()
        summary["elapsed_s"] = round(self.clock() - started, 3)
        return summary

    # --- telemetry ----------------------------------------------------------------------------
    def summary(self, brief: bool = False) -> dict[str, Any]:
        stats = [p.stats for p in self.partitions]
        restarts: Counter = Counter()
        for s in stats:
            restarts.update(s.restarts)
        labelled = sum(s.labelled for s in stats)
        result: dict[str, Any] = {
            "frames": self.frame,
            "inferences": sum(s.frames for s in stats),
            "accuracy": (sum(s.correct for s in stats) / labelled) if labelled else None,
            "delivered": sum(s.delivered for s in stats),
            "corrected": sum(s.corrected for s in stats),
            "withheld": sum(s.withheld for s in stats),
            "unavailable": sum(s.unavailable for s in stats),
            "scrub_repairs": self.scrubber.counters.repaired
            + self.scrubber.counters.table_repaired,
            "scrub_unrepairable": self.scrubber.counters.unrepairable,
            "golden_reloads": sum(s.golden_reloads for s in stats),
            "restarts": sum(restarts.values()),
            "sdc": sum(s.sdc for s in stats) if self.radiation is not None else None,
            "deadline_misses": sum(s.deadline_misses for s in stats),
        }
        if brief:
            return result
        result.update(
            {
                "restarts_by_cause": dict(restarts),
                "escalations": sum(c["escalations"] for c in self.fsm.counters().values()),
                "recovery": self.fsm.counters(),
                "system_state": str(self.fsm.system_state.value),
                "safe_mode": self.safe_mode,
                "exit_code": self.exit_code or 0,
                "upsets": self.radiation.counts() if self.radiation is not None else {},
                "scrub_passes": self.scrubber.counters.passes_completed,
                "watchdog": self.watchdog.counters(),
                "boot_count": self.boot,
                "recovery_state_restored": self.restored,
                "cds_directory": self.cds_directory,
                "weights_reverified": self.reverified,
                "partitions": {
                    p.name: {
                        "mode": p.mode,
                        "placement": p.placement,
                        "disabled": p.disabled,
                        "lost_by_replica": list(p.stats.lost),
                        "dwc_reexecutions": p.stats.dwc_reexecutions,
                        "vote_point_corrections": p.stats.vote_point_corrections,
                        "restart_seconds": [round(s, 4) for s in p.stats.restart_seconds],
                    }
                    for p in self.partitions
                },
                "events": self.log.counts(),
            }
        )
        return result


def _load_dataset(spec: Any, input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A partition's input data set (.npz with ``x`` and ``y``), checked against its model."""
    where = f"partition {spec.name!r}: dataset {spec.dataset_path}"
    try:
        with np.load(spec.dataset_path) as data:
            x, y = data["x"].astype(np.float32), np.asarray(data["y"])
    except (OSError, KeyError, ValueError) as exc:
        raise errors.ConfigError(f"{where}: cannot read x and y ({exc})") from exc
    sample = int(np.prod(input_shape[1:], dtype=np.int64)) if input_shape else 1
    if x.ndim < 1 or len(x) == 0 or x[0].size != sample or len(y) != len(x):
        raise errors.ConfigError(
            f"{where}: x {x.shape} / y {y.shape} do not fit the model input {tuple(input_shape)}"
        )
    return x, y


def _policy_fingerprint(policy: Any) -> str:
    """A short stable digest of a recovery policy (frozen dataclasses have a stable repr)."""
    from flight.crc import crc32c

    return f"{crc32c(repr(policy).encode()):08x}"


def policy_from_mission(mission: Any) -> Any:
    """The recovery state machine's policy table from a validated mission."""
    from flight import recovery

    partitions = {
        spec.name: recovery.PartitionPolicy(
            name=spec.name,
            restart=spec.restart_type,
            max_restarts=spec.max_restarts,
            period=spec.restart_period_s,
            redundancy=spec.redundancy,
            ladder=tuple(spec.escalation),
            start_deadline=spec.start_deadline_s,
            in_safe_mode=spec.in_safe_mode,
        )
        for spec in mission.partitions
    }
    order = mission.recovery.order or tuple(partitions)
    return recovery.SupervisorPolicy(
        partitions=tuple(partitions[name] for name in order),
        strategy=mission.recovery.strategy,
        max_restarts=mission.recovery.processor_reset_max,
        period=mission.recovery.processor_reset_period_s,
        max_safe_mode_entries=mission.recovery.safe_mode_max,
        safe_mode_period=mission.recovery.safe_mode_period_s,
        vote_alarms=mission.recovery.vote_alarm_threshold,
        vote_period=mission.recovery.vote_alarm_period_s,
        storm_upsets=mission.recovery.storm_upset_threshold,
    )
