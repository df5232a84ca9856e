"""Model-level fault injection: in process, no board, thousands of injections per second.

A campaign at this level runs the spec's model under each arm's redundancy mode (TMR in time,
DWC or simplex, as :mod:`flight.redundancy` runs it on a board) and, per run, injects one fault
drawn from ``(seed, index)`` into one replica's weight copy, an activation at a named node, a
replica's output buffer between compute and the decision, or a CRC-table copy of the weights'
protected region. Each injection goes through :mod:`flight.inject`, so its record carries the
bytes read back before and after (unchanged: NOT_INJECTED, never MASKED), and is undone after
its run: runs are independent, and a batch's results do not depend on what ran before it in
the same process.

* :class:`Golden`: the fault-free outputs and top-1 classes, computed once by the harness with a
  one-copy model (replicas are bit-identical, so one golden serves every arm).
* :func:`draw`: the fault of run ``index``, from ``np.random.default_rng([seed, index])`` only
  and the same for every arm (arms get paired faults; only the replica is taken modulo the
  arm's replica count).
* :func:`run_batch`: a picklable :class:`Batch` in, one :class:`RunResult` per index out; the
  loaded model and runner are cached per process and (model, arm).
* :func:`fault_space` (the population N of the sample-size formula) and
  :func:`inference_seconds` (fault-free time per inference, for the overhead figure).

A :class:`RunResult` from here names the site's buffer in ``layer`` (weights: the executable
tensor, e.g. ``conv2.weight@packed1``; activations: the tensor a node writes, e.g.
``relu2.out``; outputs: the voted output; crc-tables: the region), ``byte_offset`` is the first
byte of ``old``/``new`` inside that site's buffer (weights: the replica's whole weight copy;
activations and outputs: the tensor; crc-tables: the table copy), ``bit`` the lowest flipped
bit inside its little-endian 32-bit word, and ``extra`` the replica (or table copy), the input,
the word inside ``layer`` and what the decision did (re-execution, words corrected at vote
points, the scrub's findings).

Classification (hil-spec): read-back unchanged -> NOT_INJECTED; output withheld (no majority,
split vote, an unsafe vote point, DWC mismatch twice) -> DUE; delivered and bitwise equal to
golden -> CORRECTED if the voter outvoted a word, DWC re-executed, a vote point corrected a word
or the scrub repaired something, else MASKED; delivered and different -> SDC. An upset is
transient (a DWC re-execution does not see it again, except in weights, which stay wrong until
undone); a stuck-at is permanent for the run (re-applied on re-execution).
"""

from __future__ import annotations

import bisect
import itertools
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flight import inject
from flight.memory import CRC_TABLE_COPIES
from flight.model.executor import ModelError
from flight.modes import REPLICAS
from flight.redundancy import RedundantResult, VotePoints, decide
from flight.vote import prepare
from hil.campaign.outcome import Outcome, RunResult, classify
from hil.campaign.spec import ArmSpec, CampaignSpec, SpecError

__all__ = [
    "FAULTS",
    "SITES",
    "Batch",
    "Draw",
    "Golden",
    "clear_cache",
    "compute_golden",
    "draw",
    "fault_space",
    "inference_seconds",
    "load_inputs",
    "run_batch",
]

#: The sites this level reaches (the others need a board).
SITES: tuple[str, ...] = ("weights", "activations", "outputs", "crc-tables")
#: The fault models this level injects (hangs and crashes need a process).
FAULTS: tuple[str, ...] = ("seu", "mbu", "stuck-at")

# Replica draws are taken in 0..5 and reduced modulo the arm's replica count (1, 2 or 3): each
# divides 6, so the replica is uniform in every arm while the draw itself stays arm-independent.
_REPLICA_DRAWS = 6
_WORD_BITS = 32
_RANDOM_INPUTS = 64  # seeded random inputs when there is no data set that fits the model

if sys.byteorder != "little":  # pragma: no cover - every supported board is little-endian
    raise ImportError("flight.inject's bit numbering (bit b of word w) assumes little-endian")


