"""`flight model ...` and `flight cache build` as a user runs them: real processes, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import flight

DATA = Path(flight.__file__).resolve().parent / "data"
TIMEOUT = 900  # generous: a cold numba compile on a loaded 2-core machine


def _flight(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flight.cli", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd="/",
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The demo ONNX model converted the documented way."""
    pytest.importorskip("onnx")
    output = tmp_path_factory.mktemp("convert") / "digits.flm"
    proc = _flight("model", "convert", str(DATA / "digits_cnn.onnx"), "-o", str(output))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {output}: 8 nodes (")
    assert "22,954 parameters" in proc.stdout
    return output


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> tuple[Path, np.ndarray]:
    x = np.load(DATA / "digits_test.npz")["x"][:12]
    path = tmp_path_factory.mktemp("samples") / "x.npy"
    np.save(path, x)
    return path, x


def test_model_info_json_describes_the_converted_model(converted):
    proc = _flight("model", "info", str(converted), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["crc"] == "ok (file and 10 tensors)"
    assert info["nodes"] == 8 and info["parameters"] == 22954
    assert info["ops"] == {"Conv": 3, "Gemm": 2, "MaxPool": 2, "Reshape": 1}
    assert info["inputs"] == [{"name": "input", "dtype": "float32", "shape": [1, 1, 8, 8]}]
    assert info["memory_plan"]["weight_copies"] == 1


def test_model_info_text_is_tables_not_reprs(converted):
    proc = _flight("model", "info", str(converted))
    assert proc.returncode == 0, proc.stderr
    for mark in ("{", "}", "'", "[", "]"):
        assert mark not in proc.stdout, (mark, proc.stdout)
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert ["crc", "ok", "(file", "and", "10", "tensors)"] in lines
    assert ["parameters", "22954"] in lines
    ops = lines.index(["ops"])
    assert lines[ops + 1 : ops + 5] == [
        ["Conv", "3"],
        ["Gemm", "2"],
        ["MaxPool", "2"],
        ["Reshape", "1"],
    ]
    assert ["inputs", "(name=input,", "dtype=float32,", "shape=(1", "1", "8", "8))"] in lines


def test_model_info_of_a_corrupt_file_exits_65(tmp_path):
    corrupt = bytearray((DATA / "digits_cnn.flm").read_bytes())
    corrupt[-100] ^= 0x01
    path = tmp_path / "corrupt.flm"
    path.write_bytes(bytes(corrupt))
    proc = _flight("model", "info", str(path), "--json")
    assert proc.returncode == 65, proc.stdout + proc.stderr  # EX_DATAERR
    assert json.loads(proc.stdout)["crc"] == "FAILED"


def test_model_run_matches_onnxruntime_and_the_in_process_model(converted, samples, tmp_path):
    """A batch of 12 digits through the converted model under TMR, compared with the ONNX
    model run by onnxruntime (an independent reference) and with flight's own model in this
    process (the same kernels: equal to the bit)."""
    ort = pytest.importorskip("onnxruntime")
    from flight.model import io

    x_path, x = samples
    output = tmp_path / "y.npy"
    proc = _flight("model", "run", str(converted), "--input", str(x_path), "--output", str(output))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == {
        "samples": 12,
        "redundancy": "tmr",
        "withheld": 0,
        "corrected": 0,
        "output": str(output),
    }
    y = np.load(output)
    assert y.shape == (12, 10) and y.dtype == np.float32

    session = ort.InferenceSession(str(DATA / "digits_cnn.onnx"))
    name = session.get_inputs()[0].name
    reference = np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(12)])
    np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-4)

    model = io.load(converted, copies=1)
    in_process = np.concatenate([model.run(x[i : i + 1]) for i in range(12)])
    np.testing.assert_array_equal(y, in_process)


def test_model_run_refuses_an_input_of_the_wrong_shape(converted, tmp_path):
    x_path = tmp_path / "wrong.npy"
    np.save(x_path, np.zeros((2, 3, 8, 8), np.float32))
    proc = _flight("model", "run", str(converted), "--input", str(x_path), "--output",
                   str(tmp_path / "y.npy"))  # fmt: skip
    assert proc.returncode == 65, proc.stderr  # EX_DATAERR
    assert "does not fit the model's (1, 1, 8, 8)" in proc.stderr
    assert not (tmp_path / "y.npy").exists()


def test_model_run_refuses_a_file_that_is_not_npy(converted, tmp_path):
    x_path = tmp_path / "text.npy"
    x_path.write_text("1, 2, 3\n")
    proc = _flight("model", "run", str(converted), "--input", str(x_path), "--output",
                   str(tmp_path / "y.npy"))  # fmt: skip
    assert proc.returncode == 65, proc.stderr
    assert proc.stderr.count("\n") == 1 and "not a readable .npy array" in proc.stderr


def test_warm_up_reports_each_replica_of_each_model_as_it_goes():
    from flight.model.warmup import MODELS, warm_up

    calls = []
    assert warm_up(progress=lambda *step: calls.append(step)) == list(MODELS)
    assert calls == [(model, i, 3) for model in MODELS for i in (1, 2, 3)]


def test_cache_build_fills_the_directory_and_shows_progress(tmp_path):
    """A cold build (tens of seconds: every kernel compiles), one progress line per replica of
    each shipped model as it goes, then the total."""
    directory = tmp_path / "numba-seed"
    proc = _flight("cache", "build", str(directory))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"flight cache build: compiling every kernel into {directory}"
    progress = [line.split(" (")[0] for line in lines[1:-1]]
    assert progress == [
        f"  {model}: replica {i}/3 compiled"
        for model in ("warmup.flm", "digits_cnn.flm")
        for i in (1, 2, 3)
    ]
    assert lines[-1].startswith("compiled every kernel for warmup.flm, digits_cnn.flm in ")
    index = list(directory.rglob("*.nbi"))
    code = list(directory.rglob("*.nbc"))
    assert index and code, sorted(p.name for p in directory.rglob("*"))
    assert f"{len(list(p for p in directory.rglob('*') if p.is_file()))} files" in lines[-1]


def test_max_model_bytes_sets_the_limits_of_convert_info_and_run(converted, samples, tmp_path):
    """The demo model's largest tensor is ~37 KB: a 16 KiB limit refuses it everywhere, with a
    message naming the flag; the default limits accept it (the fixture converted it)."""
    small = ("--max-model-bytes", "16384")
    out = tmp_path / "m.flm"
    proc = _flight("model", "convert", str(DATA / "digits_cnn.onnx"), "-o", str(out), *small)
    assert proc.returncode == 78 and not out.exists()
    assert "--max-model-bytes" in proc.stderr and "max_tensor_bytes" in proc.stderr
    assert _flight("model", "info", str(converted), *small).returncode == 65
    x, _ = samples
    run = _flight("model", "run", str(converted), "--input", str(x), "--output",
                  str(tmp_path / "y.npy"), *small)  # fmt: skip
    assert run.returncode == 78 and "--max-model-bytes" in run.stderr
    assert _flight("model", "info", str(converted), "--max-model-bytes", "1000000").returncode == 0
