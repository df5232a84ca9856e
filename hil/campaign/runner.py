"""Drive a campaign: golden run first, then injections in batches over any
:class:`concurrent.futures.Executor` (a local process pool, or a Dask cluster), each finished batch
committed to the store at once so that a killed harness loses nothing it has seen finish.

The level engine (``hil.campaign.model_level`` or ``board_level``) is a module with
``fault_space(spec)``, ``inference_seconds(spec, arm)``, ``Golden``, ``Batch(spec, arm, indices,
golden)`` and ``run_batch(batch) -> list[RunResult]``; the runner never looks inside a run, so
the same loop serves both levels (and the fake engine of the tests).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from flight.errors import ConfigError
from hil.campaign.outcome import Outcome, RunResult
from hil.campaign.spec import CampaignSpec, load_spec
from hil.campaign.stats import Interval, Strata
from hil.campaign.store import Store, campaign_meta

__all__ = ["ENGINES", "CampaignError", "DaskExecutor", "Progress", "run_campaign"]

#: Engine module per ``[target] level``; a name, so a level is imported only when it runs.
ENGINES: dict[str, str] = {
    "model": "hil.campaign.model_level",
    "board": "hil.campaign.board_level",
}

#: How many times a batch whose worker (or board) died is dispatched again before the runner
#: gives up on it for this session (its indices stay undone; ``--resume`` tries them again).
MAX_RETRIES = 3

STORE_NAME = "campaign.sqlite"


class CampaignError(ConfigError):
    """The campaign cannot start as asked (an existing store without ``--resume``, ...)."""


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------
@dataclass
class Snapshot:
    """What a progress line shows; also handed to a custom ``progress`` callable."""

    planned: dict[str, int]
    done: dict[str, int]
    counts: dict[str, dict[str, int]]
    sdc: dict[str, Interval]
    session_runs: int
    elapsed_s: float
    final: bool = False

    @property
    def rate(self) -> float:
        return self.session_runs / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        remaining = sum(max(0, self.planned[a] - self.done[a]) for a in self.planned)
        return remaining / self.rate if self.rate > 0 else None


def _clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return (
        f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
        if hours
        else f"{rest // 60:02d}:{rest % 60:02d}"
    )


def _rate_text(interval: Interval) -> str:
    if math.isnan(interval.estimate):
        return "-"
    return f"{interval.estimate:.2%} [{interval.low:.2%},{interval.high:.2%}]"


def format_snapshot(snap: Snapshot) -> str:
    arms = "  ".join(
        f"{arm} {snap.done[arm]}/{snap.planned[arm]} sdc {_rate_text(snap.sdc[arm])}"
        for arm in snap.planned
    )
    totals: dict[str, int] = {}
    for per_arm in snap.counts.values():
        for outcome, n in per_arm.items():
            totals[outcome] = totals.get(outcome, 0) + n
    mix = " ".join(f"{o.value} {totals[o.value]}" for o in Outcome if totals.get(o.value))
    return f"{arms} | {snap.rate:.0f} runs/s ETA {_clock_text(snap.eta_s)} | {mix}"


class Progress:
    """A progress line on a stream: rewritten in place on a terminal, otherwise a plain line
    every ``every_s`` seconds (logs and CI keep a readable history, not a flood of ``\\r``)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        every_s: float = 5.0,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = 0.2 if self.tty else every_s
        self.clock = clock
        self._last: float | None = None

    def __call__(self, snap: Snapshot) -> None:
        now = self.clock()
        if not snap.final and self._last is not None and now - self._last < self.every_s:
            return
        self._last = now
        line = format_snapshot(snap)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if snap.final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------
def _ignore_sigint() -> None:
    # A Ctrl-C reaches the whole foreground process group: the workers leave it to the harness,
    # which stops dispatching and collects what they finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_context() -> multiprocessing.context.BaseContext:
    # Never fork: when the pool starts, the harness holds an open SQLite connection (WAL) and
    # has run numba (the golden run); a forked child would inherit both, and numba's threading
    # layers are not fork-safe should a kernel ever go parallel. A forkserver child starts from
    # a clean process that has imported neither.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def process_pool(workers: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=_pool_context(), initializer=_ignore_sigint
    )


