"""Model uploads: check a received model file before it may serve, and watch its first frames.

A model arrives over CFDP into the staging directory (the CDS directory's ``uploads/``); it
is used only when an authenticated ``model_upload`` command names it, a partition and the
HMAC-SHA256 of the whole file under the key that authenticated the command. Before anything
changes, :func:`verify` checks that MAC, then the file's own CRCs (the model loader checks every
section), then that its input and output shapes are the partition's (what feeds the model and
what reads it do not change with it). The verified file is copied to ``models/`` in the state
directory, so that a supervisor restart keeps serving it.

Activation happens at a frame boundary (the supervisor swaps the partition's job and restarts
its workers). A :class:`Trial` then watches the partition's next frames: one that is withheld,
crashes or hangs before the trial ends makes the supervisor feed the recovery machine a
``ModelFailed``, which orders the rollback to the previous model. A trial that passes commits
the model (MODEL_COMMITTED) and completes the command.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight import errors, events
from flight.atomic import write_atomically
from flight.crc import crc32c
from flight.link.codes import FailureCode

__all__ = [
    "MODELS_STATE",
    "Trial",
    "UploadRejected",
    "activate",
    "after_frame",
    "install",
    "load_job",
    "roll_back",
    "verify",
]

#: CDS state key: partition name -> the uploaded model file serving it.
MODELS_STATE = "uploaded_models"
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class UploadRejected(Exception):
    """An uploaded model failed a check before activation (reported, counted, not used)."""

    def __init__(self, code: FailureCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class Trial:
    """A freshly activated model on probation: ``frames_left`` good frames to go."""

    partition: str
    command: Any  # flight.link.service.Command
    previous_spec: Any
    previous_job: Any
    frames_left: int
    path: Path


def verify(path: Path, mac: bytes, key: Any, current: Any, limits: Any) -> bytes:
    """Check a staged model against the command's MAC and the partition's current model
    (``current``: its loaded :class:`flight.model.executor.Model`), reading the file once under
    the partition's ``limits``; returns the file's bytes. Raises :class:`UploadRejected`. (The
    whole model is built only at activation, which reports a failure there the same way.)"""
    from flight.model.io import load_graph

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UploadRejected(FailureCode.EXECUTION_FAILED, f"cannot read {path.name}") from exc
    if key is None:
        raise UploadRejected(FailureCode.NO_KEY, "no key to check the file's MAC")
    expected = hmac.new(key.secret, data, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, bytes(mac)):
        raise UploadRejected(FailureCode.BAD_MAC, f"{path.name}: the file's MAC does not verify")
    try:
        candidate = load_graph(data, limits=limits)  # every section's CRC, the graph's rules
    except (errors.FlightError, ValueError) as exc:
        raise UploadRejected(FailureCode.EXECUTION_FAILED, f"{path.name}: {exc}") from exc
    for kind, names, declared in (
        ("input", current.input_names, candidate.inputs),
        ("output", current.output_names, candidate.outputs),
    ):
        old = [tuple(current.shapes[n]) for n in names]
        new = [tuple(shape) for _, shape in declared]
        if old != new:
            raise UploadRejected(
                FailureCode.INVALID_ARGUMENT,
                f"{path.name}: {kind} shapes {new} differ from the partition's {old}",
            )
    return data


def install(state_dir: Path, partition: str, sequence: int, data: bytes) -> Path:
    """Copy a verified model into ``models/`` of the state directory, under a name that
    cannot collide with the model it replaces (atomically: a reset leaves old or new)."""
    if not _SAFE.fullmatch(partition):  # a mission checks names; a bug otherwise
        raise ValueError(f"partition name {partition!r}")
    directory = Path(state_dir) / "models"
    directory.mkdir(mode=0o700, exist_ok=True)
    target = directory / f"{partition}-{sequence}.flm"
    write_atomically(target, data)
    return target


def _file_crc(path: Path) -> int:
    return crc32c(Path(path).read_bytes())


def load_job(sup: Any, spec: Any) -> tuple[Any, Any]:
    """A partition's job at start-up: the uploaded model that last served it (kept in the CDS),
    else the mission's. An uploaded model that no longer loads is dropped, with an event."""
    from flight.jobs import ModelJob

    block = sup.mission.scrub.block_size
    uploaded = (sup.cds.state(MODELS_STATE, {}) or {}).get(spec.name)
    if uploaded:
        candidate = dataclasses.replace(spec, model_path=Path(uploaded))
        try:
            job = ModelJob(candidate, block)
            job.model_crc = _file_crc(candidate.model_path)
            return candidate, job
        except (errors.FlightError, OSError, ValueError) as exc:
            sup.log.emit(events.MODEL_ROLLED_BACK, partition=spec.name, why=f"at start: {exc}")
            models = dict(sup.cds.state(MODELS_STATE, {}) or {})
            models.pop(spec.name, None)
            sup.cds.set_state(MODELS_STATE, models)
    job = ModelJob(spec, block)
    job.model_crc = _file_crc(spec.model_path)
    return spec, job


