"""The supervisor: the frame schedule, and the recovery machine's hands.

One supervisor process owns everything that must survive a partition's failure: the mission,
the models' weights (in shared memory, one copy per replica, scrubbed every frame), the recovery
state machine (:mod:`flight.recovery`, pure), the critical data store (:mod:`flight.cds`) and the
watchdog (:mod:`flight.watchdog`). Partitions (:mod:`flight.partition`) are forked workers that
only compute. The supervisor's parts each have their own module:

* :mod:`flight.jobs`: what a partition computes (model, replicas, buffers, data set);
* :mod:`flight.health`: did its workers complete, hang or crash;
* :mod:`flight.redundancy`: deliver, correct or withhold the replicas' outputs;
* :mod:`flight.telemetry`: the counters and the housekeeping built from them;
* :mod:`flight.testmode`: simulated radiation and the SDC oracle (test-mode missions only);
* :mod:`flight.link.service`: the space link (telemetry out, telecommands in), polled at the
  start of each frame; :mod:`flight.commanding` carries out its commands at that boundary and
  :mod:`flight.upload` checks, activates and, on a failed trial, rolls back uploaded models.

Each minor frame the supervisor lets the simulated radiation act (test mode), runs the scrubber
within its byte budget, and then, for every partition due in the frame: loads its next input,
releases it to the partition's worker(s), asks the health monitor for the outcome, decides on
the replicas' outputs (TMR vote, DWC compare with one re-execution, or simplex) and, in test
mode, judges a delivered output against the oracle. It strokes the watchdog if every
partition proved progress and commits counters to the critical data store once per major
frame.

Every fault becomes an input to the recovery state machine. Inputs are queued and handled one
at a time, as an Erlang/OTP supervisor handles its mailbox: the actions the machine returns
for one input (kill, restart, re-verify weights, degrade TMR -> DWC -> simplex, disable, safe
mode, processor reset) are all carried out before the next input, including the inputs that
carrying them out produced (a restarted partition reports :class:`PartitionStarted`), so the
machine never sees a world in which only half of its decision has happened.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from flight import errors, events, health
from flight.health import Outcome
from flight.jobs import ModelJob
from flight.modes import REPLICAS
from flight.partition import PartitionProcess
from flight.recovery import policy_from_mission
from flight.redundancy import decide
from flight.telemetry import (
    CounterCommitter,
    FrameReport,
    PartitionStats,
    housekeeping,
    partition_packet,
)

__all__ = ["FrameReport", "PartitionRuntime", "Supervisor", "policy_from_mission"]


class StartInterrupted(BaseException):
    """A stop request (SIGTERM, SIGINT) arrived while the models were still loading: unwind
    the cold start, then shut down as after any run. A BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` on the way swallows it."""


class PartitionRuntime:
    """One partition as the supervisor runs it: its job, workers, mode and counters."""

    def __init__(self, spec: Any, job: ModelJob) -> None:
        self.spec = spec
        self.name = spec.name
        self.job = job
        self.mode = spec.redundancy
        self.placement = spec.placement
        self.workers: list[PartitionProcess] = []
        self.sequence = 0
        self.disabled = False
        self.pending_restart_since: float | None = None
        self.stats = PartitionStats()
        #: CRC-32C of the model file serving now (telemetry: which model is this?)
        self.model_crc = 0
        self._vote_points_seen = (0, 0, 0)  # (corrected, no majority, unsafe): current worker

    def active_replicas(self) -> list[int]:
        return list(range(REPLICAS[self.mode]))

    def build_workers(self, close_in_child: Callable[[], list[int]]) -> None:
        """Time placement: one worker computes the active replicas in turn (voting at the
        mission's vote points while in TMR); space placement: one worker per replica (each
        its own failure domain, running in parallel)."""
        active = [self.job.replicas[i] for i in self.active_replicas()]
        self._vote_points_seen = (0, 0, 0)
        if self.placement == "space":
            self.workers = [
                PartitionProcess(f"{self.name}[{i}]", [r], self.job.input, close_in_child)
                for i, r in enumerate(active)
            ]
        else:
            vote_points = self.spec.vote_points if self.mode == "tmr" else ()
            self.workers = [
                PartitionProcess(self.name, active, self.job.input, close_in_child, vote_points)
            ]

    def collect_vote_points(self, log: events.EventLog) -> bool:
        """Add what the worker's vote points corrected (or could not) in the inference just
        done; True when one of them was unsafe (the inference must be withheld)."""
        if self.placement != "time" or not self.workers:
            return False
        worker = self.workers[0]
        seen = (
            worker.vote_point_corrections,
            worker.vote_point_no_majority,
            worker.vote_point_unsafe,
        )
        corrected, no_majority, unsafe = (
            now - before for now, before in zip(seen, self._vote_points_seen, strict=True)
        )
        self._vote_points_seen = seen
        self.stats.vote_point_corrections += corrected
        self.stats.vote_point_no_majority += no_majority
        self.stats.vote_point_unsafe += unsafe
        if unsafe:
            log.emit(
                events.VOTE_POINT_UNSAFE, partition=self.name, words=no_majority, unsafe=unsafe
            )
        return unsafe > 0


class Supervisor:
    """Runs a mission: see the module docstring. Construct (cheap: the mission's checks, the
    CDS claim and the boot record), then :meth:`run` (or :meth:`load`, :meth:`start`,
    :meth:`step`). ``environment`` (simulated radiation) needs a test-mode mission."""

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
        on_watchdog_expire: Callable[[float], object] | None = None,
        link_transport: Any = None,
        tm_file: BinaryIO | None = None,
    ) -> None:
        from flight import recovery
        from flight.cds import CriticalDataStore
        from flight.scrub import Scrubber
        from flight.testmode import require_test_mode
        from flight.watchdog import make_watchdog

        for spec in mission.partitions:
            if spec.vote_points and spec.placement == "space":
                raise errors.ConfigError(
                    f"partition {spec.name!r}: vote points need time placement (the replicas "
                    "must meet between layers; space-placed replicas only meet at the output)"
                )
        if environment is not None:  # the injection gate, before anything is loaded
            require_test_mode(mission, f"simulated radiation ({environment!r})")
        self.mission = mission
        self.clock = clock
        self.realtime = realtime
        self.log = events.EventLog(capacity=1024, clock=clock)
        self.frame = 0
        self.stop_requested = False  # set from a signal handler: finish the frame, shut down
        self.reverified = 0
        self.exit_code: int | None = None
        self.partitions: list[PartitionRuntime] = []
        self.by_name: dict[str, PartitionRuntime] = {}
        self.test_mode: Any = None  # flight.testmode.TestMode once loaded, in test mode
        #: called with each partition after its workers computed, before the vote (test mode:
        #: where the HIL agent fires its armed output upsets and reads back activation ones)
        self.before_vote: list[Callable[[PartitionRuntime], None]] = []
        self._environment = environment
        self._accelerate = accelerate
        self._rng = np.random.default_rng(int(mission.seed))
        # The simulated compute window of each frame: weights and live activations are exposed
        # during it. A fixed parameter, not the measured compute time, so that a seeded run
        # replays the same upsets on any machine.
        self._compute_s = compute_window_s
        self.scrubber = Scrubber([], log=self.log, clock=clock)  # the weights join at load
        # armed at the first stroke; a software watchdog's expiry exits the process (124)
        # unless ``on_watchdog_expire`` says otherwise (an in-process test must not end pytest)
        self.watchdog = make_watchdog(mission.watchdog, log=self.log, on_expire=on_watchdog_expire)
        if cds_directory is None:
            mission.cds.ensure()
            cds_directory = str(mission.cds.directory)
        else:
            type(mission.cds)(Path(cds_directory)).ensure()  # create it, or say why not
        self.cds_directory = str(cds_directory)
        self.cds = CriticalDataStore(cds_directory, log=self.log)
        self.cds.claim()  # one supervisor per state directory, or CdsBusyError
        self.fsm, self.restored = self._recovery_state(
            recovery, policy_from_mission(mission), fresh_recovery
        )
        previous = self.cds.record.reset_log
        #: why the previous run ended (housekeeping: the last reset reason)
        self.last_reset_reason = previous[-1].reason if previous else ""
        self.boot = self.cds.begin_boot("flight run")
        #: partitions serving an uploaded model on trial (flight.upload.Trial)
        self.trials: dict[str, Any] = {}
        self.link = self._open_link(link_transport, tm_file)
        self._counters = CounterCommitter()
        self._inputs: deque[Any] = deque()
        self._handling = False
        self._loading = False
        self._loaded = False
        self._started = False
        #: the cold start was cut short by a stop request (nothing ran)
        self.interrupted_start = False

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

    def _open_link(self, transport: Any, tm_file: BinaryIO | None) -> Any:
        """The space link, when a transport or a telemetry file is given (the keys are read
        now: a bad key file is a configuration error before anything runs)."""
        if transport is None and tm_file is None:
            return None
        from flight.link.service import LinkService, NullTransport

        keyring = None
        if self.mission.link.key_file is not None:
            from flight.link.keys import load_keys

            keyring = load_keys(self.mission.link.key_file)
        return LinkService(
            self.mission.link,
            transport if transport is not None else NullTransport(),
            log=self.log,
            cds=self.cds,
            staging_dir=Path(self.cds_directory) / "uploads",
            keyring=keyring,
            test_mode=self.mission.test_mode,
            tm_file=tm_file,
        )

    @property
    def safe_mode(self) -> bool:
        """The recovery machine's system state, also when restored from the CDS."""
        return self.fsm.system_state.value == "safe_mode"

    def request_stop(self) -> None:
        """Finish the current frame and shut down (a signal handler calls this). During the
        cold start, which can take tens of seconds of kernel compilation, it interrupts the
        loading at once instead."""
        self.stop_requested = True
        if self._loading:
            raise StartInterrupted

    def load(self) -> None:
        """Load every partition's model (weight copies in shared memory) and data set, and
        compile the kernels in this process, before any fork: the cold start."""
        if self._loaded:
            return
        from flight.scrub import Scrubber

        self._loading = True
        try:
            if self.stop_requested:
                raise StartInterrupted
            from flight import upload

            for mission_spec in self.mission.partitions:
                spec, job = upload.load_job(self, mission_spec)
                job.warm_up()
                p = PartitionRuntime(spec, job)
                p.model_crc = job.model_crc
                # a restored machine may have degraded or disabled it
                p.mode = self.fsm.mode(p.name)
                p.disabled = self.fsm.state(p.name).value in ("disabled", "stopped")
                self.partitions.append(p)
                self.by_name[p.name] = p
            self.scrubber = Scrubber(
                [p.job.weights for p in self.partitions], log=self.log, clock=self.clock
            )
            if self._environment is not None:
                from flight.testmode import TestMode

                jobs = {p.name: p.job for p in self.partitions}
                self.test_mode = TestMode(
                    self.mission, jobs, self._environment, self._accelerate, self.log
                )
            self._loaded = True
        except StartInterrupted:
            self.interrupted_start = True
        finally:
            self._loading = False

    def worker_fds(self) -> list[int]:
        return [fd for p in self.partitions for w in p.workers for fd in w.fds()]

    def start(self) -> None:
        """Load (if not yet), then fork every partition's workers and wait until they are
        ready."""
        from flight import recovery

        self.load()
        if self._started or not self._loaded:
            return
        for p in self.partitions:
            p.build_workers(self.worker_fds)
            if p.disabled:  # restored disabled: stays down until a ground command enables it
                continue
            for worker in p.workers:
                worker.start()
            ready = all(w.wait_ready(timeout=p.spec.start_deadline_s) for w in p.workers)
            self.feed(
                recovery.PartitionStarted(p.name)
                if ready
                else recovery.StartFailed(p.name, "worker did not report ready")
            )
        self._started = True

    def shutdown(self) -> None:
        """Stop the workers, record how the run ended and commit the CDS, close the watchdog
        (a clean stop disarms it)."""
        for p in self.partitions:
            for worker in p.workers:
                worker.stop()
        if self.exit_code is None:  # a processor reset is already in the reset log
            if self.interrupted_start:
                reason = "stop requested during start-up"
            else:
                reason = "stop requested" if self.stop_requested else "run complete"
            self.cds.log_reset(reason, None, "shutdown")
        with contextlib.suppress(Exception):
            self.cds.commit()
        self.cds.release()
        self.watchdog.close()
        if self.link is not None:  # last: the shutdown's own events go down too
            self.link.close()  # a last drain in contact; pending results kept for next time

    # --- recovery -----------------------------------------------------------------------------
    def feed(self, event: Any) -> None:
        """Give the recovery state machine one input and carry out its actions.

        Inputs wait in a queue: while the actions of one input are being carried out, the
        inputs they produce are queued and handled afterwards, one at a time. After a
        processor reset the machine accepts nothing more: the queue is dropped.
        """
        self._inputs.append(event)
        if self._handling:
            return
        self._handling = True
        try:
            while self._inputs and self.exit_code is None:
                for action in self.fsm.handle(self._inputs.popleft(), self.clock()):
                    if self.exit_code is not None:
                        break
                    self._apply(action)
        finally:
            self._handling = False
            if self.exit_code is not None:
                self._inputs.clear()

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
            # the whole region: its copies are voted together, and a full check costs
            # microseconds (the action's replica names who lost, not what to check)
            report = self.by_name[action.name].job.weights.repair(log=self.log)
            counters = self.scrubber.counters
            counters.repaired += report.repaired
            counters.table_repaired += report.table_repaired
            counters.unrepairable += report.unrepairable
            self.reverified += 1
        elif isinstance(action, r.RestartReplica):
            self._restart_replica(self.by_name[action.name], action.replica)
        elif isinstance(action, r.DisablePartition):
            p = self.by_name[action.name]
            p.disabled = True
            for worker in p.workers:
                worker.kill()
        elif isinstance(action, r.EnterSafeMode):
            pass  # the machine is in safe mode now (safe_mode reads it); its orders follow
        elif isinstance(action, r.ProcessorReset):
            self.exit_code = int(action.exit_code)
            self.cds.log_reset(action.reason, None, "processor reset")
        elif isinstance(action, r.RollBackModel):
            from flight import upload

            upload.roll_back(self, self.by_name[action.name], str(action.reason))
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
        p.build_workers(self.worker_fds)
        for worker in p.workers:
            worker.start()
        ready = all(worker.wait_ready(timeout=p.spec.start_deadline_s) for worker in p.workers)
        p.stats.restarts[reason] += 1
        p.pending_restart_since = started
        self.feed(
            r.PartitionStarted(p.name) if ready else r.StartFailed(p.name, "worker not ready")
        )

    def reload_unrepairable(self) -> None:
        """Blocks the scrubber could not prove good are rewritten from the golden image (when
        its CRC checks out), so the replicas do not keep computing with them."""
        for p in self.partitions:
            suspect = p.job.weights.suspect_blocks
            if not suspect:
                continue
            reloaded, refused = p.job.model.reload_blocks(suspect)
            p.stats.golden_reloads += reloaded
            self.log.emit(
                events.REGION_REWRITTEN,
                region=p.job.weights.name,
                blocks=reloaded,
                refused=refused,
            )

    def _restart_replica(self, p: PartitionRuntime, replica: int) -> None:
        """Reload a replica's weight copy from the golden image and clear its arena; under
        space placement its worker process is forked again too."""
        from flight import recovery as r

        reloaded, refused = p.job.model.reload_blocks(copies=[replica])
        self.log.emit(
            events.REGION_REWRITTEN,
            region=p.job.weights.name,
            copy=replica,
            blocks=reloaded,
            refused=refused,
        )
        p.job.replicas[replica].arena[...] = 0.0
        p.stats.replica_restarts += 1
        if p.placement == "space" and replica < len(p.workers):
            worker = p.workers[replica]
            worker.kill()
            worker.start()
            if not worker.wait_ready(timeout=p.spec.start_deadline_s):
                self.feed(r.StartFailed(p.name, f"replica {replica} worker not ready"))

    # --- one frame ----------------------------------------------------------------------------
    def _execute(self, p: PartitionRuntime, upsets: int) -> health.Execution:
        """Release one request to the partition's workers; the health monitor's outcome."""
        p.sequence += 1
        seed = int(self._rng.integers(0, 2**63))
        per_worker = [0] * len(p.workers)
        for _ in range(upsets):
            per_worker[int(self._rng.integers(0, len(p.workers)))] += 1
        execution = health.execute(
            p.workers,
            p.sequence,
            p.spec.deadline_ms / 1000.0,
            p.spec.heartbeat_timeout_ms / 1000.0,
            per_worker,
            seed,
        )
        if execution.late:
            p.stats.deadline_misses += 1
        return execution

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
        label = p.job.next_input()
        p.stats.frames += 1
        outcome = self._execute(p, upsets).outcome
        if outcome is Outcome.CRASH:
            crash = health.describe_crash(p.workers)
            report.faults.append(f"{p.name}: crash ({crash.detail})")
            if p.name in self.trials:  # the uploaded model's fault: roll back, no budget
                self.feed(recovery.ModelFailed(p.name, f"crash on trial ({crash.detail})"))
            else:
                self.feed(recovery.Crashed(p.name, exit_code=crash.exit_code, signal=crash.signal))
            return False
        if outcome is Outcome.HANG:
            report.faults.append(
                f"{p.name}: hang (no heartbeat within {p.spec.heartbeat_timeout_ms:g} ms)"
            )
            if p.name in self.trials:
                self.feed(recovery.ModelFailed(p.name, "hang on trial"))
            else:
                self.feed(recovery.HeartbeatMissed(p.name))
            return False

        unsafe = p.collect_vote_points(self.log)
        for hook in list(self.before_vote):
            hook(p)
        output, delivered, corrected, crc = self._decide(p, unsafe)
        if self.link is not None:
            top1 = int(np.argmax(output)) if delivered else -1
            delivered = self.link.result(
                p.name, p.sequence, output, crc, delivered, top1, p.job.sample
            )
        if delivered:
            p.stats.delivered += 1
            report.delivered += 1
            if corrected:
                p.stats.corrected += 1
                report.corrected += 1
            if label is not None:
                p.stats.labelled += 1
                p.stats.correct += int(p.job.correct(output, label))
            if self.test_mode is not None:
                from flight.testmode import Verdict

                verdict = self.test_mode.judge(p.name, np.asarray(p.job.input), output)
                if verdict is Verdict.SDC:
                    p.stats.sdc += 1
                    report.sdc += 1
        else:
            p.stats.withheld += 1
            report.withheld += 1
        if p.pending_restart_since is not None and delivered:
            p.stats.restart_seconds.append(self.clock() - p.pending_restart_since)
            p.pending_restart_since = None
        if p.name in self.trials:
            from flight import upload

            upload.after_frame(self, p, delivered)
        return True

    def _decide(
        self, p: PartitionRuntime, unsafe_vote_point: bool
    ) -> tuple[np.ndarray | None, bool, bool, int | None]:
        """Vote / compare / take the active replicas' outputs (flight.redundancy.decide), and
        turn what the decision saw into counters, events and recovery inputs. An inference
        with an unsafe vote point is withheld whatever its output vote says."""
        from flight import recovery

        if unsafe_vote_point:
            self.feed(recovery.VoteAlarm(p.name, replica=None, reason="unsafe vote point"))
            return None, False, False, None

        result = decide(
            p.mode,
            p.job.outputs,
            p.job.vote,
            lambda: self._execute(p, 0).outcome is Outcome.OK,
        )
        for i, lost in enumerate(result.lost):
            p.stats.lost[i] += lost
            if lost:
                self.log.emit(events.VOTE_CORRECTED, partition=p.name, replica=i, words=lost)
                self.feed(recovery.VoteAlarm(p.name, replica=i, reason="outvoted"))
        if result.no_majority:
            self.log.emit(events.VOTE_NO_MAJORITY, partition=p.name, words=result.no_majority)
            self.feed(recovery.VoteAlarm(p.name, replica=None, reason="no majority"))
        elif result.split:
            self.log.emit(events.VOTE_SPLIT, partition=p.name, lost=list(result.lost))
            self.feed(recovery.VoteAlarm(p.name, replica=None, reason="split vote"))
        if result.reexecuted:
            self.log.emit(events.DWC_MISMATCH, partition=p.name)
            p.stats.dwc_reexecutions += 1
            if not result.delivered:
                self.feed(recovery.VoteAlarm(p.name, replica=None, reason="DWC mismatch"))
        corrected = result.corrected > 0 or (result.reexecuted and result.delivered)
        return result.output, result.delivered, corrected, result.crc32c

    def step(self) -> FrameReport:
        """Run one minor frame."""
        if not self._started:
            self.start()
        from flight import recovery

        if self.link is not None:  # commands are carried out at the frame boundary
            from flight import commanding

            for command in self.link.poll():
                commanding.execute(self, self.link, command)
                if self.exit_code is not None:
                    break

        schedule = self.mission.schedule
        report = FrameReport(self.frame)
        dt = schedule.minor_frame_ms / 1000.0
        exposure = min(self._compute_s, dt)
        if self.test_mode is not None:
            self.test_mode.idle(dt - exposure)  # the scrub below may find these
        scrub = self.scrubber.step(self.mission.scrub.bytes_per_frame)
        if scrub.errors_found:  # radiation evidence: tells an upset storm from a failing replica
            self.feed(recovery.MemoryUpsets(scrub.errors_found))
        self.reload_unrepairable()
        activation_upsets = self.test_mode.compute(exposure) if self.test_mode is not None else {}
        self.feed(recovery.Tick())
        progress: dict[str, bool] = {}
        for p in self.partitions:
            due = self.frame % p.spec.period_frames == 0
            if not due:
                progress[p.name] = True
                continue
            progress[p.name] = self._run_partition(p, report, activation_upsets.get(p.name, 0))
        self.watchdog.stroke(progress)
        if self.link is not None:
            self.link.frame_end(self.frame, self.summary, self.partition_telemetry)
        if (self.frame + 1) % schedule.minor_frames_per_major == 0:
            self._commit()
        self.frame += 1
        return report

    def _commit(self) -> None:
        """Counters (with complements) and the recovery state into the critical data store."""
        self._counters.commit(self.cds, self.summary(brief=True))
        self.cds.set_state("recovery", self.fsm.to_dict())
        self.cds.set_state("recovery_policy", self._policy_id)
        self.cds.set_state("scrub_cursor", self.scrubber.counters.passes_completed)
        self.cds.commit()
        if self.link is not None:
            self.link.save()

    # --- the run loop -------------------------------------------------------------------------
    def run(
        self,
        frames: int | None = None,
        duration: float | None = None,
        progress: Callable[[FrameReport, Supervisor], None] | None = None,
    ) -> dict[str, Any]:
        """Run frames until ``frames`` or ``duration`` (seconds), a stop request or a
        processor reset; the summary at the end (also after a stop during the cold start)."""
        period = self.mission.schedule.minor_frame_ms / 1000.0
        started = self.clock()
        try:
            self.start()
            next_frame = self.clock()
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
        """Housekeeping (:func:`flight.telemetry.housekeeping`)."""
        return housekeeping(self, brief)

    def partition_telemetry(self) -> list[dict[str, Any]]:
        """The PARTITION packets' values (:func:`flight.telemetry.partition_packet`)."""
        return [partition_packet(p, self.fsm) for p in self.partitions]


def _policy_fingerprint(policy: Any) -> str:
    """A short stable digest of a recovery policy (frozen dataclasses have a stable repr)."""
    from flight.crc import crc32c

    return f"{crc32c(repr(policy).encode()):08x}"
