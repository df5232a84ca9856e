"""flight benchmarks, run on demand (never in the test suite).

    python tools/bench.py [foundation|kernels|all] [--json] [--quick]

Every figure is a ratio against a baseline measured in the same run on the same buffers,
because the machines we share are noisy: absolute numbers move, ratios mostly do not.
Each timing is the best of several repeats.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

MiB = 1 << 20


def best_time(fn: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Best wall time of one call over ``repeat`` rounds of ``number`` calls."""
    fn()  # warm up (page faults, caches, lazy init)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def bench_foundation(quick: bool = False) -> dict:
    from flight import crc
    from flight.memory import ProtectedRegion
    from flight.scrub import Scrubber
    from flight.vote import prepare, vote

    size = (16 if quick else 64) * MiB
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, size // 8, dtype=np.uint64)
    b, c = a.copy(), a.copy()
    b[:: 1 << 20] ^= 1  # a few upsets (far more than orbit brings): the counting path runs
    out = np.empty_like(a)
    t_vote = best_time(lambda: vote(a, b, c, out=out))
    t_numpy = best_time(lambda: (a & b) | (a & c) | (b & c))
    t_copy = best_time(lambda: np.copyto(out, a))

    small = [np.zeros(4096, np.uint8) for _ in range(4)]
    n_small = 20_000 if quick else 100_000
    t_small = best_time(lambda: vote(*small[:3], out=small[3]), number=n_small)
    prepared = prepare(*small[:3], small[3])
    t_prepared = best_time(prepared, number=n_small)
    t_small_copy = best_time(lambda: np.copyto(small[3], small[0]), number=n_small)
    t_small_numpy = best_time(
        lambda: (small[0] & small[1]) | (small[0] & small[2]) | (small[1] & small[2]),
        number=n_small,
    )

    region_size = (64 if quick else 256) * MiB
    region = ProtectedRegion(
        "bench", rng.integers(0, 256, region_size, dtype=np.uint8), copies=3, block_size=4096
    )
    scrubber = Scrubber([region])
    t_scrub = best_time(lambda: scrubber.step(scrubber.total_bytes), repeat=3)
    t_zlib = best_time(lambda: [zlib.crc32(region.raw(i)) for i in range(3)], repeat=3)
    t_crc_hw = best_time(lambda: crc.crc32c(a))
    t_crc_sw = best_time(lambda: crc.crc32c_portable(a), repeat=2)
    t_zlib_a = best_time(lambda: zlib.crc32(a))

    gb = 1e9
    return {
        "vote_buffer_MiB": size // MiB,
        "vote_GBps": size / t_vote / gb,
        "numpy_expr_GBps": size / t_numpy / gb,
        "copyto_GBps": size / t_copy / gb,
        "vote_vs_numpy_expr": t_numpy / t_vote,
        "vote_vs_copyto": t_copy / t_vote,
        "vote_4KiB_us": t_small * 1e6,
        "prepared_vote_4KiB_us": t_prepared * 1e6,
        "copyto_4KiB_us": t_small_copy * 1e6,
        "numpy_expr_4KiB_us": t_small_numpy * 1e6,
        "vote_4KiB_vs_numpy_expr_4KiB": t_small_numpy / t_small,
        "scrub_region_MiB": region_size // MiB,
        "scrub_GBps": 3 * region_size / t_scrub / gb,
        "zlib_crc32_GBps": 3 * region_size / t_zlib / gb,
        "scrub_vs_zlib": t_zlib / t_scrub,
        "crc32c_impl": crc.IMPLEMENTATION,
        "crc32c_GBps": size / t_crc_hw / gb,
        "crc32c_portable_GBps": size / t_crc_sw / gb,
        "crc32c_vs_zlib": t_zlib_a / t_crc_hw,
        "crc32c_portable_vs_zlib": t_zlib_a / t_crc_sw,
    }


TARGETS = {
    "vote_vs_numpy_expr": (">=", 4.0),
    "vote_vs_copyto": (">=", 0.55),
    "vote_4KiB_us": ("<=", 2.0),
    "prepared_vote_4KiB_us": ("<=", 2.0),
    "scrub_vs_zlib": (">=", 2.0),
    "resnet18_flight_vs_onnxruntime": ("<=", 1.5),
}


def bench_kernels(quick: bool = False) -> dict:
    try:
        import bench_kernels
    except ImportError as exc:
        return {"skipped": f"kernels benchmark unavailable: {exc}"}
    return bench_kernels.run()


_START_TO_FIRST_RESULT = """
import time, numpy as np
t0 = time.perf_counter()
from flight.model import load
model = load({path!r}, copies=1)
model.run(np.ones(model.shapes[model.input_names[0]], np.float32))
print(time.perf_counter() - t0)
"""


def _process_time_to_first_result(path: str, cache_dir: str) -> float:
    """Wall time of a fresh process from start to the first inference, numba cache in cache_dir."""
    import os
    import subprocess

    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _START_TO_FIRST_RESULT.format(path=path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    del proc
    return time.perf_counter() - started


def bench_model(quick: bool = False) -> dict:
    """ResNet-18 (batch 1, 224x224) single replica vs onnxruntime with one thread; JIT costs."""
    import tempfile

    import onnxruntime as ort

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "model_exec"))
    from onnx_models import resnet18

    from flight.model import io
    from flight.model.executor import Model
    from flight.model.onnx_import import convert_onnx

    onnx_model = resnet18(13)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    graph = convert_onnx(onnx_model)
    model = Model(graph, copies=1)
    replica = model.replica(0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    repeat = 5 if quick else 15
    t_flight = best_time(lambda: replica.run(x), repeat=repeat)
    t_ort = best_time(lambda: session.run(None, {"x": x}), repeat=repeat)

    results = {
        "resnet18_flight_ms": t_flight * 1e3,
        "resnet18_onnxruntime_ms": t_ort * 1e3,
        "resnet18_flight_vs_onnxruntime": t_flight / t_ort,
    }
    with tempfile.TemporaryDirectory() as tmp:
        demo = str(Path(__file__).resolve().parent.parent / "flight" / "data" / "warmup.flm")
        path = str(Path(tmp) / "resnet18.flm")
        io.save(graph, path)
        cache = str(Path(tmp) / "cache")
        results["warmup_model_cold_start_s"] = _process_time_to_first_result(demo, cache)
        results["warmup_model_warm_start_s"] = _process_time_to_first_result(demo, cache)
        results["resnet18_cold_start_s"] = _process_time_to_first_result(path, cache + "2")
        results["resnet18_warm_start_s"] = _process_time_to_first_result(path, cache + "2")
    return results


SECTIONS = {"foundation": bench_foundation, "kernels": bench_kernels, "model": bench_model}


def _print(section: str, results: dict) -> None:
    print(f"== {section}")
    for key, value in results.items():
        target = TARGETS.get(key)
        mark = ""
        if target and isinstance(value, float):
            op, goal = target
            met = value >= goal if op == ">=" else value <= goal
            mark = f"   target {op} {goal}: {'met' if met else 'MISSED'}"
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {key:32s} {shown}{mark}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", nargs="?", default="all", choices=[*SECTIONS, "all"])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quick", action="store_true", help="smaller buffers, fewer repeats")
    args = parser.parse_args(argv)
    names = list(SECTIONS) if args.section == "all" else [args.section]
    results = {name: SECTIONS[name](args.quick) for name in names}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, section in results.items():
            _print(name, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
