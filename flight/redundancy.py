"""Redundant execution of a model: simplex, duplicate-with-compare, or TMR in time.

*Time* placement: the replicas run one after the other in this process, each on its own weight
copy and its own activation arena, and their outputs are compared (DWC) or voted word by word
(TMR) by the native voter. A word where all three replicas differ means the output is
**withheld**: flagged, never delivered as good. DWC re-executes once on a mismatch (a transient
upset is gone the second time) and withholds the output if the copies still disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from flight import errors
from flight.crc import crc32c
from flight.model.executor import Model
from flight.modes import MODES, REPLICAS
from flight.vote import PreparedVote, compare, prepare

__all__ = ["MODES", "RedundantResult", "RedundantRunner", "VotePoints", "decide"]

Mode = Literal["none", "dwc", "tmr"]


@dataclass
class RedundantResult:
    """One redundant inference. ``output`` is None when the result is withheld."""

    output: np.ndarray | None
    delivered: bool
    corrected: int = 0  # TMR: words in which a replica was outvoted
    lost: tuple[int, int, int] = (0, 0, 0)  # TMR: words each replica lost
    no_majority: int = 0  # TMR: words where all three differ
    split: bool = False  # TMR: fewer than two replicas computed the voted output whole
    mismatches: int = 0  # DWC: mismatching words on the first execution
    reexecuted: bool = False  # DWC: a mismatch triggered a second execution
    #: CRC-32C of the delivered output's bytes, taken right at the decision: whoever passes the
    #: output on (the link) checks it, so an upset between the vote and the downlink is caught
    crc32c: int | None = None


class RedundantRunner:
    """Runs a model's first output under a redundancy mode, reusing fixed buffers."""

    def __init__(self, model: Model, mode: Mode = "tmr") -> None:
        if mode not in MODES:
            raise errors.ConfigError(f"redundancy must be one of {MODES}, not {mode!r}")
        needed = REPLICAS[mode]
        if model.copies < needed:
            raise errors.ConfigError(
                f"{mode} needs {needed} weight copies; the model was loaded with {model.copies}"
            )
        self.model = model
        self.mode = mode
        self.output_name = model.output_names[0]
        self.replicas = [model.replica(i) for i in range(needed)]
        outs = [r.buffer(self.output_name) for r in self.replicas]
        self._voted = np.empty_like(outs[0])
        self._vote = prepare(*outs, self._voted) if mode == "tmr" else None

    def _outputs(self, x: np.ndarray) -> list[np.ndarray]:
        return [r.run(x)[self.output_name] for r in self.replicas]

    def run(self, x: np.ndarray) -> RedundantResult:
        """One inference; the returned output is a fresh array (safe to keep)."""
        outs = self._outputs(x)
        result = decide(self.mode, outs, self._vote, lambda: bool(self._outputs(x)))
        if result.output is not None:
            result.output = result.output.copy()
        return result


def decide(
    mode: str,
    outputs: list[np.ndarray],
    vote: PreparedVote | None,
    reexecute: Callable[[], bool],
) -> RedundantResult:
    """Deliver, correct or withhold the replicas' outputs: the one redundancy decision that
    both :class:`RedundantRunner` and the supervisor take.

    ``outputs`` are the replicas' fixed output buffers and ``vote`` a prepared TMR vote over
    them; ``reexecute()`` runs the replicas again into the same buffers (DWC) and returns
    False if that failed. The returned output is a view of those buffers, None when withheld;
    a delivered one carries the CRC-32C of its bytes.
    """
    result = _decide(mode, outputs, vote, reexecute)
    if result.delivered:
        result.crc32c = crc32c(result.output)
    return result


def _decide(
    mode: str,
    outputs: list[np.ndarray],
    vote: PreparedVote | None,
    reexecute: Callable[[], bool],
) -> RedundantResult:
    if mode == "none":
        return RedundantResult(outputs[0], True)
    if mode == "dwc":
        first = compare(outputs[0], outputs[1])
        if first.equal:
            return RedundantResult(outputs[0], True)
        delivered = reexecute() and compare(outputs[0], outputs[1]).equal
        return RedundantResult(
            outputs[0] if delivered else None,
            delivered,
            mismatches=first.mismatches,
            reexecuted=True,
        )
    assert vote is not None, "TMR needs a prepared vote"
    result = vote.words()
    # Delivered only if two replicas computed this whole output (each lost no word): a vote
    # assembled word by word from replicas that were each hit somewhere is evidence of
    # nothing, since two hit replicas can agree on a wrong word (two upsets rounding a logit
    # the same way, seen under a flare). With one faulty replica, TMR's assumption, the other
    # two lose nothing and the output is delivered.
    split = sorted(result.lost)[1] > 0
    delivered = result.no_majority == 0 and not split
    return RedundantResult(
        vote.out if delivered else None,
        delivered,
        corrected=result.corrected,
        lost=result.lost,
        no_majority=result.no_majority,
        split=split,
    )


class VotePoints:
    """TMR in time with vote points: the replicas run segment by segment; after each chosen
    layer its output is voted word by word and the voted value written back into every replica
    (resync), so an upset in one replica's activations or weights is stopped at the next vote
    point instead of propagating to the output.

    Words without a majority at a vote point are written back as the bitwise majority and
    counted. A vote point at which fewer than two replicas computed the tensor whole (words
    without a majority, or every replica but one outvoted somewhere) is counted in ``unsafe``:
    its write-back spread a guess into every replica, so the final output vote, unanimous as
    it then may be, is no evidence, and the caller withholds that inference.
    """

    def __init__(self, replicas: list, names: list[str] | tuple[str, ...]) -> None:
        if len(replicas) != 3:
            raise errors.ConfigError("vote points need three replicas (TMR)")
        order = sorted({replicas[0].node_index(name): name for name in names}.items())
        self.replicas = replicas
        self.names = [name for _, name in order]
        cuts = [index + 1 for index, _ in order]
        self.bounds = list(zip([0, *cuts], [*cuts, None], strict=True))
        self._scratch = {name: np.empty_like(replicas[0].buffer(name)) for name in self.names}
        self._votes = [
            prepare(*[r.buffer(name) for r in replicas], self._scratch[name]) for name in self.names
        ]
        self.corrected = 0  # words corrected at vote points
        self.no_majority = 0
        self.unsafe = 0  # vote points whose write-back was not two replicas' whole tensor

    def run(
        self,
        x: np.ndarray,
        hooks: dict | None = None,
        progress: Callable[[], None] | None = None,
    ) -> None:
        """One inference of all three replicas; ``hooks[i]`` are replica i's ``after`` hooks;
        ``progress()`` is called after each segment (a worker's heartbeat)."""
        hooks = hooks or {}
        for segment, (start, stop) in enumerate(self.bounds):
            for index, replica in enumerate(self.replicas):
                replica.run(
                    x if start == 0 else None, after=hooks.get(index), start=start, stop=stop
                )
            if segment < len(self.names):
                result = self._votes[segment].words()
                if result.corrected or result.no_majority:
                    self.corrected += result.corrected
                    self.no_majority += result.no_majority
                    self.unsafe += result.no_majority > 0 or sorted(result.lost)[1] > 0
                    voted = self._scratch[self.names[segment]]
                    for replica in self.replicas:
                        np.copyto(replica.buffer(self.names[segment]), voted)
            if progress is not None:
                progress()
