"""Tests of the converter and executor: make onnx_models importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
