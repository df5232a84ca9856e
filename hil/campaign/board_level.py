"""Board-level fault injection: through the space link to a running board.

Each run sends one HIL-agent telecommand (``inject``, ``hang_partition``, ``crash_partition``,
``flip_memory``; flight/agent.py) and classifies what the board's telemetry shows:

1. the INJECTION acknowledgement: the bytes (or the worker's process state) read back before
   and after; unchanged, or an armed upset that never fired, is NOT_INJECTED;
2. a hang or a crash of the partition (PARTITION_HUNG / PARTITION_CRASHED events) is HANG /
   CRASH, detected at the event and recovered at the first good output after it;
3. otherwise the next RESULT packets of the partition (a bounded number), compared bitwise
   with golden outputs the harness computed itself from the same model file and data set, by
   the RESULT's ``sample``: a wrong delivered output is SDC, a withheld one DUE, a right one
   CORRECTED when the board logged a correction for it (VOTE_CORRECTED, a scrub repair, a DWC
   re-execution, a replica restart, a CDS copy recovered) and MASKED otherwise;
4. an upset of the supervisor's own memory that kills or hangs it silences the link: the local
   board's init system (:class:`hil.boards.LocalBoard`) restarts it (a hang is ended by the
   software watchdog, exit 124), and the run is a CRASH or HANG detected at that exit and
   recovered at the first good output of the restarted supervisor.

Times are the board's own (the CUC of its packets; a local board's exits are stamped with the
same host clock): ``detect_s`` and ``recover_s`` count from the INJECTION packet. Runs are made
independent: before each run the board must deliver a right output again (and run the arm's
redundancy), and after an upset of a worker's memory that did not end in a restart the
partition is restarted by command, since a latent corruption would otherwise count against the
next run. Upsets of the supervisor's memory that change nothing visible stay in place (a
restart per run would cost a whole cold start).

One board per worker process (process-global, created from the spec on first use: a spawned
:class:`~hil.boards.LocalBoard` or the board at the spec's URL). A board that stops answering
is reported on stderr and its batch fails (the runner re-queues it); the next batch in this
process starts a new board (spawn) or connects again. A board at a URL restarted by its own
init system is seen only as silence, so there the run's batch fails and is re-queued too.
"""

from __future__ import annotations

import atexit
import hashlib
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flight.modes import REPLICAS
from hil.campaign.outcome import Outcome, RunResult
from hil.campaign.spec import CampaignSpec

__all__ = [
    "Batch",
    "Draw",
    "Golden",
    "close_board",
    "draw",
    "fault_space",
    "inference_seconds",
    "run_batch",
]

#: The restart budget of a spawned board's mission: a campaign of hangs and crashes measures
#: recovery, not the escalation ladder that a fourth restart in a minute would climb.
RESTART_BUDGET = 1000
#: RESULT packets of the partition watched after an upset (a worker's memory: more, since a
#: corrupted object may be used a few inferences later).
RESULT_WINDOW = 3
MEMORY_RESULT_WINDOW = 6
#: Bounds on waits, in seconds of wall time: generous (a loaded 2-core machine), never margins.
ACK_TIMEOUT = 20.0
OBSERVE_TIMEOUT = 30.0
RECOVERY_TIMEOUT = 60.0
#: No packet at all for this long while the supervisor should be running: the link is silent.
SILENCE_S = 1.0
NO_SAMPLE = 0xFFFFFFFF

# events, by name (flight.events): what they tell the classifier
_HUNG, _CRASHED = "PARTITION_HUNG", "PARTITION_CRASHED"
_CORRECTIONS = frozenset(
    {
        "VOTE_CORRECTED",
        "DWC_MISMATCH",
        "SCRUB_BLOCK_REPAIRED",
        "SCRUB_CRC_TABLE_REPAIRED",
        "REGION_REWRITTEN",
        "REPLICA_RESTARTED",
        "REPLICA_REVERIFY_REQUESTED",
        "CDS_RECOVERED_FROM_BACKUP",
        "CDS_COPY_CORRUPT",
        "PARTITION_RESTARTED",
    }
)
_SITE_LABEL = {
    "weights": "weights",
    "crc-tables": "crc_table",
    "outputs": "output",
    "activations": "activation",
    "cds": "cds",
}
_REPLICA_DRAWS = 6  # replicas are drawn in 0..5 and reduced modulo the arm's 1, 2 or 3


