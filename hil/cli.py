"""``hil``: the ground / test side's command line (never flown)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Each command group registers itself; its heavy modules load only when it runs."""
    from hil import plan_cli
    from hil.boards import cli as board_cli
    from hil.campaign import cli as campaign_cli
    from hil.link.console import add_link_parser

    parser = argparse.ArgumentParser(
        prog="hil", description="Ground and test harness for flight boards (never flown)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    campaign_cli.add_parser(sub)  # hil campaign run|report
    board_cli.add_parser(sub)  # hil board spawn|ping
    add_link_parser(sub)  # hil link send|listen|upload|replay
    plan_cli.add_parser(sub)  # hil plan
    return parser


def main(argv: list[str] | None = None) -> int:
    """Errors as ``flight`` reports them: one line and an exit code; bugs keep their
    traceback."""
    from flight.cli import run_command

    return run_command(build_parser(), argv, "hil")


if __name__ == "__main__":
    sys.exit(main())
