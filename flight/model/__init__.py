"""Models on board.

* :func:`load` reads a ``.flm`` file (:mod:`flight.model.format`, fully validated) into a
  runnable :class:`~flight.model.executor.Model` with its weights in protected memory.
* :mod:`flight.model.onnx_import` (ground side, ``pip install 'flight[onnx]'``) converts ONNX;
  :mod:`flight.model.rewrite` holds flight's own graph rewrites (folding, fusion; no onnx).
* :mod:`flight.model.ops` is the op registry (every canonical op, defined once),
  :mod:`flight.model.graph` the canonical graph, :mod:`flight.model.plan` the memory plan.

The file-level API (``dumps``, ``save``, the format errors, ``info``) lives in
:mod:`flight.model.format`; the most used names are re-exported here.
"""

from flight.model.format import (
    ModelChecksumError,
    ModelFile,
    ModelFormatError,
    ModelLimitError,
    ModelSchemaError,
    ModelTruncatedError,
    info,
)
from flight.model.io import load, load_graph, save

__all__ = [
    "ModelChecksumError",
    "ModelFile",
    "ModelFormatError",
    "ModelLimitError",
    "ModelSchemaError",
    "ModelTruncatedError",
    "info",
    "load",
    "load_graph",
    "save",
]
