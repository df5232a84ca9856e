"""A stand-in level engine for the runner's tests: every run is classified from (seed, index)
alone, so any executor must store the same rows, and a campaign costs no inference.

Behaviour is chosen by words in the campaign name, because the name travels inside the pickled
spec to every worker (environment variables do not reach a forkserver started earlier):
``slow`` sleeps 20 ms per run; ``die`` makes the first attempt at any batch holding index 5 of
an arm kill its worker process (a marker file next to the spec remembers the attempt); ``dieall``
makes every attempt at it kill its worker.

``python -m fake_engine campaign run ...`` is ``hil`` with this engine at the model level.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.campaign.outcome import Outcome, RunResult

POPULATION = 1000
OUTCOMES = (Outcome.MASKED, Outcome.MASKED, Outcome.CORRECTED, Outcome.SDC, Outcome.NOT_INJECTED)


class Golden:
    """Three fake golden outputs: enough for the store's golden table."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.outputs = rng.random((3, 4), dtype=np.float32)

    @classmethod
    def compute(cls, spec: Any) -> Golden:
        return cls(spec.seed)

    def rows(self) -> list[tuple[int, bytes, int]]:
        return [(i, out.tobytes(), int(out.argmax())) for i, out in enumerate(self.outputs)]


@dataclass(frozen=True)
class Batch:
    spec: Any
    arm: str
    indices: tuple[int, ...]
    golden: Golden


def fault_space(spec: Any) -> int:
    return POPULATION


def inference_seconds(spec: Any, arm: Any) -> float:
    return 1e-4


def classify(seed: int, arm: str, index: int) -> RunResult:
    """The run of ``index``: a pure function of (seed, arm, index)."""
    rng = np.random.default_rng([seed, index])
    outcome = OUTCOMES[int(rng.integers(len(OUTCOMES)))]
    if arm == "tmr" and outcome is Outcome.SDC:
        outcome = Outcome.CORRECTED
    bit = int(rng.integers(32))
    return RunResult(
        arm=arm,
        index=index,
        site=("weights", "activations", "outputs")[index % 3],
        layer=f"layer{index % 4}",
        bit=bit,
        byte_offset=int(rng.integers(4096)),
        fault="seu",
        injected=outcome is not Outcome.NOT_INJECTED,
        old="00",
        new="00" if outcome is Outcome.NOT_INJECTED else f"{1 << (bit % 8):02x}",
        outcome=outcome,
        top1_changed=bool(rng.integers(2)) if outcome is Outcome.SDC else None,
        corrected_words=1 if outcome is Outcome.CORRECTED else 0,
        detect_s=None,
        recover_s=None,
        duration_s=0.0,
        worker=str(os.getpid()),
        extra={"draw": int(rng.integers(1 << 30))},
    )


def marker_of(batch: Batch) -> Path:
    """Deaths so far of the batch holding index 5 of this arm (next to the spec file)."""
    return Path(batch.spec.source).parent / f"fake-engine-{batch.arm}.died"


def run_batch(batch: Batch) -> list[RunResult]:
    name = batch.spec.name
    if "die" in name and 5 in batch.indices:
        marker = marker_of(batch)
        if "dieall" in name or not marker.exists():
            with marker.open("a") as deaths:
                deaths.write("x")  # one character per death: the tests count the attempts
            os._exit(3)  # the worker dies mid-batch, as a crashed process or a lost board would
    results = []
    for index in batch.indices:
        if "slow" in name:
            time.sleep(0.02)
        results.append(classify(batch.spec.seed, batch.arm, index))
    return results


def main(argv: list[str] | None = None) -> int:
    from hil import cli
    from hil.campaign import runner

    runner.ENGINES["model"] = __name__ if __name__ != "__main__" else "fake_engine"
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