@dataclass(frozen=True)
class Batch:
    """Some runs of one arm (picklable). ``golden`` is accepted for the runner's sake and not
    used: at board level the golden outputs are indexed by the board's data set, which this
    module computes itself from the board's model and data set."""

    spec: CampaignSpec
    arm: str
    indices: tuple[int, ...]
    golden: Any = None


@dataclass(frozen=True)
class Draw:
    """The fault of run ``index``: the same for every arm (the replica is reduced modulo the
    arm's replicas when it runs)."""

    index: int
    site: str  # a spec site, or "partition" for hangs and crashes
    fault: str  # the spec's fault model
    offset: int  # byte offset of a 32-bit word (the board takes it modulo the site's size)
    bit: int  # lowest bit flipped in that word
    cluster: int  # bits flipped (1, or mbu_bits)
    stuck: int  # stuck-at value (0 or 1)
    node: str  # activations: the node, weighted by size
    replica_draw: int
    process: str  # process-memory: "partition" or "supervisor"
    memory_draw: int
    signal: str  # crash: SIGKILL or SIGSEGV

    def replica(self, replicas: int) -> int:
        return self.replica_draw % replicas


def draw(spec: CampaignSpec, index: int) -> Draw:
    """Run ``index``'s fault, from ``np.random.default_rng([seed, index])`` alone (and the
    model's activation sizes, for the node of an activation upset)."""
    rng = np.random.default_rng([spec.seed, index])
    fault = spec.fault.model
    site = spec.fault.sites[int(rng.integers(len(spec.fault.sites)))]
    cluster = spec.fault.mbu_bits if fault == "mbu" else 1
    word = int(rng.integers(1 << 40))
    bit = int(rng.integers(0, 32 - cluster + 1))
    stuck = int(rng.integers(2))
    replica_draw = int(rng.integers(_REPLICA_DRAWS))
    processes = (
        ("partition", "supervisor") if spec.fault.process == "both" else (spec.fault.process,)
    )
    process = processes[int(rng.integers(len(processes)))]
    memory_draw = int(rng.integers(1 << 63))
    signal = spec.fault.signals[int(rng.integers(len(spec.fault.signals)))]
    node_draw = float(rng.random())
    node = ""
    if site == "activations":
        names, sizes = _activations(spec)
        node = names[
            min(int(np.searchsorted(np.cumsum(sizes) / sum(sizes), node_draw)), len(names) - 1)
        ]
    return Draw(
        index, site, fault, 4 * word, bit, cluster, stuck, node, replica_draw, process,
        memory_draw, signal,
    )  # fmt: skip


# --- golden outputs and the model's activations (harness side) ---------------------------------
_MODELS: dict[str, Any] = {}
_GOLDEN: dict[tuple[str, str], dict[int, np.ndarray]] = {}


def _model(path: Path) -> Any:
    key = str(path)
    if key not in _MODELS:
        from flight.model import load

        _MODELS[key] = load(path, copies=1)
    return _MODELS[key]


def _activations(spec: CampaignSpec) -> tuple[list[str], list[int]]:
    model = _model(Path(spec.target.model))
    lives = [life for life in model.lives if life.name not in model.input_names]
    return [life.name for life in lives], [life.nbytes for life in lives]


