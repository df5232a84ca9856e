"""``hil``: the ground / test side's command line (never flown)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from hil.link.console import add_link_parser

    parser = argparse.ArgumentParser(
        prog="hil", description="Ground and test harness for flight boards (never flown)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_link_parser(sub)
    __import__("hil.plan_cli", fromlist=["add_parser"]).add_parser(sub)  # hil plan
    __import__("hil.boards.cli", fromlist=["add_parser"]).add_parser(sub)  # hil board
    __import__("hil.campaign.cli", fromlist=["add_parser"]).add_parser(sub)  # hil campaign
    return parser


def main(argv: list[str] | None = None) -> int:
    """Errors as ``flight`` reports them: one line and an exit code; bugs keep their
    traceback."""
    from flight.cli import run_command

    return run_command(build_parser(), argv, "hil")


if __name__ == "__main__":
    sys.exit(main())