def _swap(sup: Any, p: Any, spec: Any, job: Any) -> None:
    """Put ``job`` in ``p``'s place (weights scrubbed in place of the old ones)."""
    sup.scrubber.replace_region(p.job.weights, job.weights)
    p.spec, p.job = spec, job
    p.model_crc = job.model_crc


def activate(sup: Any, p: Any, path: Path, command: Any, trial_frames: int) -> None:
    """Serve the verified model at ``path`` from this frame boundary on, on trial."""
    from flight import recovery
    from flight.jobs import ModelJob

    spec = dataclasses.replace(p.spec, model_path=Path(path))
    try:
        job = ModelJob(spec, sup.mission.scrub.block_size)
        job.model_crc = _file_crc(path)
        job.warm_up()
    except (errors.FlightError, OSError, ValueError) as exc:
        sup.log.emit(events.MODEL_REJECTED, partition=p.name, file=Path(path).name, why=str(exc))
        sup.link.complete(command, FailureCode.EXECUTION_FAILED, f"does not load: {exc}")
        return
    trial = Trial(p.name, command, p.spec, p.job, trial_frames, Path(path))
    sup.trials[p.name] = trial
    _swap(sup, p, spec, job)
    sup.log.emit(events.MODEL_ACTIVATED, partition=p.name, file=Path(path).name, trial=trial_frames)
    for worker in p.workers:
        worker.kill()
    p.build_workers(sup.worker_fds)
    for worker in p.workers:
        worker.start()
    if not all(w.wait_ready(timeout=p.spec.start_deadline_s) for w in p.workers):
        sup.feed(recovery.ModelFailed(p.name, "the workers did not start with it"))


def after_frame(sup: Any, p: Any, delivered: bool) -> None:
    """Count a trial frame: a withheld one fails the trial, enough good ones commit it."""
    from flight import recovery

    trial = sup.trials[p.name]
    if not delivered:
        sup.feed(recovery.ModelFailed(p.name, "a trial frame was withheld"))
        return
    trial.frames_left -= 1
    if trial.frames_left > 0:
        return
    del sup.trials[p.name]
    models = dict(sup.cds.state(MODELS_STATE, {}) or {})
    models[p.name] = str(trial.path)
    sup.cds.set_state(MODELS_STATE, models)
    sup.cds.commit()
    sup.log.emit(events.MODEL_COMMITTED, partition=p.name, file=trial.path.name)
    if sup.link is not None:
        sup.link.complete(trial.command, detail=f"{trial.path.name} serves {p.name}")


def roll_back(sup: Any, p: Any, reason: str) -> None:
    """The recovery machine's RollBackModel: the previous model serves again (the restart the
    machine orders next starts its workers; the machine emitted MODEL_ROLLED_BACK)."""
    trial = sup.trials.pop(p.name, None)
    if trial is None:  # nothing on trial: a stale order (the trial already ended)
        return
    _swap(sup, p, trial.previous_spec, trial.previous_job)  # the machine emitted the event
    if sup.link is not None:
        sup.link.complete(trial.command, FailureCode.EXECUTION_FAILED, f"rolled back: {reason}")