class DaskExecutor(cf.Executor):
    """A Dask client as an executor. Not ``client.get_executor()``: when a worker dies holding
    a finished result, its future-to-future relay raises inside the event loop and the returned
    future never resolves (a hang). Here each future is settled from a thread that blocks on
    the Dask future's own ``result()``, which re-gathers or raises."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        out: cf.Future[Any] = cf.Future()
        out.set_running_or_notify_cancel()
        remote = self._client.submit(fn, *args, pure=False, **kwargs)

        def settle(done: Any) -> None:
            try:
                out.set_result(done.result())
            except BaseException as exc:  # the run's own error, or the worker's loss
                out.set_exception(exc)

        remote.add_done_callback(settle)
        out.remote = remote  # type: ignore[attr-defined]  # keeps it alive (and cancellable)
        return out


def _lost_worker_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the worker or its board went away", not "the run raised"."""
    errors: list[type[BaseException]] = [cf.BrokenExecutor, ConnectionError, EOFError]
    with contextlib.suppress(ImportError):
        from distributed.scheduler import KilledWorker

        errors.append(KilledWorker)
    with contextlib.suppress(ImportError):
        from distributed.comm.core import CommClosedError

        errors.append(CommClosedError)
    with contextlib.suppress(ImportError):
        from flight.errors import LinkError

        errors.append(LinkError)
    with contextlib.suppress(ImportError):  # a board that stopped answering (board level)
        from hil.boards import BoardUnreachable

        errors.append(BoardUnreachable)
    return tuple(errors)


# --------------------------------------------------------------------------------------------
# The campaign
# --------------------------------------------------------------------------------------------
@dataclass
class _Task:
    arm: str
    indices: tuple[int, ...]
    failures: int = 0  # deaths of its worker while it ran alone (so certainly its own)
    suspect: bool = False  # lost with a broken pool, killer or bystander: run it alone next

    @property
    def solo(self) -> bool:
        return self.suspect or self.failures > 0


@dataclass
class _State:
    planned: dict[str, int]
    done: dict[str, int]
    counts: dict[str, dict[str, int]]
    strata: Strata
    session_runs: int = 0
    retries: int = 0
    abandoned: dict[str, list[int]] = field(default_factory=dict)
    early_stopped: set[str] = field(default_factory=set)
    stop_signal: int | None = None


def _engine_module(spec: CampaignSpec, engine: ModuleType | str | None) -> ModuleType:
    if isinstance(engine, ModuleType):
        return engine
    return importlib.import_module(engine or ENGINES[spec.target.level])


def _open_store(path: Path, meta: dict[str, str], resume: bool) -> Store:
    if not path.exists():
        return Store.create(path, meta)
    if not resume:
        raise CampaignError(f"{path} exists: pass --resume to continue that campaign")
    store = Store.open(path)
    store.check_resume(meta)
    return store


def _batches(arm: str, todo: Iterable[int], size: int) -> Iterator[_Task]:
    chunk: list[int] = []
    for index in todo:
        chunk.append(index)
        if len(chunk) == size:
            yield _Task(arm, tuple(chunk))
            chunk = []
    if chunk:
        yield _Task(arm, tuple(chunk))


def _interleave(per_arm: list[list[_Task]]) -> deque[_Task]:
    """Round-robin over the arms, so their live intervals grow together (paired comparison)."""
    queue: deque[_Task] = deque()
    longest = max((len(tasks) for tasks in per_arm), default=0)
    for i in range(longest):
        queue.extend(tasks[i] for tasks in per_arm if i < len(tasks))
    return queue


def _worker_count(executor: cf.Executor, default: int) -> int:
    client = getattr(executor, "_client", None)  # distributed.ClientExecutor
    if client is not None:
        with contextlib.suppress(Exception):
            return max(1, len(client.scheduler_info()["workers"]))
    return max(1, int(getattr(executor, "_max_workers", default)))


def _check_batch(task: _Task, results: list[RunResult]) -> None:
    got = sorted((r.arm, r.index) for r in results)
    if got != sorted((task.arm, i) for i in task.indices):
        raise RuntimeError(f"engine returned runs {got[:4]}... for batch {task.arm}:{task.indices}")