def board_data(spec: CampaignSpec) -> tuple[Path, Path | None]:
    """(model, data set) the board's partition runs: a spawned board's from its mission (the
    spec's, or the bundled one), checked against the spec's model; a board at a URL runs the
    spec's model on the spec's inputs (an .npz with x), else on the bundled demo set."""
    from flight import errors

    target = spec.target
    model = Path(target.model)
    if target.board != "spawn":
        return model, _dataset_of(target.inputs)
    from importlib.resources import files

    from flight.mission import DEFAULT_MISSION

    mission = target.mission or Path(str(files("flight").joinpath("data", DEFAULT_MISSION)))
    runs, dataset = _partition_of(Path(mission), target.partition)
    if _sha256(runs) != _sha256(model):
        raise errors.ConfigError(
            f"the board's partition {target.partition!r} runs {runs}, the spec names {model}: "
            "the golden outputs would be another model's"
        )
    return model, dataset


@dataclass(frozen=True)
class Golden:
    """The golden outputs by the board's data-set sample (the runner stores them; the runs
    use this process's own copy, :func:`golden_outputs`, computed from the same files)."""

    outputs: np.ndarray
    top1: np.ndarray

    def __len__(self) -> int:
        return len(self.outputs)

    @classmethod
    def compute(cls, spec: CampaignSpec) -> Golden:
        golden = golden_outputs(*board_data(spec))
        samples = sorted(k for k in golden if k != NO_SAMPLE) or [NO_SAMPLE]
        outputs = np.stack([golden[k] for k in samples])
        return cls(outputs, np.array([int(np.argmax(o)) for o in outputs], dtype=np.int64))

    def rows(self) -> list[tuple[int, bytes, int]]:
        """(sample, output bytes, top-1) per sample: the store's ``golden`` table."""
        return [(i, self.outputs[i].tobytes(), int(self.top1[i])) for i in range(len(self))]


def fault_space(spec: CampaignSpec) -> int:
    """The population N of the sample size: bits of one replica's copy of the model-bound
    sites (weights, activations, outputs, the CRC tables); sites without a fixed size (a
    process's memory, the CDS file, hangs and crashes) count as 2**40, an unbounded one."""
    model = _model(Path(spec.target.model))
    sizes = {
        "weights": model.weights.nbytes,
        "activations": sum(_activations(spec)[1]),
        "outputs": int(np.prod(model.shapes[model.output_names[0]])) * 4,
        "crc-tables": model.weights.crc_table(0).nbytes,
    }
    return sum(8 * sizes[site] if site in sizes else 1 << 40 for site in spec.fault.sites)


def inference_seconds(spec: CampaignSpec, arm: Any, runs: int = 50) -> float:
    """Fault-free time of one inference under ``arm``, measured on the harness (the board's
    own figure is in its telemetry): the one-copy model's time times the arm's replicas,
    which run one after the other in time placement."""
    arm = spec.arm(arm if isinstance(arm, str) else arm.name)
    model = _model(Path(spec.target.model))
    x = np.zeros(model.shapes[model.input_names[0]], np.float32)
    model.run(x)
    started = time.perf_counter()
    for _ in range(runs):
        model.run(x)
    return REPLICAS[arm.redundancy] * (time.perf_counter() - started) / runs


def golden_outputs(model_path: Path, dataset: Path | None) -> dict[int, np.ndarray]:
    """Fault-free outputs by the board's ``sample`` (NO_SAMPLE: the zero input a partition
    without a data set computes), from a one-copy model in this process."""
    key = (str(model_path), str(dataset))
    if key not in _GOLDEN:
        model = _model(model_path)
        shape = model.shapes[model.input_names[0]]
        golden = {NO_SAMPLE: model.run(np.zeros(shape, np.float32))}
        if dataset is not None:
            with np.load(dataset) as data:
                x = data["x"].astype(np.float32)
            for i in range(len(x)):
                golden[i] = model.run(x[i : i + 1].reshape(shape))
        _GOLDEN[key] = golden
    return _GOLDEN[key]


# --- the board this process owns ---------------------------------------------------------------
_RIG: _Rig | None = None


def close_board(timeout: float = 120.0) -> None:
    """Stop (spawned; SIGKILL after ``timeout``) or let go of (remote) this process's board."""
    global _RIG
    rig, _RIG = _RIG, None
    if rig is not None:
        rig.close(timeout)


atexit.register(close_board)


