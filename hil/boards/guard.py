"""Stops a local board when the harness that spawned it goes away, however it goes (a killed
campaign worker, a test that timed out): ``python -m hil.boards.guard [DIRECTORY]``, one per
board.

The harness writes the board's current process group to this process's standard input at each
start (``0`` once it stopped the board itself) and holds the pipe open; when the pipe closes,
the group last written gets SIGTERM (a clean stop), then SIGKILL if it is still there 10 s
later, and the board's temporary DIRECTORY, if named, is removed. A process of its own (its
own session too, so a Ctrl-C meant for the harness does not end it first), since Python cannot
ask the kernel to signal a child when its parent dies.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

GRACE_S = 10.0


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def main() -> int:
    pgid = 0
    for line in sys.stdin:
        pgid = int(line.strip() or 0)
    if pgid <= 0:  # the harness stopped the board and cleans up itself
        return 0
    if _alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while _alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
    if len(sys.argv) > 1:
        shutil.rmtree(sys.argv[1], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
