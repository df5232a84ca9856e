"""``hil campaign run|report``: the command line of fault-injection campaigns (docs/hil.md).

The heavy modules (the runner, the engines, the report's plotting) are imported when a command
runs, so ``hil --help`` stays instant."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

__all__ = ["add_parser"]

#: Some batches were given up (their worker or board kept dying): run again with --resume.
EXIT_INCOMPLETE = os.EX_TEMPFAIL


def add_parser(sub: Any) -> None:
    campaign = sub.add_parser("campaign", help="run fault-injection campaigns and report on them")
    cmds = campaign.add_subparsers(dest="campaign_command", metavar="ACTION")
    campaign.set_defaults(func=lambda args: (campaign.print_help(), 2)[1])

    run = cmds.add_parser("run", help="run (or resume) a campaign from its TOML spec")
    run.add_argument("spec", metavar="SPEC", help="the campaign spec (TOML)")
    run.add_argument("--out", required=True, metavar="DIR", help="results: DIR/campaign.sqlite")
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="local worker processes (default: 1; at board level, one per spawned board)",
    )
    where.add_argument("--dask", metavar="tcp://HOST:PORT", help="a Dask scheduler to run on")
    run.add_argument("--resume", action="store_true", help="continue the campaign in DIR")
    run.set_defaults(func=_run)

    report = cmds.add_parser("report", help="write DIR/summary.json and the HTML report")
    report.add_argument("out", metavar="DIR", help="a campaign's output directory")
    report.set_defaults(func=_report)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    from hil.campaign.runner import run_campaign

    summary = run_campaign(
        args.spec, args.out, workers=args.workers, dask=args.dask, resume=args.resume
    )
    print(json.dumps(summary, indent=2, sort_keys=True))
    if summary["stopped_by"]:
        import signal

        return 128 + signal.Signals[summary["stopped_by"]].value
    return 0 if summary["complete"] else EXIT_INCOMPLETE


def _report(args: argparse.Namespace) -> int:
    from hil.campaign.report import write_report

    for path in write_report(args.out):
        print(path)
    return 0
