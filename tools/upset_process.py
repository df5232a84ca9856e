"""Flip random bits in a running process's private writable memory (a crude radiation source).

    python tools/upset_process.py PID --flips 2500 --duration 40 --seed 1

Picks sites uniformly over the bytes of the process's private writable mappings
(``rw-p`` in ``/proc/PID/maps``: heap, anonymous memory, stacks, writable data), and flips
one bit at each through ``/proc/PID/mem`` (flight.inject.flip_process_memory), spread evenly
over ``--duration`` seconds. Shared mappings (a supervisor's weight copies and arenas) are
left out: the scrubber and the votes already cover them; this reaches what nothing else
protects. Needs ptrace permission on the target (root, or the same user with
``kernel.yama.ptrace_scope = 0``). Prints one JSON line: flips done, flips that found the
mapping gone, and whether the process survived. Seeded, so a run can be repeated.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from flight.inject import flip_process_memory

_SKIP = ("[vvar]", "[vsyscall]", "[vdso]")


def writable_private_mappings(
    pid: int, anonymous_only: bool = False, min_bytes: int = 0
) -> list[tuple[int, int]]:
    """(start, end) of every private writable mapping of ``pid`` (optionally only anonymous
    ones, e.g. large numpy buffers, of at least ``min_bytes``)."""
    spans = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        perms = fields[1]
        name = fields[5] if len(fields) > 5 else ""
        if anonymous_only and name:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if end - start < min_bytes:
            continue
        if perms.startswith("rw") and perms.endswith("p") and name not in _SKIP:
            spans.append((start, end))
    return spans


def upset(
    pid: int,
    flips: int,
    duration: float,
    seed: int,
    anonymous_only: bool = False,
    min_bytes: int = 0,
) -> dict:
    rng = random.Random(seed)
    done = missed = 0
    started = time.monotonic()
    for i in range(flips):
        delay = started + duration * i / max(flips, 1) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            spans = writable_private_mappings(pid, anonymous_only, min_bytes)
        except OSError:
            break  # the process is gone
        if not spans:
            break  # a zombie has no mappings
        sizes = [end - start for start, end in spans]
        start, end = rng.choices(spans, weights=sizes)[0]
        try:
            flip_process_memory(pid, rng.randrange(start, end), rng.randrange(8))
            done += 1
        except OSError:
            missed += 1  # unmapped between reading the maps and the write
    alive = Path(f"/proc/{pid}").exists()
    return {"pid": pid, "flips": done, "missed": missed, "alive_after": alive}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pid", type=int)
    parser.add_argument("--flips", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to spread them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--anonymous-only", action="store_true", help="only mappings without a file name"
    )
    parser.add_argument("--min-kib", type=int, default=0, help="only mappings this large")
    args = parser.parse_args(argv)
    result = upset(
        args.pid, args.flips, args.duration, args.seed, args.anonymous_only, 1024 * args.min_kib
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
