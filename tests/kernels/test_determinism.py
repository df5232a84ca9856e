"""Same inputs -> bit-identical outputs: twice in this process and once in a fresh process."""

import subprocess
import sys

import numpy as np

SCRIPT = r"""
import hashlib, sys
import numpy as np
from flight.model.ops import kernel, workspace_size

def run():
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((1, 16, 23, 23)).astype(np.float32)
    w1 = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    fc = rng.standard_normal((10, 24 * 11 * 11)).astype(np.float32)
    h: list[bytes] = []
    y1 = np.empty((1, 24, 23, 23), np.float32)
    a1 = {"pads": [1, 1, 1, 1], "activation": "Relu"}
    kernel("Conv")([x, w1, b], [y1], a1, np.empty(workspace_size("Conv", [x, w1, b], [y1], a1),
                                                 np.float32))
    y2 = np.empty((1, 24, 11, 11), np.float32)
    a2 = {"pads": [1, 1, 1, 1], "strides": [2, 2]}
    kernel("Conv")([x, w2], [y2], a2, None)
    s = np.empty((1, 10), np.float32)
    kernel("Gemm")([y2.reshape(1, -1), fc, b[:10]], [s], {"transB": 1}, None)
    p = np.empty_like(s)
    kernel("Softmax")([s], [p], {"axis": 1}, None)
    for arr in (y1, y2, s, p):
        h.append(arr.tobytes())
    return hashlib.sha256(b"".join(h)).hexdigest()

print(run())
"""


def _in_process() -> str:
    ns: dict = {}
    exec(compile(SCRIPT.replace("print(run())", ""), "<determinism>", "exec"), ns)
    return ns["run"]()


def test_bit_identical_in_process_and_subprocess():
    first = _in_process()
    second = _in_process()
    assert first == second
    # the installed flight, as a user has it (not the source tree, which has no built
    # extension after a plain `pip install .`)
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd="/", timeout=240
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == first


def test_replicas_bit_identical_with_separate_buffers():
    from flight.kernels import gemm

    rng = np.random.default_rng(5)
    a = rng.standard_normal((37, 301)).astype(np.float32)
    b = rng.standard_normal((301, 45)).astype(np.float32)
    outs = []
    for _ in range(3):  # three "replicas", each with its own copies and output
        out = np.empty((37, 45), np.float32)
        gemm(a.copy(), b.copy(), None, out)
        outs.append(out.tobytes())
    assert outs[0] == outs[1] == outs[2]
