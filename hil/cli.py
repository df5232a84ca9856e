"""``hil``: the ground / test side's command line (never flown)."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from hil.link.console import add_link_parser

    parser = argparse.ArgumentParser(
        prog="hil", description="Ground and test harness for flight boards (never flown)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_link_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from flight import errors

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except errors.FlightError as exc:
        print(f"hil: {type(exc).__name__}: {exc}", file=sys.stderr)
        return os.EX_CONFIG if isinstance(exc, errors.ConfigError) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        print(f"hil: {exc}", file=sys.stderr)
        return os.EX_IOERR


if __name__ == "__main__":
    sys.exit(main())
