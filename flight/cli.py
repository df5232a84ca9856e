"""The ``flight`` command line.

Subcommands import what they need when they run, so ``flight --help`` stays fast on a board.
"""

from __future__ import annotations

import argparse
import json
import sys

from flight import __version__


def _cmd_selftest(args: argparse.Namespace) -> int:
    from flight.selftest import run_selftest

    result = run_selftest(seed=args.seed, region_mib=args.region_mib, upsets=args.upsets)
    if args.json:
        print(json.dumps({"ok": result.ok, "checks": result.checks, "facts": result.facts}))
    else:
        for name, passed in result.checks.items():
            print(f"  {'PASS' if passed else 'FAIL'}  {name}")
        for name, value in result.facts.items():
            print(f"        {name}: {value}")
        print("selftest:", "all checks passed" if result.ok else "FAILED")
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flight",
        description="Radiation-tolerant onboard inference runtime (TMR, scrubbing, recovery).",
    )
    parser.add_argument("--version", action="version", version=f"flight {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    selftest = sub.add_parser(
        "selftest", help="check the native voter, CRCs and scrubber against injected upsets"
    )
    selftest.add_argument("--seed", type=int, default=0, help="seed of the injected upsets")
    selftest.add_argument("--region-mib", type=int, default=8, help="size of the test region")
    selftest.add_argument("--upsets", type=int, default=64, help="blocks to hit with a bit flip")
    selftest.add_argument("--json", action="store_true", help="machine-readable result")
    selftest.set_defaults(func=_cmd_selftest)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
