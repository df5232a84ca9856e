"""Whole networks at 1x3x224x224 against onnxruntime, and bit-identical replicas/processes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_models import mobilenet_v2_like, ort_run, resnet18, squeezenet_like

from flight.model import io
from flight.model.executor import Model
from flight.model.onnx_import import convert_onnx

X = np.random.default_rng(42).standard_normal((1, 3, 224, 224)).astype(np.float32)


@pytest.mark.parametrize(
    "build,opset",
    [(resnet18, 13), (resnet18, 9), (mobilenet_v2_like, 11), (squeezenet_like, 17)],
    ids=["resnet18-op13", "resnet18-op9", "mobilenet-op11", "squeezenet-op17"],
)
def test_network_matches_onnxruntime_on_every_replica(build, opset):
    onnx_model = build(opset)
    model = Model(convert_onnx(onnx_model))
    expected = ort_run(onnx_model, X)
    outputs = [model.replica(i).run(X)[model.output_names[0]].copy() for i in range(3)]
    np.testing.assert_allclose(outputs[0], expected, rtol=1e-4, atol=1e-5)
    for other in outputs[1:]:
        assert other.tobytes() == outputs[0].tobytes()  # replicas are bit-identical


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_bit_identical_across_processes(tmp_path):
    path = tmp_path / "resnet18.flm"
    io.save(convert_onnx(resnet18(13)), path)
    np.save(tmp_path / "x.npy", X)
    here = io.load(path, copies=1).run(X)
    script = textwrap.dedent(
        f"""
        import hashlib, json, numpy as np
        from flight.model import io
        model = io.load({str(path)!r}, copies=2)
        x = np.load({str(tmp_path / "x.npy")!r})
        outs = [model.replica(i).run(x)[model.output_names[0]] for i in range(2)]
        print(json.dumps([hashlib.sha256(o.tobytes()).hexdigest() for o in outs]))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    digests = json.loads(proc.stdout.strip().splitlines()[-1])
    assert digests == [_digest(here), _digest(here)]


def test_same_input_twice_is_bit_identical():
    model = Model(convert_onnx(mobilenet_v2_like(13)), copies=1)
    first = model.run(X)
    second = model.run(X)
    assert first.tobytes() == second.tobytes()
