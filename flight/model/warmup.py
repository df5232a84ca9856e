"""Compile every kernel the executor can call, with the exact argument types it passes.

numba compiles a kernel per argument-type signature on first call. Running the shipped warm-up
model (every canonical op; tools/make_warmup_model.py) and the demo model on every replica
exercises each signature once, so ``flight cache build DIR`` leaves a complete cache in DIR.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

import numpy as np

from flight.model import io

MODELS = ("warmup.flm", "digits_cnn.flm")


#: Called after each replica of each model has run: (model file name, replicas done, replicas).
#: Compiling every kernel takes tens of seconds; this lets ``flight cache build`` show progress.
Progress = Callable[[str, int, int], None]


def warm_up(progress: Progress | None = None) -> list[str]:
    """Run each shipped model once on each of its replicas; returns the models run."""
    done = []
    for name in MODELS:
        resource = resources.files("flight") / "data" / name
        if not resource.is_file():
            continue
        model = io.load(resource.read_bytes())
        shape = model.shapes[model.input_names[0]]
        x = np.ones(shape, np.float32)
        for i in range(model.copies):
            model.replica(i).run(x)
            if progress is not None:
                progress(name, i + 1, model.copies)
        done.append(name)
    return done
