"""``hil board``: boards on the rig.

* ``hil board spawn [--mission M] [--port P] [--state-dir D]``: a local emulated board (test
  mode, its own key file, restarted like the systemd unit). Prints ``url: ...`` and
  ``key: ...`` at once, ``ready`` once it answers a ping, one line per restart, and runs until
  Ctrl-C (or SIGTERM), which stops the board;
* ``hil board ping URL --key K``: the round trip of a ``ping`` command (exit 0), or why there
  is none (exit 1).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

__all__ = ["add_parser"]

EXIT_FAILED = 1


def add_parser(sub: Any) -> None:
    board = sub.add_parser("board", help="spawn a local board, ping a board")
    cmds = board.add_subparsers(dest="board_command", metavar="ACTION")
    board.set_defaults(func=lambda args: (board.print_help(), 2)[1])

    spawn = cmds.add_parser("spawn", help="run a local emulated board until Ctrl-C")
    spawn.add_argument("--mission", help="mission TOML (default: the bundled demo mission)")
    spawn.add_argument("--port", type=int, help="UDP port P (telemetry on P+1; default: free)")
    spawn.add_argument("--state-dir", help="the board's state directory (default: temporary)")
    spawn.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait for it to answer"
    )
    spawn.set_defaults(func=_spawn)

    ping = cmds.add_parser("ping", help="round trip of a ping command")
    ping.add_argument("url", metavar="URL", help="the board's link URL")
    ping.add_argument("--key", required=True, metavar="KEYFILE", help="the key file (TOML)")
    ping.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")
    ping.add_argument("--count", type=int, default=1, help="pings to send, one after another")
    ping.set_defaults(func=_ping)


def _spawn(args: argparse.Namespace) -> int:
    from hil.boards import START_TIMEOUT, BoardError, LocalBoard

    def stop_on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)
    board = LocalBoard(args.mission, port=args.port, state_dir=args.state_dir)
    try:
        print(f"url: {board.url}", flush=True)
        print(f"key: {board.key_file}", flush=True)
        try:
            with board.ground() as ground:
                rtt = board.wait_ready(ground, args.timeout or START_TIMEOUT)
        except BoardError as exc:
            print(f"hil: board not ready: {exc}", file=sys.stderr)
            print(board.log()[-2000:], file=sys.stderr)
            return EXIT_FAILED
        print(f"ready: pid {board.pid}, ping {rtt * 1000:.1f} ms", flush=True)
        seen = 0
        while board.running:
            exits = board.exits
            for record in exits[seen:]:
                what = "restarted" if record.restarted_at is not None else "not restarted"
                print(f"{record.status}: {what} ({record.why})", flush=True)
            seen = len(exits)
            time.sleep(0.2)
        print(f"hil: the board is down ({board.failed.why if board.failed else '?'})")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 0
    finally:
        board.stop()


def _ping(args: argparse.Namespace) -> int:
    from hil.boards import BoardError, open_board

    board = open_board(args.url, args.key)
    try:
        with board.ground(args.timeout) as ground:
            for _ in range(args.count):
                rtt = board.ping(ground, args.timeout)
                print(f"{args.url}: ping {rtt * 1000:.1f} ms", flush=True)
    except BoardError as exc:
        print(f"hil: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0