def _rig_for(spec: CampaignSpec) -> _Rig:
    global _RIG
    key = (spec.target.board, str(spec.target.mission), str(spec.target.key_file))
    key = (*key, spec.target.partition, str(spec.target.model))
    if _RIG is not None and _RIG.key != key:
        close_board()
    if _RIG is None:
        _RIG = _Rig.open(spec, key)
    return _RIG


def run_batch(batch: Batch) -> list[RunResult]:
    """Each of ``batch.indices`` injected into this process's board and classified, in order.
    BoardUnreachable (reported on stderr) when the board stops answering."""
    from hil.boards import BoardError

    spec = batch.spec
    arm = spec.arm(batch.arm)
    try:
        rig = _rig_for(spec)
        rig.use_redundancy(arm.redundancy)
        return [rig.run(draw(spec, i), batch.arm, REPLICAS[arm.redundancy]) for i in batch.indices]
    except BoardError as exc:
        print(f"hil: board {spec.target.board}: {exc}; batch of {batch.arm} fails", file=sys.stderr)
        close_board(timeout=10.0)  # a hung board does not answer SIGTERM
        raise


@dataclass
class _Watch:
    """What the telemetry showed after one injection."""

    t0: float | None = None  # board time of the INJECTION packet
    ack: dict[str, Any] | None = None
    results: list[Any] = field(default_factory=list)  # RESULT values with their time
    events: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    detected: tuple[float, str] | None = None
    recovered: float | None = None


