"""HIL harness benchmarks, run on demand (never in the test suite).

    python tools/bench_hil.py [model] [--quick] [--json]

``scaling``: model-level injections per second through a process pool of 1 and of 2 workers
(wall clock, steady state after every worker loaded its model), and the scaling efficiency
rate(2) / (2 rate(1)); on a 2-core machine shared with other jobs it is a lower bound.

``model``: model-level injections per second in one process, for the arms ``none`` and ``tmr``
of the demo model (single-bit upsets over weights, activations and outputs, the campaign issue 10
asks for), and the harness overhead per injection: the time of ``run_batch`` per injection minus
the fault-free time of one inference under the same arm. Both are medians over rounds of this
process's CPU time (``time.process_time``), measured the same way: on the shared machines the
wall clock mostly measures the other jobs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from hil.campaign import model_level
from hil.campaign.spec import CampaignSpec, parse_spec

DEMO_SPEC = """
[campaign]
name = "bench-model-level"
seed = 7
runs = 10000
[target]
model = "digits_cnn.flm"
[fault]
model = "seu"
sites = ["weights", "activations", "outputs"]
[[arm]]
name = "none"
redundancy = "none"
[[arm]]
name = "tmr"
redundancy = "tmr"
"""


def bench_model_level(quick: bool = False) -> dict[str, Any]:
    """Per arm, in CPU time of this process (what one core does, steady on a shared machine):
    ``injections_per_s``, ``injection_us`` (run_batch time per injection), ``inference_us``
    (fault-free inference under the arm) and ``overhead_us`` (the difference: draw, inject with
    read-back, decide, compare with golden, undo, record); and ``wall_injections_per_s``."""
    batch, rounds = (64, 3) if quick else (512, 7)
    spec: CampaignSpec = parse_spec(DEMO_SPEC)
    golden = model_level.Golden.compute(spec)
    out: dict[str, Any] = {"batch": batch, "rounds": rounds, "clock": "process_time", "arms": {}}
    next_index = 0
    for arm in ("none", "tmr"):
        model_level.run_batch(model_level.Batch(spec, arm, tuple(range(8)), golden))  # warm up
        cpu, wall = [], []
        for _ in range(rounds):
            indices = tuple(range(next_index, next_index + batch))
            next_index += batch  # fresh faults every round (pairing is not the point here)
            task = model_level.Batch(spec, arm, indices, golden)
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            model_level.run_batch(task)
            cpu.append((time.process_time() - start_cpu) / batch)
            wall.append((time.perf_counter() - start_wall) / batch)
        injection = statistics.median(cpu)
        inference = model_level.inference_seconds(
            spec, arm, runs=batch, rounds=rounds, clock=time.process_time
        )
        out["arms"][arm] = {
            "injections_per_s": round(1 / injection),
            "injection_us": round(injection * 1e6, 1),
            "inference_us": round(inference * 1e6, 1),
            "overhead_us": round((injection - inference) * 1e6, 1),
            "wall_injections_per_s": round(1 / statistics.median(wall)),
        }
    return out


def bench_scaling(quick: bool = False) -> dict[str, Any]:
    """TMR-arm injections per second (wall clock) through a forkserver process pool of 1 and
    2 workers, batches of 256, after a warm-up that loads the model in every worker."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    spec: CampaignSpec = parse_spec(DEMO_SPEC)
    golden = model_level.Golden.compute(spec)
    runs, size = (4096, 256) if quick else (20480, 256)
    rates: dict[int, float] = {}
    for workers in (1, 2):
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            warm = [model_level.Batch(spec, "tmr", (i,), golden) for i in range(4 * workers)]
            list(pool.map(model_level.run_batch, warm))
            start = time.perf_counter()
            futures = [
                pool.submit(
                    model_level.run_batch,
                    model_level.Batch(spec, "tmr", tuple(range(s, s + size)), golden),
                )
                for s in range(0, runs, size)
            ]
            wait(futures)
            for future in futures:
                future.result()
            rates[workers] = runs / (time.perf_counter() - start)
    return {
        "runs": runs,
        "injections_per_s_1_worker": round(rates[1]),
        "injections_per_s_2_workers": round(rates[2]),
        "scaling_efficiency": round(rates[2] / (2 * rates[1]), 3),
    }


BENCHES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "model": bench_model_level,
    "scaling": bench_scaling,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="*", help=f"benchmarks to run: {', '.join(BENCHES)} (all)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.which) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    results = {name: BENCHES[name](args.quick) for name in args.which or BENCHES}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for name, figures in results.items():
        if "arms" not in figures:
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
            continue
        print(f"{name}: batch {figures['batch']}, {figures['rounds']} rounds (medians, CPU time)")
        for arm, f in figures["arms"].items():
            print(
                f"  {arm:5} {f['injections_per_s']:6d} injections/s per core "
                f"({f['wall_injections_per_s']} wall): {f['injection_us']:6.1f} us/injection = "
                f"{f['inference_us']:6.1f} us inference + {f['overhead_us']:5.1f} us harness"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