# --- golden run and inputs ---------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Golden:
    """Fault-free outputs (``outputs[i]`` for input ``i``) and their top-1 classes.

    Small (a few KB for the demo model), so it travels inside every batch and workers never
    recompute it; the harness computes it outside anything under test."""

    outputs: np.ndarray
    top1: np.ndarray

    def __post_init__(self) -> None:
        if len(self.outputs) != len(self.top1) or len(self.outputs) == 0:
            raise ValueError("Golden needs one output and one top-1 class per input (>= 1)")

    def __len__(self) -> int:
        return len(self.outputs)

    @classmethod
    def compute(cls, spec: CampaignSpec) -> Golden:
        """Run every input once through a one-copy model of the spec's target."""
        model = _golden_model(spec)
        inputs = load_inputs(spec)
        outputs = np.stack([model.run(x) for x in inputs])
        top1 = np.array([int(np.argmax(o)) for o in outputs], dtype=np.int64)
        return cls(outputs, top1)

    def rows(self) -> list[tuple[int, bytes, int]]:
        """(input, output bytes, top-1) per input: the store's ``golden`` table."""
        return [(i, self.outputs[i].tobytes(), int(self.top1[i])) for i in range(len(self))]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, bytes, int | None]], shape: tuple) -> Golden:
        """Back from :meth:`rows` (a resumed campaign's stored golden); ``shape`` is one
        output's shape."""
        rows = sorted(rows)
        if [r[0] for r in rows] != list(range(len(rows))):
            raise ValueError("golden rows must be inputs 0..N-1, each once")
        outputs = np.stack([np.frombuffer(r[1], dtype=np.float32).reshape(shape) for r in rows])
        top1 = np.array([-1 if r[2] is None else r[2] for r in rows], dtype=np.int64)
        return cls(outputs, top1)


def compute_golden(spec: CampaignSpec) -> Golden:
    """The golden run of a spec (:meth:`Golden.compute`)."""
    return Golden.compute(spec)


def _model_path(spec: CampaignSpec) -> Path:
    """The spec's model file; first forgets this process's cache if the model or inputs file
    changed since it was loaded (a long-lived Dask worker serving the next campaign)."""
    for path in (spec.target.model, spec.target.inputs):
        if path is not None:
            try:
                st = os.stat(path)
            except OSError:
                continue  # reported where the file is read
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            known = _STAMPS.setdefault(str(path), stamp)
            if known != stamp:
                clear_cache()
                _STAMPS[str(path)] = stamp
    return Path(spec.target.model)


def _data_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("flight").joinpath("data")))


def load_inputs(spec: CampaignSpec) -> np.ndarray:
    """The inputs a campaign cycles through, shaped ``(N, *model input shape)``, float32.

    The spec's ``inputs`` (.npy, or .npz with ``x``); else the data set the model file's
    metadata names, if that is a .npy/.npz file beside the model or in flight/data; else
    ``flight/data/digits_test.npz`` when its samples fit the model; else
    ``_RANDOM_INPUTS`` random inputs in [0, 1) drawn from the spec's seed."""
    key = (str(_model_path(spec)), str(spec.target.inputs), spec.seed)
    cached = _INPUTS.get(key)
    if cached is None:
        cached = _INPUTS[key] = _load_inputs(spec)
    return cached


def _load_inputs(spec: CampaignSpec) -> np.ndarray:
    model = _golden_model(spec)
    shape = tuple(model.shapes[model.input_names[0]])
    if spec.target.inputs is not None:
        path = Path(spec.target.inputs)
        x = _read_array(path)
        fitted = _fit(x, shape)
        if fitted is None:
            raise SpecError(
                f"{spec.source}: [target] inputs: {path} holds samples of shape {x.shape[1:]}, "
                f"the model takes {shape}"
            )
        return fitted
    named = str(model.graph.metadata.get("dataset", ""))
    candidates = []
    if named.endswith((".npy", ".npz")):
        candidates += [_model_path(spec).parent / named, _data_dir() / named]
    candidates.append(_data_dir() / "digits_test.npz")
    for candidate in candidates:
        if candidate.is_file():
            fitted = _fit(_read_array(candidate), shape)
            if fitted is not None:
                return fitted
    rng = np.random.default_rng([spec.seed, 0x1A9075])
    return rng.random((_RANDOM_INPUTS, *shape), dtype=np.float32)


