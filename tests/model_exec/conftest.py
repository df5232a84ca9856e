"""Tests of the converter and executor: make the ONNX model builders (tools/onnx_models.py,
shared with the benchmarks) importable as ``onnx_models``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
