"""Jobs: what a partition computes each frame, and how what it delivers is scored.

A *model job* owns a partition's model: its weight copies in shared memory (as many as the
mission's ``weight_copies``: each replica computes with its own copy, a spare copy lets the
scrubber vote), one replica (executor and activation arena) per copy, the shared input buffer,
the replicas' output buffers and the prepared vote over them, and the data set it cycles
through. The supervisor decides *when* a job runs and what to do with its outputs; forked
workers (:mod:`flight.partition`) only compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flight import errors
from flight.modes import REPLICAS
from flight.shm import shared_bytes, shared_zeros
from flight.vote import PreparedVote, prepare

__all__ = ["Dataset", "ModelJob", "load_dataset", "model_limits"]


@dataclass
class Dataset:
    """A demo job's inputs and labels, cycled through one sample per inference."""

    x: np.ndarray
    y: np.ndarray
    position: int = 0

    def next_into(self, buffer: np.ndarray) -> int:
        """Write the next sample into ``buffer``; returns its label."""
        index = self.position % len(self.x)
        self.position += 1
        buffer[...] = self.x[index : index + 1].reshape(buffer.shape)
        return int(self.y[index])


def load_dataset(spec: Any, input_shape: tuple[int, ...]) -> Dataset:
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
    return Dataset(x, y)


def model_limits(spec: Any) -> Any:
    """The file limits a partition's model is loaded under: the defaults, or those the
    mission's ``max_model_bytes`` raises (a large model; an upload is checked the same way)."""
    from flight.model.format import DEFAULT_LIMITS, Limits

    if spec.max_model_bytes is None:
        return DEFAULT_LIMITS
    return Limits.for_model_bytes(spec.max_model_bytes)


class ModelJob:
    """One partition's inference job: model, replicas, I/O buffers, data set."""

    def __init__(self, spec: Any, block_size: int) -> None:
        from flight.model import load as load_model

        self.model = load_model(
            spec.model_path,
            limits=model_limits(spec),
            copies=spec.weight_copies,
            allocate=shared_bytes,
            block_size=block_size,
            region_name=f"{spec.name}/weights",
        )
        integer = {n: d for n, d in self.model.input_dtypes.items() if d != "float32"}
        if integer:  # the shared input buffer, data sets and uploads are float32
            name, dtype = next(iter(integer.items()))
            raise errors.ConfigError(
                f"partition {spec.name!r}: model {spec.model_path.name}: input {name!r} is "
                f"{dtype} (Gather indices); a mission feeds float32 inputs only"
            )
        for name in spec.vote_points:
            self.model.replica(0).node_index(name)  # ModelError now, not a dead worker later
        self.input = shared_zeros(self.model.shapes[self.model.input_names[0]])
        self.dataset = (
            load_dataset(spec, self.input.shape) if spec.dataset_path is not None else None
        )
        #: the dataset index of the input loaded last (None without a dataset)
        self.sample: int | None = None
        self.output_name = self.model.output_names[0]
        self.replicas = [self.model.replica(i) for i in range(self.model.copies)]
        self.outputs = [r.buffer(self.output_name) for r in self.replicas]
        #: The TMR vote over replicas 0-2's outputs (None with fewer than three copies).
        self.vote: PreparedVote | None = (
            prepare(*self.outputs[:3], np.empty_like(self.outputs[0]))
            if len(self.outputs) >= REPLICAS["tmr"]
            else None
        )

    @property
    def weights(self) -> Any:
        """The protected region of the weight copies (what the scrubber walks)."""
        return self.model.weights

    def warm_up(self) -> None:
        """Compile (or load from the numba cache) every kernel in this process, before any
        fork, so that a (re)started worker computes at once."""
        for replica in self.replicas:
            replica.run(self.input)

    def next_input(self) -> int | None:
        """Load the next sample into the shared input buffer; returns its label, if any."""
        if self.dataset is None:
            self.input[...] = 0.0
            return None
        self.sample = self.dataset.position % len(self.dataset.x)
        return self.dataset.next_into(self.input)

    @staticmethod
    def correct(output: np.ndarray, label: int) -> bool:
        """Is a delivered output the right class? (The demo's accuracy.)"""
        return int(np.argmax(output)) == label