@contextlib.contextmanager
def _stop_on_signals(state: _State) -> Iterator[None]:
    """SIGINT / SIGTERM: stop dispatching and let the running batches finish and commit; a second
    signal gives up on them (they stay undone and a resume runs them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if state.stop_signal is not None:
            raise KeyboardInterrupt
        state.stop_signal = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run_campaign(
    spec: CampaignSpec | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    executor: cf.Executor | None = None,
    workers: int | None = None,
    dask: str | None = None,
    resume: bool = False,
    progress: Callable[[Snapshot], None] | None = None,
    engine: ModuleType | str | None = None,
    max_retries: int = MAX_RETRIES,
) -> dict[str, Any]:
    """Run (or resume) the campaign of ``spec`` into ``out_dir/campaign.sqlite``.

    ``executor`` is used as given and not shut down; otherwise a Dask client's executor when
    ``dask`` is a scheduler address, else a process pool of ``workers`` (default: one per
    spawned board at board level, where a worker owns a board; else 1). Returns a summary:
    per arm planned / done / counts / SDC interval / early stop, plus retries, batches given up
    and the signal that stopped the run, if any."""
    if not isinstance(spec, CampaignSpec):
        spec = load_spec(spec)
    if workers is None:
        spawned = spec.target.level == "board" and spec.target.board == "spawn"
        workers = spec.target.boards if spawned else 1
    if workers < 1:
        raise CampaignError(f"workers must be at least 1, not {workers}")
    spec.check_files()
    module = _engine_module(spec, engine)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = _open_store(out / STORE_NAME, campaign_meta(spec), resume)
    try:
        return _run(spec, module, store, executor, workers, dask, progress, max_retries)
    finally:
        store.close()


def _run(
    spec: CampaignSpec,
    module: ModuleType,
    store: Store,
    executor: cf.Executor | None,
    workers: int,
    dask: str | None,
    progress: Callable[[Snapshot], None] | None,
    max_retries: int,
) -> dict[str, Any]:
    started = time.monotonic()
    report = progress if progress is not None else Progress()
    golden = _golden(module, spec, store)
    population = module.fault_space(spec)
    strata = Strata(spec.confidence)
    strata.add(store.results())
    counts = store.counts()
    planned = {}
    per_arm: list[list[_Task]] = []
    for arm in spec.arms:
        planned[arm.name] = spec.runs_for(arm.name, population)
        _record_arm(store, module, spec, arm, planned[arm.name])
        done = store.done(arm.name)
        todo = (i for i in range(planned[arm.name]) if i not in done)
        per_arm.append(list(_batches(arm.name, todo, spec.batch)))
    state = _State(
        planned=planned,
        done={a: len(store.done(a)) for a in planned},
        counts={a: {str(o): n for o, n in counts.get(a, {}).items() if n} for a in planned},
        strata=strata,
    )
    queue = _interleave(per_arm)

    def snapshot(final: bool = False) -> Snapshot:
        sdc = {arm: state.strata.interval("arm", arm) for arm in planned}
        return Snapshot(
            planned, state.done, state.counts, sdc, state.session_runs,
            time.monotonic() - dispatching, final,
        )  # fmt: skip

    owned: list[Callable[[bool], None]] = []  # close(wait) of what this call started

    def new_executor() -> cf.Executor:
        if dask:
            from distributed import Client

            client = Client(dask)
            owned.append(lambda wait: client.close())
            return DaskExecutor(client)
        pool = process_pool(workers)
        owned.append(lambda wait: pool.shutdown(wait=wait, cancel_futures=True))
        return pool

    pool = executor if executor is not None else new_executor()
    lost = _lost_worker_errors() + tuple(getattr(module, "LOST_ERRORS", ()))
    inflight: dict[cf.Future[list[RunResult]], _Task] = {}
    dispatching = time.monotonic()  # the rate counts injections, not the golden run
    try:
        with _stop_on_signals(state):
            depth = 2 * _worker_count(pool, workers)
            solo = False  # a suspect batch runs alone, so that its death is its own
            while True:
                while state.stop_signal is None and queue and not solo and len(inflight) < depth:
                    if queue[0].arm in state.early_stopped:
                        queue.popleft()
                        continue
                    if queue[0].solo and inflight:
                        break
                    task = queue.popleft()
                    solo = task.solo
                    batch = module.Batch(spec, task.arm, task.indices, golden)
                    inflight[pool.submit(module.run_batch, batch)] = task
                if not inflight:
                    break
                finished, _ = cf.wait(inflight, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                broken = False
                for fut in finished:
                    task = inflight.pop(fut)
                    try:
                        results = fut.result()
                    except lost as exc:
                        pool_broke = isinstance(exc, cf.BrokenExecutor)
                        broken |= pool_broke
                        own = solo or not pool_broke  # alone, or a Dask task that killed workers
                        _requeue(state, queue, task, max_retries, own=own)
                        continue
                    except cf.CancelledError:
                        continue
                    _commit(store, state, task, results)
                if not inflight:
                    solo = False
                if broken and executor is None and not dask:
                    # A dead process breaks the whole pool: every batch in it is lost with it.
                    for task in inflight.values():
                        _requeue(state, queue, task, max_retries, own=False)
                    inflight.clear()
                    solo = False
                    owned.pop()(True)
                    pool = new_executor()
                _early_stop(spec, state)
                report(snapshot())
    except BaseException:  # a second signal, or a bug: do not wait for running batches
        for fut in inflight:
            fut.cancel()
        for close in owned:
            close(False)
        raise
    for close in owned:
        close(True)
    report(snapshot(final=True))
    return _summary(store, state, snapshot(final=True), time.monotonic() - started)


def _golden(module: ModuleType, spec: CampaignSpec, store: Store) -> Any:
    """The fault-free outputs, computed here (never by the target under test) before any
    injection; a resumed campaign must find the ones it started with."""
    golden = module.Golden.compute(spec)
    rows = [(int(i), bytes(out), top1) for i, out, top1 in golden.rows()]
    stored = store.golden()
    if not stored:
        store.put_golden(rows)
    elif stored != rows:
        raise CampaignError(
            f"{store.path}: cannot resume: the golden outputs differ from the stored ones "
            "(were the inputs changed?)"
        )
    return golden


def _record_arm(
    store: Store, module: ModuleType, spec: CampaignSpec, arm: Any, planned: int
) -> None:
    known = store.arms().get(arm.name)
    if known is not None and known.inference_s is not None:
        inference_s = None  # measured when the campaign started: keep that figure
    else:
        inference_s = module.inference_seconds(spec, arm)
    store.set_arm(arm.name, arm.redundancy, planned, inference_s)


def _requeue(state: _State, queue: deque[_Task], task: _Task, max_retries: int, own: bool) -> None:
    """Put a lost batch back at the head of the queue; a batch that killed its worker more than
    ``max_retries`` times is given up for this session (its runs stay undone, never invented)."""
    failures = task.failures + own
    if failures > max_retries:
        state.abandoned.setdefault(task.arm, []).extend(task.indices)
        return
    state.retries += 1
    queue.appendleft(_Task(task.arm, task.indices, failures, suspect=not own))


def _commit(store: Store, state: _State, task: _Task, results: list[RunResult]) -> None:
    _check_batch(task, results)
    store.add(results)
    state.strata.add(results)
    for result in results:
        per_arm = state.counts[result.arm]
        per_arm[result.outcome.value] = per_arm.get(result.outcome.value, 0) + 1
    state.done[task.arm] += len(results)
    state.session_runs += len(results)


def _early_stop(spec: CampaignSpec, state: _State) -> None:
    if not spec.early_stop:
        return
    for arm in state.planned:
        if arm not in state.early_stopped and state.strata.met(spec.margin, arm=arm):
            state.early_stopped.add(arm)


def _summary(store: Store, state: _State, snap: Snapshot, elapsed_s: float) -> dict[str, Any]:
    arms = {}
    for arm, planned in state.planned.items():
        arms[arm] = {
            "planned": planned,
            "done": state.done[arm],
            "counts": dict(state.counts[arm]),
            "sdc_rate": snap.sdc[arm].to_json(),
            "early_stopped": arm in state.early_stopped,
            "abandoned": sorted(state.abandoned.get(arm, [])),
        }
    stopped = signal.Signals(state.stop_signal).name if state.stop_signal else None
    return {
        "store": str(store.path),
        "arms": arms,
        "runs_this_session": state.session_runs,
        "retries": state.retries,
        "stopped_by": stopped,
        "complete": all(
            (arms[a]["done"] >= arms[a]["planned"] or arms[a]["early_stopped"])
            and not arms[a]["abandoned"]
            for a in arms
        ),
        "elapsed_s": elapsed_s,
    }
