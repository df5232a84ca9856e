"""Peak memory of loading a model, as a multiple of the model file's size.

    python tools/bench_load.py [--quick] [--json] [--flight-src DIR]

Each case runs in a fresh Python process that first imports flight and warms the kernels up
on a tiny model (so numba's compiler is not counted), then resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``), loads the model and reads the peak (``VmHWM``). The figure is
``(peak - RSS before loading) / file size``, for:

* ``format``: :func:`flight.model.format.load` alone (the validated file in memory);
* ``copies1``, ``copies3``: :func:`flight.model.io.load` into a runnable Model with one or
  three weight copies, the Model still alive when the peak is read.

Alongside each Model case, ``floor`` is what the design needs, as the same ratio: the weight
copies (``copies`` x the executable image, which holds the Conv weights packed), plus the
original Conv weights the graph keeps (their packed form is not the stored one).

``--quick`` measures one synthetic model (a Conv and two Gemm weights, about 72 MiB); the full
run adds the onnx package's light AlexNet and VGG-19 (random weights, converted with a raised
limit; needs the onnx extra and ~3 GiB of free memory). ``--flight-src`` measures another
checkout's flight (e.g. the main branch, for a before/after comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MiB = 1 << 20


def installed_flight() -> Path:
    """The directory holding the flight this process imports (an installed package or an
    editable checkout): the one measured unless another checkout is named."""
    import flight

    return Path(flight.__file__).resolve().parent.parent


#: Run in the child process: argv = [flight source dir, model path, mode, limit bytes].
_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import flight
from flight.model import format as flm, io
from flight.model.executor import Model

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

path, mode, limit = sys.argv[2], sys.argv[3], int(sys.argv[4])
limits = flm.Limits.for_model_bytes(limit)
warm = io.load(str(flight.__file__).rsplit("/", 1)[0] + "/data/warmup.flm", copies=1)
warm.run(np.ones(warm.shapes[warm.input_names[0]], np.float32))
del warm
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
before = status("VmRSS")
out = {"flight": flight.__file__}
if mode == "format":
    kept = flm.load(path, limits=limits)
else:
    kept = io.load(path, copies=int(mode[-1]), limits=limits)
    conv = sum(
        kept.graph.tensors[n.inputs[1]].nbytes for n in kept.graph.nodes if n.op == "Conv"
    )
    out.update(image=kept.weights.nbytes, copies=kept.copies, conv_bytes=conv)
out.update(before=before, peak=status("VmHWM"), after=status("VmRSS"))
print(json.dumps(out))
"""


def measure(path: Path, mode: str, flight_src: Path | None = None) -> dict:
    """One load in a fresh process: ``mode`` is ``format``, ``copies1`` or ``copies3``."""
    flight_src = flight_src or installed_flight()
    size = path.stat().st_size
    args = [sys.executable, "-c", _CHILD, str(flight_src), str(path), mode, str(size)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{mode} load of {path.name} failed:\n{done.stderr[-2000:]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    if not raw["flight"].startswith(str(flight_src)):
        raise RuntimeError(f"measured {raw['flight']}, not the flight in {flight_src}")
    result = {
        "file_mib": round(size / MiB, 1),
        "peak_mib": round((raw["peak"] - raw["before"]) / MiB, 1),
        "ratio": round((raw["peak"] - raw["before"]) / size, 2),
    }
    if mode != "format":
        floor = raw["copies"] * raw["image"] + raw["conv_bytes"]
        result["floor"] = round(floor / size, 2)
    else:
        result["floor"] = 1.0
    return result


def synthetic_graph(gemm_rows: int = 2048, seed: int = 0):
    """A model that is mostly weights: Conv(64->128, 3x3) -> Reshape -> Gemm(8192 ->
    ``gemm_rows``) -> Gemm(``gemm_rows`` -> 1000). With 2048 rows: 0.3 + 64 + 7.8 MiB."""
    from flight.model.graph import Graph, Node

    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:
        scale = np.float32(1 / np.sqrt(np.prod(shape[1:])))
        return rng.standard_normal(shape, dtype=np.float32) * scale

    conv = {"kernel_shape": [3, 3], "group": 1, "strides": [1, 1], "dilations": [1, 1]}
    gemm = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1, "activation": ""}
    nodes = [
        Node("conv", "Conv", ["x", "cw", "cb"], ["c"], {**conv, "pads": [1, 1, 1, 1]}),
        Node("flat", "Reshape", ["c"], ["f"], {"shape": [1, 8192]}),
        Node("fc1", "Gemm", ["f", "w1", "b1"], ["h"], {**gemm, "activation": "Relu"}),
        Node("fc2", "Gemm", ["h", "w2", "b2"], ["y"], dict(gemm)),
    ]
    nodes[0].attrs["activation"] = "Relu"
    tensors = {
        "cw": weights(128, 64, 3, 3),
        "cb": weights(128),
        "w1": weights(gemm_rows, 8192),
        "b1": weights(gemm_rows),
        "w2": weights(1000, gemm_rows),
        "b2": weights(1000),
    }
    shapes = {"c": (1, 128, 8, 8), "f": (1, 8192), "h": (1, gemm_rows), "y": (1, 1000)}
    return Graph(
        name="synthetic",
        inputs=[("x", (1, 64, 8, 8))],
        outputs=[("y", (1, 1000))],
        nodes=nodes,
        shapes=shapes,
        tensors=tensors,
    )


def save_synthetic(path: Path, gemm_rows: int = 2048) -> Path:
    from flight.model import format as flm
    from flight.model import io

    graph = synthetic_graph(gemm_rows)
    io.save(graph, path, limits=flm.Limits.for_model_bytes(256 * MiB))
    return path


def save_light(name: str, path: Path) -> Path:
    """The onnx package's light model ``name`` with seeded random weights in place of its
    ConstantOfShape placeholders, converted and saved under a raised limit."""
    from onnx_models import light_model  # tools/, beside this file

    from flight.model import format as flm
    from flight.model import io
    from flight.model.onnx_import import convert_onnx

    limits = flm.Limits.for_model_bytes(1 << 30)
    io.save(convert_onnx(light_model(name), limits=limits), path, limits=limits)
    return path


def bench_load_memory(quick: bool = False, flight_src: Path | None = None) -> dict:
    """{model: {mode: {file_mib, peak_mib, ratio, floor}}} for the synthetic model (and, unless
    ``quick``, AlexNet and VGG-19)."""
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {"synthetic": lambda p: save_synthetic(p)}
        if not quick:
            models["alexnet"] = lambda p: save_light("bvlc_alexnet", p)
            models["vgg19"] = lambda p: save_light("vgg19", p)
        for name, build in models.items():
            path = build(Path(tmp) / f"{name}.flm")
            results[name] = {
                mode: measure(path, mode, flight_src) for mode in ("format", "copies1", "copies3")
            }
            path.unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the synthetic model only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--flight-src", type=Path, default=None, help="checkout to measure (default: the imported)"
    )
    args = parser.parse_args()
    results = bench_load_memory(args.quick, args.flight_src and args.flight_src.resolve())
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'model':<10} {'file MiB':>9} {'mode':<8} {'peak MiB':>9} {'x file':>7} {'floor':>6}")
    for name, modes in results.items():
        for mode, r in modes.items():
            print(
                f"{name:<10} {r['file_mib']:>9} {mode:<8} {r['peak_mib']:>9} "
                f"{r['ratio']:>7} {r['floor']:>6}"
            )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