class _Rig:
    """One board, a ground station on it, and what the classifier needs to know about it."""

    def __init__(self, board: Any, key: tuple, partition: str, golden: dict) -> None:
        self.board, self.key, self.partition, self.golden = board, key, partition, golden
        self.ground = board.ground()
        self.mode: str | None = None  # the partition's redundancy, from PARTITION packets
        self.want_mode: str | None = None  # the arm's
        try:
            board.wait_ready(self.ground)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, spec: CampaignSpec, key: tuple) -> _Rig:
        from flight import errors
        from hil.boards import LocalBoard, open_board

        target = spec.target
        data = board_data(spec)  # ConfigError before anything starts
        if target.board == "spawn":
            board = LocalBoard(target.mission, restart_budget=RESTART_BUDGET)
        else:
            if target.key_file is None:
                raise errors.ConfigError(f"board {target.board}: the spec names no key_file")
            board = open_board(target.board, target.key_file)
        try:
            return cls(board, key, target.partition, golden_outputs(*data))
        except BaseException:
            board.close()
            raise

    def close(self, timeout: float = 120.0) -> None:
        try:
            self.ground.close()
        finally:
            stop = getattr(self.board, "stop", None)
            if stop is not None:
                stop(timeout)  # a spawned board: SIGTERM, SIGKILL after the timeout
            else:
                self.board.close()

    # --- telemetry ------------------------------------------------------------------------
    def packets(self, timeout: float) -> Iterator[Any]:
        """Telemetry (the backlog first) until ``timeout`` passes; yields None every 0.2 s
        without a packet so callers can check their own conditions."""
        ground = self.ground
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch, ground.backlog = ground.backlog, []
            batch = batch or ground.receive(timeout=0.2)
            if not batch:
                yield None
            for tm in batch:
                if tm.name == "PARTITION" and tm.values["partition"] == self.partition:
                    self.mode = tm.values["mode"]
                yield tm

    def good(self, tm: Any) -> bool:
        """A delivered RESULT of the partition, bitwise the golden output of its sample."""
        v = tm.values
        if tm.name != "RESULT" or v["partition"] != self.partition or v["status"] != "delivered":
            return False
        golden = self.golden.get(v["sample"])
        return golden is not None and golden.tobytes() == bytes(v["output"])

    def settle(self, timeout: float | None = None) -> None:
        """Wait for a right output (the board is serving again)."""
        timeout = RECOVERY_TIMEOUT if timeout is None else timeout
        for tm in self.packets(timeout):
            if tm is not None and self.good(tm):
                return
            self.board.check_alive()
        from hil.boards import BoardUnreachable

        raise BoardUnreachable(f"{self.board.url}: no right output within {timeout:g} s")

    def command(self, name: str, timeout: float | None = None, **args: Any) -> str:
        """Send a command and wait for its completion; its detail. BoardError if refused."""
        from hil.boards import BoardError, BoardUnreachable

        timeout = ACK_TIMEOUT if timeout is None else timeout
        reports = self.ground.command(name, timeout=timeout, **args)
        if not reports:
            raise BoardUnreachable(f"{self.board.url}: no report for {name} in {timeout:g} s")
        last = reports[-1].values
        if last["stage"] != "COMPLETION_SUCCESS":
            raise BoardError(f"{name} {last['stage']} {last['code']}: {last['detail']}")
        return last["detail"]

    def use_redundancy(self, mode: str) -> None:
        """Run the arm's redundancy (``set_redundancy`` when the board runs another)."""
        self.command("send_housekeeping")
        for _ in self.packets(ACK_TIMEOUT):
            if self.mode is not None:
                break
            self.board.check_alive()
        self.want_mode = mode
        if self.mode != mode:
            self.command("set_redundancy", partition=self.partition, mode=mode)
            self.mode = mode
        self.settle()

    # --- one run --------------------------------------------------------------------------
    def run(self, d: Draw, arm: str, replicas: int) -> RunResult:
        started = time.monotonic()
        self.settle()
        if self.want_mode is not None and self.mode != self.want_mode:  # the ladder degraded it
            self.use_redundancy(self.want_mode)
        name, args = self._request(d, replicas)
        exits_before = len(getattr(self.board, "exits", ()))
        for _attempt in range(5):
            sent = self.ground.send(name, **args)
            watch = self._observe(sent, d, exits_before)
            if watch is not None:
                break
            time.sleep(0.5)  # BUSY: an armed upset or a restart in progress; try again
        else:
            from hil.boards import BoardError

            raise BoardError(f"{name} refused BUSY five times")
        result = self._classify(d, arm, watch, time.monotonic() - started)
        if (
            d.site == "process-memory"
            and d.process == "partition"
            and result.outcome not in (Outcome.HANG, Outcome.CRASH)
        ):
            self.command("restart_partition", partition=self.partition)  # no latent upset
        return result

    def _request(self, d: Draw, replicas: int) -> tuple[str, dict[str, Any]]:
        replica = d.replica(replicas)
        if d.site == "partition":
            if d.fault == "hang":
                return "hang_partition", {"partition": self.partition, "replica": replica}
            return "crash_partition", {
                "partition": self.partition, "replica": replica, "signal": d.signal,
            }  # fmt: skip
        if d.site == "process-memory":
            return "flip_memory", {
                "target": d.process, "partition": self.partition, "replica": replica,
                "draw": d.memory_draw, "bits": d.cluster,
            }  # fmt: skip
        fault = {"seu": "seu", "mbu": "mbu", "stuck-at": f"stuck{d.stuck}"}[d.fault]
        copy = replica
        return "inject", {
            "site": _SITE_LABEL[d.site], "partition": self.partition, "copy": copy,
            "offset": d.offset + d.bit // 8, "bit": d.bit % 8, "fault": fault,
            "cluster": max(d.cluster, 2), "node": d.node,
        }  # fmt: skip

    def _observe(self, sent: bytes, d: Draw, exits_before: int) -> _Watch | None:
        """Watch the telemetry after ``sent`` until the run's outcome is known (None: the
        command was refused BUSY)."""
        from hil.boards import BoardError, BoardUnreachable

        request_id = int.from_bytes(sent[0:2], "big")
        request_seq = int.from_bytes(sent[2:4], "big")
        w = _Watch()
        pending: list[Any] = []  # packets that came before the acknowledgement
        window = MEMORY_RESULT_WINDOW if d.site == "process-memory" else RESULT_WINDOW
        sent_at = last_packet = time.monotonic()
        detected_at: float | None = None
        for tm in self.packets(2 * RECOVERY_TIMEOUT + OBSERVE_TIMEOUT):
            now = time.monotonic()
            if self._exits() > exits_before:  # the supervisor itself went down
                return self._supervisor_down(w, exits_before)
            if w.detected is not None and detected_at is None:
                detected_at = now
            if tm is None:
                if now - last_packet > OBSERVE_TIMEOUT:
                    self.board.check_alive()
                    raise BoardUnreachable(f"{self.board.url}: silent for {OBSERVE_TIMEOUT:g} s")
                if w.ack is None and now - sent_at > ACK_TIMEOUT:
                    raise BoardUnreachable(f"{self.board.url}: no acknowledgement of {d}")
                if w.detected is None and w.ack is not None and now - sent_at > OBSERVE_TIMEOUT:
                    return w  # the window ends with what came
                if detected_at is not None and now - detected_at > RECOVERY_TIMEOUT:
                    return w  # detected, never recovered
                continue
            last_packet = now
            v = tm.values
            if tm.name == "VERIFICATION" and (v["request_id"], v["request_seq"]) == (
                request_id,
                request_seq,
            ):
                if v["code"] == "BUSY":
                    return None
                if v["stage"].endswith("FAILURE"):
                    raise BoardError(f"injection refused: {v['stage']} {v['code']} {v['detail']}")
                continue
            if tm.name == "INJECTION" and v["request_seq"] == request_seq:
                w.t0, w.ack = tm.time, dict(v)
                if not (v["applied"] and v["old"] != v["new"]):
                    return w  # not injected: nothing to watch
                for earlier in pending:
                    if self._note(w, earlier, window):
                        return w
                pending.clear()
                continue
            if w.ack is None:
                pending.append(tm)
                continue
            if self._note(w, tm, window):
                return w
        raise BoardUnreachable(f"{self.board.url}: no outcome for {d} in time")

    def _note(self, w: _Watch, tm: Any, window: int) -> bool:
        """Take one packet after the injection into account; True when the outcome is known."""
        assert w.t0 is not None
        if tm.time < w.t0:
            return False
        if tm.name == "EVENT":
            from flight import events

            try:
                name = events.by_id(tm.values["event_id"]).name
            except KeyError:
                return False
            args = dict(pair.split("=", 1) for pair in tm.values["args"].split(" ") if "=" in pair)
            if args.get("partition", self.partition) != self.partition:
                return False
            w.events.append((tm.time, name, args))
            if name in (_HUNG, _CRASHED) and w.detected is None:
                w.detected = (tm.time, name)
            return False
        if tm.name != "RESULT" or tm.values["partition"] != self.partition:
            return False
        if w.detected is not None:
            if self.good(tm) and tm.time >= w.detected[0]:
                w.recovered = tm.time
                return True
            return False
        w.results.append((tm.time, tm.values))
        # a hang or crash shows in events; outputs alone decide only for the other sites
        return w.ack is not None and w.ack["site"] != "partition" and len(w.results) >= window

    def _exits(self) -> int:
        """Exits of the supervisor the init system saw (a local board; 0 for the others)."""
        return len(getattr(self.board, "exits", ()))

    def _supervisor_down(self, w: _Watch, exits_before: int) -> _Watch:
        """The supervisor exited (killed or hung by its upset: the software watchdog ends a
        hang with 124): the init system's restart, then the first right output of the new
        supervisor."""
        from hil.boards import START_TIMEOUT, BoardUnreachable

        record = self.board.exits[exits_before]
        if record.restarted_at is None:
            raise BoardUnreachable(f"{self.board.url}: supervisor {record.status}, not restarted")
        if w.ack is None:  # it died before it could acknowledge: the upset landed
            w.ack = {"applied": True, "old": b"", "new": b"?", "target": "supervisor (lost)"}
            w.t0 = record.exited_at
        kind = "HANG" if record.returncode == 124 else "CRASH"
        w.detected = (record.exited_at, f"supervisor {record.status} ({kind})")
        w.events.append((record.exited_at, "SUPERVISOR_EXIT", {"status": record.status}))
        self.ground.backlog.clear()
        for tm in self.packets(START_TIMEOUT):
            if tm is not None and tm.time > record.exited_at and self.good(tm):
                w.recovered = tm.time
                return w
            self.board.check_alive()
        raise BoardUnreachable(f"{self.board.url}: no right output after the restart")

    def _classify(self, d: Draw, arm: str, w: _Watch, duration: float) -> RunResult:
        ack = w.ack or {}
        old, new = bytes(ack.get("old", b"")), bytes(ack.get("new", b""))
        injected = bool(ack.get("applied")) and old != new
        hit = ack.get("target", "")
        partition_site = d.site == "partition"
        address = int(ack.get("address", 0))
        bit = -1 if partition_site else (address % 4) * 8 + int(ack.get("bit", 0))
        extra: dict[str, Any] = {
            "target": hit,
            "events": [name for _, name, _ in w.events],
            "results": len(w.results),
        }
        top1_changed = None
        corrected_words = sum(
            int(args.get("words", 0)) for _, name, args in w.events if name == "VOTE_CORRECTED"
        )
        detect_s = recover_s = None
        if not injected:
            outcome = Outcome.NOT_INJECTED
        elif w.detected is not None:
            when, what = w.detected
            outcome = Outcome.HANG if "HUNG" in what or "HANG" in what else Outcome.CRASH
            extra["detected_by"] = what
            assert w.t0 is not None
            detect_s = max(0.0, when - w.t0)
            recover_s = None if w.recovered is None else max(0.0, w.recovered - w.t0)
        elif partition_site:
            outcome = Outcome.HANG if d.fault == "hang" else Outcome.CRASH  # never detected
        else:
            outcome, top1_changed = self._judge(w)
            if outcome is Outcome.MASKED and any(n in _CORRECTIONS for _, n, _ in w.events):
                outcome = Outcome.CORRECTED
        if partition_site:
            extra["pid"] = address
        layer = _layer(d, hit)
        return RunResult(
            arm=arm,
            index=d.index,
            site=d.site,
            layer=layer,
            bit=bit,
            byte_offset=-1 if partition_site else address,
            fault=d.fault,
            injected=injected,
            old=old.hex(),
            new=new.hex(),
            outcome=outcome,
            top1_changed=top1_changed,
            corrected_words=corrected_words,
            detect_s=detect_s,
            recover_s=recover_s,
            duration_s=duration,
            worker=self.board.url,
            extra=extra,
        )

    def _judge(self, w: _Watch) -> tuple[Outcome, bool | None]:
        """SDC if a delivered output was wrong, DUE if one was withheld, else MASKED."""
        withheld = False
        for _, v in w.results:
            if v["status"] != "delivered":
                withheld = True
                continue
            golden = self.golden.get(v["sample"])
            if golden is not None and golden.tobytes() != bytes(v["output"]):
                return Outcome.SDC, int(v["top1"]) != int(np.argmax(golden))
        return (Outcome.DUE if withheld else Outcome.MASKED), None


def _layer(d: Draw, hit: str) -> str:
    """The stratum a run's upset belongs to: region, node, output, mapping or signal."""
    if d.site == "partition":
        return "SIGSTOP" if d.fault == "hang" else d.signal
    if d.site == "process-memory":
        mapping = hit.rsplit(" ", 1)[-1] if hit else ""
        return f"{d.process}:{mapping}"
    if d.site == "activations":
        return d.node
    return re.sub(r"\[\d+\]$", "", hit)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _partition_of(mission: Path, partition: str) -> tuple[Path, Path | None]:
    """(model, data set) of a partition of a mission file."""
    from flight import errors
    from flight.mission import load_mission

    for p in load_mission(mission).partitions:
        if p.name == partition:
            return p.model_path, p.dataset_path
    raise errors.ConfigError(f"{mission}: no partition {partition!r}")


def _dataset_of(inputs: Path | None) -> Path | None:
    """The data set a remote board cycles through: the spec's inputs (.npz with x), else the
    bundled demo set."""
    if inputs is not None:
        return Path(inputs)
    from importlib.resources import files

    return Path(str(files("flight").joinpath("data", "digits_test.npz")))
