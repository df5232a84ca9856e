"""Benchmark flight.kernels against numpy (GEMM) and onnxruntime (Conv), single thread.

``run()`` returns a dict; ``python tools/bench_kernels.py`` prints it. GEMM is compared with
``numpy.matmul`` (set ``OPENBLAS_NUM_THREADS=1`` *before* numpy is imported: this script sets it
when run as ``__main__``); Conv is compared with an onnxruntime single-op Conv model with
``intra_op_num_threads=1``, for ResNet-18 layer shapes (batch 1, 224x224 input). Both the on-the-fly
and the prepacked-weight Conv paths are timed. Times are the best of several repeats.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

GEMM_SHAPES = [(256, 256, 256), (512, 512, 512), (64, 3136, 576), (512, 49, 4608)]
# (C_in, H, C_out, k, stride, pad, count in ResNet-18)
RESNET18_CONVS = [
    (3, 224, 64, 7, 2, 3, 1),
    (64, 56, 64, 3, 1, 1, 4),
    (64, 56, 128, 3, 2, 1, 1),
    (64, 56, 128, 1, 2, 0, 1),
    (128, 28, 128, 3, 1, 1, 3),
    (128, 28, 256, 3, 2, 1, 1),
    (256, 14, 256, 3, 1, 1, 3),
    (256, 14, 512, 3, 2, 1, 1),
    (512, 7, 512, 3, 1, 1, 3),
]


def _best(fn: Callable[[], object], min_time: float = 0.3, min_reps: int = 5) -> float:
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    best = float("inf")
    for _ in range(max(min_reps, int(min_time / once))):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_gemm() -> list[dict]:
    """GFLOP/s of flight's gemm and numpy.matmul for a few shapes."""
    from flight.kernels import gemm_nn, gemm_workspace_size

    rng = np.random.default_rng(0)
    rows = []
    for m, n, k in GEMM_SHAPES:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        ws = np.empty(gemm_workspace_size(m, n, k), np.float32)
        flat = out.reshape(-1)
        t_np = _best(lambda a=a, b=b, out=out: np.matmul(a, b, out=out))
        t_fl = _best(lambda a=a, b=b, flat=flat, n=n, ws=ws: gemm_nn(a, b, flat, 0, n, ws))
        fl = 2.0 * m * n * k
        rows.append(
            {
                "m": m,
                "n": n,
                "k": k,
                "numpy_gflops": fl / t_np / 1e9,
                "flight_gflops": fl / t_fl / 1e9,
                "ratio_vs_numpy": t_np / t_fl,
            }
        )
    return rows


def _ort_conv(x, w, b, stride, pad):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[stride] * 2, pads=[pad] * 4)
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def bench_conv() -> list[dict]:
    """Latency of flight's conv2d (on-the-fly and prepacked weights) vs onnxruntime's Conv."""
    from flight.kernels import (
        conv2d,
        conv2d_packed,
        conv_output_size,
        conv_workspace_size,
        pack_conv_weights,
    )

    rng = np.random.default_rng(1)
    rows = []
    for c, h, m, k, s, p, count in RESNET18_CONVS:
        x = rng.standard_normal((1, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((m, c, k, k)) * 0.05).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32)
        oh = conv_output_size(h, k, s, p, p, 1)
        out = np.empty((1, m, oh, oh), np.float32)
        size = conv_workspace_size(x.shape, w.shape, out.shape, (s, s), (p,) * 4)
        ws = np.empty(size, np.float32)
        wp = pack_conv_weights(w)
        sess = _ort_conv(x, w, b, s, p)
        t_ort = _best(lambda sess=sess, x=x: sess.run(None, {"x": x}))
        args = (b, out, s, s, p, p, 1, 1, 1, 0, 0.0, 0.0, ws)
        t_fl = _best(lambda x=x, w=w, args=args: conv2d(x, w, *args))
        t_pk = _best(lambda x=x, wp=wp, k=k, args=args: conv2d_packed(x, wp, k, k, *args))
        err = float(np.abs(out - sess.run(None, {"x": x})[0]).max())
        rows.append(
            {
                "layer": f"{c}x{h}x{h} -> {m} k{k} s{s}",
                "count": count,
                "ort_ms": t_ort * 1e3,
                "flight_ms": t_fl * 1e3,
                "flight_packed_ms": t_pk * 1e3,
                "ratio": t_fl / t_ort,
                "ratio_packed": t_pk / t_ort,
                "max_abs_err": err,
            }
        )
    return rows


def run() -> dict:
    """Measure everything once; ratios > 1 mean flight is slower (conv) / faster (gemm ratio)."""
    gemm_rows = bench_gemm()
    result: dict = {
        "gemm": gemm_rows,
        "gemm_ratio_vs_numpy_min": min(r["ratio_vs_numpy"] for r in gemm_rows),
    }
    try:
        conv_rows = bench_conv()
    except ImportError as exc:  # onnxruntime / onnx not installed
        result["conv_skipped"] = str(exc)
        return result
    tot = {
        key: sum(r[key] * r["count"] for r in conv_rows)
        for key in ("ort_ms", "flight_ms", "flight_packed_ms")
    }
    result.update(
        conv=conv_rows,
        resnet18_conv_total_ms=tot,
        resnet18_conv_ratio=tot["flight_ms"] / tot["ort_ms"],
        resnet18_conv_ratio_packed=tot["flight_packed_ms"] / tot["ort_ms"],
    )
    return result


def _main() -> None:
    res = run()
    print("GEMM (single thread), GFLOP/s:")
    for r in res["gemm"]:
        print(
            f"  {r['m']:4d}x{r['n']:5d}x{r['k']:5d}  numpy {r['numpy_gflops']:6.1f}  "
            f"flight {r['flight_gflops']:6.1f}  ratio {r['ratio_vs_numpy']:.2f}"
        )
    if "conv" not in res:
        print("conv skipped:", res.get("conv_skipped"))
        return
    print("Conv vs onnxruntime (intra_op_num_threads=1), ms (ratio = flight / ort):")
    for r in res["conv"]:
        print(
            f"  {r['layer']:28s} x{r['count']}  ort {r['ort_ms']:7.3f}  flight "
            f"{r['flight_ms']:7.3f} ({r['ratio']:.2f})  prepacked {r['flight_packed_ms']:7.3f} "
            f"({r['ratio_packed']:.2f})  err {r['max_abs_err']:.1e}"
        )
    t = res["resnet18_conv_total_ms"]
    print(
        f"ResNet-18 convs weighted: ort {t['ort_ms']:.2f} ms, flight {t['flight_ms']:.2f} ms "
        f"({res['resnet18_conv_ratio']:.2f}x), prepacked {t['flight_packed_ms']:.2f} ms "
        f"({res['resnet18_conv_ratio_packed']:.2f}x)"
    )


if __name__ == "__main__":
    _main()
