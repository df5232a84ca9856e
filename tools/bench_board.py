"""Board-level injections per minute: a spawned board on loopback, driven through its link.

    python tools/bench_board.py [--quick] [--json]

Each kind of injection is a batch against one board (the campaign's process-global board,
spawned once; the cold start is reported apart, not in the rates). A run's time is everything
the harness waits for: the board serving right outputs before it, the command, the read-back,
and the outcome (the next results, or detection and recovery), so the rate is what a campaign
gets from one board. Figures depend on the mission's frame (the demo's 50 ms) far more than on
the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

SPEC = """
[campaign]
name = "bench"
seed = 1
runs = 1000
[target]
level = "board"
[fault]
model = "{fault}"
{lines}
[[arm]]
name = "tmr"
redundancy = "tmr"
"""

KINDS = {
    "hang": ("hang", ""),
    "crash": ("crash", 'signals = ["SIGKILL", "SIGSEGV"]'),
    "data (seu: weights, activations, outputs, crc-tables, cds)": (
        "seu",
        'sites = ["weights", "activations", "outputs", "crc-tables", "cds"]',
    ),
    "process memory (partition and supervisor)": (
        "seu",
        'sites = ["process-memory"]\nprocess = "both"',
    ),
}


def bench_board_level(quick: bool = False) -> dict:
    """Injections per minute against one spawned board, per kind, with median detection and
    recovery times of the hangs and crashes (board time)."""
    from hil.campaign import board_level as bl
    from hil.campaign.spec import parse_spec

    runs = 10 if quick else 40
    results: dict = {"runs_per_kind": runs}
    try:
        first = parse_spec(SPEC.format(fault="hang", lines=""))
        started = time.perf_counter()
        bl._rig_for(first)  # spawn and wait until it serves: the cold start
        results["board_start_s"] = round(time.perf_counter() - started, 2)
        for label, (fault, lines) in KINDS.items():
            spec = parse_spec(SPEC.format(fault=fault, lines=lines))
            started = time.perf_counter()
            done = bl.run_batch(bl.Batch(spec, "tmr", tuple(range(runs))))
            elapsed = time.perf_counter() - started
            entry = {
                "per_minute": round(60 * len(done) / elapsed, 1),
                "outcomes": dict(sorted(_count(r.outcome.value for r in done).items())),
            }
            detect = [r.detect_s for r in done if r.detect_s is not None]
            recover = [r.recover_s for r in done if r.recover_s is not None]
            if detect:
                entry["detect_ms_median"] = round(1000 * statistics.median(detect), 1)
            if recover:
                entry["recover_ms_median"] = round(1000 * statistics.median(recover), 1)
            results[label] = entry
    finally:
        bl.close_board()
    return results


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 runs per kind instead of 40")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = bench_board_level(args.quick)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"board start (to the first right output): {results['board_start_s']} s")
    for label, entry in results.items():
        if isinstance(entry, dict):
            times = ""
            if "recover_ms_median" in entry:
                times = (
                    f", median detect {entry.get('detect_ms_median')} ms,"
                    f" recover {entry['recover_ms_median']} ms"
                )
            print(f"{label}: {entry['per_minute']} /min{times}  {entry['outcomes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
