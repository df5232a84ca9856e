"""A mission naming a model with an integer input (an Embedding's indices) is refused at load.

The partition's shared input buffer, data sets and uploads are float32, so `flight run` must
stop with a one-line configuration error (exit 78, no restart by systemd), not start a
partition that cannot be fed. Real `flight run` processes, as in tests/test_cli_run.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import flight
from flight.model import io
from flight.model.graph import Graph, Node

DATA = Path(flight.__file__).resolve().parent / "data"
TIMEOUT = 300  # generous: other test runs share this machine; never a margin on a measurement


def _embedding_flm(path: Path) -> None:
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    graph = Graph(
        name="embedding",
        inputs=[("idx", (1, 4))],
        outputs=[("y", (1, 4, 3))],
        nodes=[Node("lookup", "Gather", ["table", "idx"], ["y"], {"axis": 0})],
        shapes={"y": (1, 4, 3)},
        tensors={"table": table},
        input_dtypes={"idx": "int64"},
    )
    io.save(graph, path)


def _run(tmp_path: Path, model: Path) -> subprocess.CompletedProcess:
    text = (DATA / "default_mission.toml").read_text()
    text = text.replace('"digits_cnn.flm"', f'"{model}"')
    text = text.replace('dataset = "digits_test.npz"\n', "")  # the model alone is at issue
    mission = tmp_path / "mission.toml"
    mission.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "flight.cli", "run", "--mission", str(mission), "--frames", "3",
         "--fast", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=TIMEOUT, cwd="/",
    )  # fmt: skip


def test_a_mission_naming_an_integer_input_model_exits_78(tmp_path):
    model = tmp_path / "embedding.flm"
    _embedding_flm(model)
    proc = _run(tmp_path, model)
    assert proc.returncode == 78, proc.stdout + proc.stderr
    assert proc.stderr.startswith("flight: ConfigError: "), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "input 'idx' is int64 (Gather indices); a mission feeds float32 inputs only" in (
        proc.stderr
    )


def _model_run(tmp_path: Path, model: Path, x: np.ndarray) -> subprocess.CompletedProcess:
    np.save(tmp_path / "x.npy", x)
    return subprocess.run(
        [sys.executable, "-m", "flight.cli", "model", "run", str(model),
         "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=TIMEOUT, cwd="/",
    )  # fmt: skip


def test_flight_model_run_takes_integer_indices_as_they_are(tmp_path):
    model = tmp_path / "embedding.flm"
    _embedding_flm(model)
    idx = np.array([[3, 0, -1, 2]], np.int64)
    proc = _model_run(tmp_path, model, idx)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), table[idx])
    # an index outside the table is refused at the boundary: one line, exit 78
    proc = _model_run(tmp_path, model, np.array([[0, 1, 4, 2]], np.int64))
    assert proc.returncode == 78, proc.stdout + proc.stderr
    assert "ModelInputError" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