def _read_array(path: Path) -> np.ndarray:
    """The samples in a .npy file, or the ``x`` array of a .npz file."""
    try:
        data = np.load(path)  # allow_pickle stays False: an inputs file runs no code
        if isinstance(data, np.ndarray):
            return data
        with data:
            x = np.asarray(data["x"]) if "x" in data.files else None
    except (OSError, ValueError) as exc:
        raise SpecError(f"[target] inputs: cannot read {path} ({exc})") from exc
    if x is None:
        raise SpecError(f"[target] inputs: {path} has no array named 'x'")
    return x


def _fit(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``x`` as ``(N, *shape)`` float32 when each of its samples has the model input's size."""
    size = int(np.prod(shape, dtype=np.int64))
    if x.ndim < 1 or len(x) == 0 or x[0].size != size:
        return None
    return np.ascontiguousarray(x.reshape(len(x), *shape), dtype=np.float32)


# --- sites and draws ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layers:
    """One site's injectable tensors: names, first 32-bit word in the site's buffer, words."""

    names: tuple[str, ...]
    starts: tuple[int, ...]
    words: tuple[int, ...]
    cumulative: tuple[int, ...] = field(repr=False)  # words before each layer, and the total

    @classmethod
    def of(cls, layers: Iterable[tuple[str, int, int]]) -> _Layers:
        items = [item for item in layers if item[2] > 0]
        names, starts, words = zip(*items, strict=True) if items else ((), (), ())
        cumulative = (0, *itertools.accumulate(int(w) for w in words))
        return cls(tuple(names), tuple(int(s) for s in starts), tuple(words), cumulative)

    @property
    def total_words(self) -> int:
        return self.cumulative[-1]

    def locate(self, word: int) -> tuple[int, int]:
        """(layer index, word inside that layer) of the ``word``-th word of the site."""
        layer = bisect.bisect_right(self.cumulative, word) - 1
        return layer, word - self.cumulative[layer]


def _site_layers(model: Any) -> dict[str, _Layers]:
    """What each site holds, in a fixed order (the model file's), for one replica.

    Weights: the executable tensors inside the weight image (the alignment padding between them
    is read by no kernel, so it is not part of the fault space); activations: every activation
    but the graph inputs; outputs: the first output (the one voted); crc-tables: the region's
    table, one word per block."""
    region = model.weights
    weights = [
        (name, offset, _words(shape)) for name, (offset, shape) in model.layout.offsets.items()
    ]
    inputs = set(model.input_names)
    activations = [
        (life.name, 0, life.nbytes // 4) for life in model.lives if life.name not in inputs
    ]
    output = model.output_names[0]
    return {
        "weights": _Layers.of(weights),
        "activations": _Layers.of(activations),
        "outputs": _Layers.of([(output, 0, _words(model.shapes[output]))]),
        "crc-tables": _Layers.of([(region.name, 0, region.nblocks)]),
    }


def _words(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


@dataclass(frozen=True)
class Draw:
    """The fault of one run, the same in every arm.

    ``word`` counts 32-bit words inside ``layer``; ``bit`` is the (lowest) flipped bit inside
    that word; ``replica_draw`` is reduced modulo the arm's replicas (:meth:`replica`), or
    modulo the three CRC-table copies; ``stuck`` is the stuck-at value (drawn for every fault
    model, so the other draws do not depend on which one the spec names)."""

    index: int
    site: str
    layer: str
    word: int
    bit: int
    replica_draw: int
    input: int
    stuck: int
    fault: str
    cluster: int  # bits flipped by an mbu (1 otherwise)

    def replica(self, replicas: int) -> int:
        """The replica (or, for crc-tables, the table copy) hit in an arm with ``replicas``."""
        if self.site == "crc-tables":
            return self.replica_draw % CRC_TABLE_COPIES
        return self.replica_draw % replicas


def draw(spec: CampaignSpec, index: int) -> Draw:
    """Run ``index``'s fault, from ``np.random.default_rng([seed, index])`` alone.

    One call draws five uniforms in [0, 1), used in this order: the site (uniform over the
    spec's sites), a 32-bit word uniform over the site's words (so each tensor is chosen in
    proportion to its size), the bit inside the word (where an mbu cluster fits), the replica,
    the stuck-at value. The input is ``index % len(inputs)``."""
    return _space(spec).draw(index)


@dataclass(frozen=True)
class _Space:
    """What a spec's draws range over (computed once per process and spec)."""

    seed: int
    sites: tuple[str, ...]
    fault: str
    cluster: int
    layers: dict[str, _Layers]
    inputs: int

    def draw(self, index: int) -> Draw:
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
            raise ValueError(f"a run index is an integer >= 0, not {index!r}")
        index = int(index)
        rng = np.random.default_rng([self.seed, index])
        u_site, u_word, u_bit, u_replica, u_stuck = rng.random(5).tolist()
        site = self.sites[int(u_site * len(self.sites))]
        table = self.layers[site]
        layer, word = table.locate(int(u_word * table.total_words))
        return Draw(
            index=index,
            site=site,
            layer=table.names[layer],
            word=word,
            bit=int(u_bit * (_WORD_BITS - self.cluster + 1)),
            replica_draw=int(u_replica * _REPLICA_DRAWS),
            input=index % self.inputs,
            stuck=int(u_stuck * 2),
            fault=self.fault,
            cluster=self.cluster,
        )


def _space(spec: CampaignSpec) -> _Space:
    _model_path(spec)
    key = (spec.target, spec.fault, spec.seed)
    space = _SPACES.get(key)
    if space is None:
        sites, fault, cluster = _fault_of(spec)
        layers = _layers_of(spec)
        empty = [site for site in sites if layers[site].total_words == 0]
        if empty:
            raise SpecError(f"{spec.source}: [fault] sites: {empty[0]!r} is empty in this model")
        space = _SPACES[key] = _Space(
            spec.seed, sites, fault, cluster, layers, len(load_inputs(spec))
        )
    return space


def _fault_of(spec: CampaignSpec) -> tuple[tuple[str, ...], str, int]:
    """(sites, fault model, cluster width), refusing what this level cannot inject."""
    fault = spec.fault.model
    if fault not in FAULTS:
        raise SpecError(
            f"fault.model {fault!r} needs a board; model-level campaigns inject {', '.join(FAULTS)}"
        )
    sites = tuple(spec.fault.sites)
    if not sites:
        raise SpecError("fault.sites is empty")
    other = [s for s in sites if s not in SITES]
    if other:
        raise SpecError(
            f"fault.sites {other} need a board; model-level campaigns reach {', '.join(SITES)}"
        )
    cluster = int(spec.fault.mbu_bits) if fault == "mbu" else 1
    return sites, fault, cluster


def fault_space(spec: CampaignSpec) -> int:
    """Bits in the spec's sites for one replica: the population N of the sample size."""
    space = _space(spec)
    return sum(_WORD_BITS * space.layers[site].total_words for site in space.sites)


def _make_fault(d: Draw, word_in_buffer: int) -> inject.Fault:
    bit = _WORD_BITS * word_in_buffer + d.bit
    if d.fault == "seu":
        return inject.SingleBitUpset(bit=bit)
    if d.fault == "mbu":
        return inject.MultiBitUpset(k=d.cluster, window=4, bit=bit)
    return inject.StuckAt(d.stuck, bit=bit)


# --- the per-process cache ---------------------------------------------------------------------
_MODELS: dict[tuple[str, int, str], Any] = {}
_RUNNERS: dict[tuple[str, str, tuple[str, ...]], _Runner] = {}
_LAYERS: dict[str, dict[str, _Layers]] = {}
_INPUTS: dict[tuple[Any, ...], np.ndarray] = {}
_SPACES: dict[tuple[Any, ...], _Space] = {}
_STAMPS: dict[str, tuple[int, int, int]] = {}  # files the caches were built from


def clear_cache() -> None:
    """Forget every loaded model, runner and input set of this process."""
    for cache in (_MODELS, _RUNNERS, _LAYERS, _INPUTS, _SPACES, _STAMPS):
        cache.clear()


def _load_model(path: Path, copies: int, role: str) -> Any:
    """A model per file, copy count and role: the golden model ("golden") is never the one a
    run injects into ("arm"), so not even a failed undo could reach the reference."""
    key = (str(path), copies, role)
    model = _MODELS.get(key)
    if model is None:
        from flight.model import load

        model = _MODELS[key] = load(path, copies=copies)
    return model


def _golden_model(spec: CampaignSpec) -> Any:
    return _load_model(_model_path(spec), 1, "golden")


def _layers_of(spec: CampaignSpec) -> dict[str, _Layers]:
    path = str(_model_path(spec))
    layers = _LAYERS.get(path)
    if layers is None:
        layers = _LAYERS[path] = _site_layers(_golden_model(spec))
    return layers


def _arm(spec: CampaignSpec, arm: str | ArmSpec) -> ArmSpec:
    return spec.arm(arm if isinstance(arm, str) else arm.name)


def _runner(spec: CampaignSpec, arm: str | ArmSpec) -> _Runner:
    arm = _arm(spec, arm)
    path = _model_path(spec)
    key = (str(path), arm.redundancy, tuple(arm.vote_points))
    runner = _RUNNERS.get(key)
    if runner is None:
        model = _load_model(path, REPLICAS[arm.redundancy], "arm")
        try:
            runner = _Runner(model, arm.redundancy, tuple(arm.vote_points))
        except ModelError as exc:  # a vote point the model does not have
            raise SpecError(f"{spec.source}: [[arm]] {arm.name!r} vote_points: {exc}") from None
        _RUNNERS[key] = runner
    return runner


class _Runner:
    """A model's replicas under one redundancy mode, computed and decided in two steps so an
    output can be hit in between (what the supervisor does across its workers)."""

    def __init__(self, model: Any, mode: str, vote_points: tuple[str, ...]) -> None:
        self.model = model
        self.mode = mode
        self.replicas = [model.replica(i) for i in range(REPLICAS[mode])]
        name = model.output_names[0]
        self.outputs = [r.buffer(name) for r in self.replicas]
        self.vote = (
            prepare(*self.outputs, np.empty_like(self.outputs[0])) if mode == "tmr" else None
        )
        if vote_points and mode != "tmr":
            raise SpecError(f"vote_points need redundancy 'tmr', not {mode!r}")
        self.staged = VotePoints(self.replicas, list(vote_points)) if vote_points else None

    def compute(self, x: np.ndarray, hooks: dict[int, dict[str, Callable]] | None) -> None:
        hooks = hooks or {}
        if self.staged is not None:
            self.staged.run(x, hooks)
            return
        for index, replica in enumerate(self.replicas):
            replica.run(x, after=hooks.get(index))

    def infer(
        self,
        x: np.ndarray,
        hooks: dict[int, dict[str, Callable]] | None = None,
        between: Callable[[], None] | None = None,
        permanent: bool = False,
    ) -> tuple[RedundantResult, int, bool]:
        """One redundant inference: (decision, words corrected at vote points, unsafe vote
        point). ``between()`` runs after compute and before the decision. A DWC re-execution
        runs without ``hooks`` and ``between`` (an upset is transient) unless the fault is
        ``permanent`` (a stuck-at cell is stuck the second time too)."""
        staged = self.staged
        before = (staged.corrected, staged.unsafe) if staged is not None else (0, 0)
        self.compute(x, hooks)
        if between is not None:
            between()

        def reexecute() -> bool:
            self.compute(x, hooks if permanent else None)
            if permanent and between is not None:
                between()
            return True

        result = decide(self.mode, self.outputs, self.vote, reexecute)
        if staged is None:
            return result, 0, False
        return result, staged.corrected - before[0], staged.unsafe > before[1]


# --- running -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    """Some runs of one arm: what an executor task gets (picklable, small)."""

    spec: CampaignSpec
    arm: str
    indices: tuple[int, ...]
    golden: Golden


def run_batch(batch: Batch) -> list[RunResult]:
    """Inject, run, classify and undo each of ``batch.indices``, in order."""
    spec = batch.spec
    runner = _runner(spec, batch.arm)
    inputs = load_inputs(spec)
    if len(batch.golden) != len(inputs):
        raise ValueError(
            f"golden has {len(batch.golden)} outputs for {len(inputs)} inputs: not this spec's"
        )
    space = _space(spec)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    # All draws first: interleaving the generators' set-up with the inferences costs twice as
    # much (caches), and a bad index is refused before anything is injected.
    draws = [space.draw(i) for i in batch.indices]
    return [
        _run_one(batch.arm, runner, space.layers, inputs, batch.golden, d, worker) for d in draws
    ]


def _run_one(
    arm: str,
    runner: _Runner,
    layers: dict[str, _Layers],
    inputs: np.ndarray,
    golden: Golden,
    d: Draw,
    worker: str,
) -> RunResult:
    started = time.perf_counter()
    site_layers = layers[d.site]
    position = site_layers.names.index(d.layer)
    word = site_layers.starts[position] + d.word
    fault = _make_fault(d, word)
    permanent = d.fault == "stuck-at"
    replica = d.replica(len(runner.replicas))
    region = runner.model.weights
    records: list[inject.Injection] = []
    hooks: dict[int, dict[str, Callable]] | None = None
    between: Callable[[], None] | None = None
    buffer: np.ndarray | None = None  # a memory the run does not rewrite: undone afterwards

    if d.site == "weights":
        buffer = region.raw(replica)
        records.append(inject.apply(fault, buffer, site=d.layer))
    elif d.site == "crc-tables":
        buffer = region.crc_table(replica)
        records.append(inject.apply(fault, buffer, site=d.layer))
    elif d.site == "activations":

        def hook(out: np.ndarray) -> None:
            records.append(inject.apply(fault, out, site=d.layer))

        hooks = {replica: {d.layer: hook}}
    else:  # outputs

        def between() -> None:
            records.append(inject.apply(fault, runner.outputs[replica], site=d.layer))

    scrub = None
    try:
        x = inputs[d.input]
        result, vp_corrected, unsafe = runner.infer(x, hooks, between, permanent)
        if d.site == "crc-tables":
            scrub = region.repair()  # a full scrub pass over the region
        output = result.output
        delivered = result.delivered and not unsafe
        matches = delivered and output.tobytes() == golden.outputs[d.input].tobytes()
        top1 = int(np.argmax(output)) if delivered else -1
    finally:
        if buffer is not None and records:
            inject.undo(records[0], buffer)
    if not records:
        raise RuntimeError(f"run {d.index}: the {d.site} injection at {d.layer} never happened")
    record = records[0]
    corrected = (
        result.corrected > 0
        or vp_corrected > 0
        or (result.reexecuted and result.delivered)
        or (scrub is not None and (scrub.repaired > 0 or scrub.table_repaired > 0))
    )
    outcome = classify(
        injected=record.changed, delivered=delivered, matches_golden=matches, corrected=corrected
    )
    extra: dict[str, Any] = {"replica": replica, "input": d.input, "word": d.word}
    if result.reexecuted:
        extra["reexecuted"] = True
        extra["mismatches"] = result.mismatches  # DWC: words that differed the first time
    if result.no_majority:
        extra["no_majority"] = result.no_majority
    if result.split:
        extra["split"] = True
    if vp_corrected:
        extra["vote_point_words"] = vp_corrected
    if unsafe:
        extra["unsafe_vote_point"] = True
    if scrub is not None:
        extra["scrub"] = {"errors": scrub.errors, "table_repaired": scrub.table_repaired}
    return RunResult(
        arm=arm,
        index=d.index,
        site=d.site,
        layer=d.layer,
        bit=d.bit,
        byte_offset=record.byte_offset,
        fault=d.fault,
        injected=record.changed,
        old=record.old.hex(),
        new=record.new.hex(),
        outcome=outcome,
        top1_changed=(top1 != int(golden.top1[d.input])) if outcome is Outcome.SDC else None,
        corrected_words=result.corrected + vp_corrected,
        duration_s=time.perf_counter() - started,
        worker=worker,
        extra=extra,
    )


def inference_seconds(
    spec: CampaignSpec,
    arm: str | ArmSpec,
    runs: int = 200,
    rounds: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Fault-free time of one inference under ``arm`` (compute and decision), in seconds: the
    median over ``rounds`` of the mean over ``runs`` inferences cycling through the inputs.
    ``clock`` is wall time by default; ``time.process_time`` gives CPU time, steadier on a
    shared machine."""
    runner = _runner(spec, arm)
    inputs = load_inputs(spec)
    for i in range(min(len(inputs), 5)):
        runner.infer(inputs[i])
    means = []
    for _ in range(rounds):
        start = clock()
        for i in range(runs):
            runner.infer(inputs[i % len(inputs)])
        means.append((clock() - start) / runs)
    return float(np.median(means))
