"""``hil plan``: the scrub planner's command line (the model is :mod:`hil.plan`).

Numbers are parsed by the command, not by argparse, so that a bad value exits 78
(``EX_CONFIG``) like every other input error, with the option named.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from flight import errors
from hil.plan import (
    Layout,
    Plan,
    Region,
    UpsetModel,
    layout_from_mission,
    layout_from_model,
    plan,
    scrub_period,
)

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hil plan`` on the ``hil`` command's subparsers."""
    p = subparsers.add_parser(
        "plan",
        help="scrub planner: unrepairable-block rate and the scrub period a target needs",
        description=(
            "Expected rate of blocks the scrubber cannot repair (Poisson model of flight's "
            "repair rule), the chance of at least one in a mission, and the scrub period "
            "and budget a target rate needs. Rates are per day of (accelerated) time."
        ),
    )
    p.add_argument("--mission", metavar="FILE", help="mission file: regions, budget, frame")
    p.add_argument("--model", metavar="FILE", help=".flm model: its weights region")
    p.add_argument("--bytes", metavar="N", help="a region of N bytes per copy (no file)")
    p.add_argument("--copies", metavar="N", help="copies with --model/--bytes (default 3)")
    p.add_argument("--block-size", metavar="B", help="CRC block with --model/--bytes (4096)")
    p.add_argument("--environment", metavar="NAME", help="orbit profile: leo, saa, geo, flare")
    p.add_argument("--rate", metavar="R", help="upsets per bit per day (single-bit)")
    p.add_argument("--accelerate", metavar="X", default="1", help="rate multiplier (1)")
    p.add_argument("--period", metavar="S", help="scrub period in seconds")
    p.add_argument("--bytes-per-frame", metavar="B", help="scrub budget per frame, all copies")
    p.add_argument("--frame-ms", metavar="MS", help="minor frame (default: the mission's)")
    p.add_argument("--target", metavar="RATE", help="wanted unrepairable blocks per day")
    p.add_argument("--years", metavar="Y", default="1", help="mission length (1 year)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=_cmd_plan)
    return p


def _number(text: str | None, what: str, *, positive: bool = False) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise errors.ConfigError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise errors.ConfigError(f"{what} must be {'> 0' if positive else '>= 0'}, got {text}")
    return value


def _integer(text: str | None, what: str, default: int) -> int:
    value = _number(text, what, positive=True)
    if value is None:
        return default
    if value != int(value):
        raise errors.ConfigError(f"{what} must be a whole number, got {text}")
    return int(value)


def _exactly_one(args: argparse.Namespace, *names: str) -> str:
    given = [n for n in names if getattr(args, n) is not None]
    options = " | ".join("--" + n.replace("_", "-") for n in names)
    if len(given) != 1:
        raise errors.ConfigError(f"give exactly one of {options}")
    return given[0]


def _cmd_plan(args: argparse.Namespace) -> int:
    source = _exactly_one(args, "mission", "model", "bytes")
    budget: int | None = None
    frame_s = _number(args.frame_ms, "--frame-ms", positive=True)
    frame_s = None if frame_s is None else frame_s / 1000.0
    if source == "mission":
        if args.copies is not None or args.block_size is not None:
            raise errors.ConfigError("--copies and --block-size come from the mission file")
        layout, budget, mission_frame = layout_from_mission(args.mission)
        frame_s = frame_s or mission_frame
    else:
        copies = _integer(args.copies, "--copies", 3)
        block = _integer(args.block_size, "--block-size", 4096)
        if source == "model":
            layout = layout_from_model(args.model, copies, block)
        else:
            size = _integer(args.bytes, "--bytes", 0)
            layout = Layout((Region("region", size, copies, block),))

    env = _exactly_one(args, "environment", "rate")
    accelerate = _number(args.accelerate, "--accelerate", positive=True) or 1.0
    if env == "environment":
        upsets = UpsetModel.from_environment(args.environment, accelerate)
    else:
        rate = _number(args.rate, "--rate")
        upsets = UpsetModel(rate or 0.0, accelerate=accelerate, name="rate")

    if args.period is not None and args.bytes_per_frame is not None:
        raise errors.ConfigError("give --period or --bytes-per-frame, not both")
    if args.period is not None:
        period = _number(args.period, "--period", positive=True)
        budget = None
    else:
        budget = _integer(args.bytes_per_frame, "--bytes-per-frame", budget or 0) or None
        if budget is None:
            raise errors.ConfigError("give --period or --bytes-per-frame (or a --mission)")
        if frame_s is None:
            raise errors.ConfigError("--bytes-per-frame needs --frame-ms (or a --mission)")
        period = scrub_period(layout, budget, frame_s)
    assert period is not None
    result = plan(
        layout,
        upsets,
        period,
        mission_years=_number(args.years, "--years", positive=True) or 1.0,
        target_per_day=_number(args.target, "--target", positive=True),
        frame_s=frame_s,
        bytes_per_frame=budget,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(_render(result))
    return 0


def _render(p: Plan) -> str:
    regions = ", ".join(
        f"{r['name']} {r['nbytes']} B x{r['copies']} ({r['blocks']} blocks of {r['block_size']})"
        for r in p.regions
    )
    lines = [
        f"regions:      {regions}",
        f"upsets:       {p.environment}, {p.rate_per_bit_day:.3g} /bit/day x {p.accelerate:g}",
        f"scrub period: {p.period_s:.6g} s"
        + (
            f" ({p.bytes_per_frame} B per {p.frame_s * 1000:g} ms frame)"
            if p.bytes_per_frame
            else ""
        ),
        f"unrepairable: {p.unrepairable_per_day:.3g} /day, {p.unrepairable_per_year:.3g} /year",
        f"P(>= 1 in {p.mission_years:g} y): {p.p_at_least_one:.3g}",
    ]
    if p.target_per_day is not None:
        if p.needed_period_s is None:
            need = "not reachable: even a 1 us period leaves more (one copy only detects)"
        elif p.needed_period_s == math.inf:
            need = "any period"
        else:
            need = f"a period of at most {p.needed_period_s:.4g} s"
            if p.needed_bytes_per_frame is not None:
                need += f" ({p.needed_bytes_per_frame} B per frame)"
            elif p.frame_s is not None and p.needed_period_s < p.frame_s:
                need += " (shorter than a frame: one pass per frame is the most)"
        lines.append(f"target {p.target_per_day:.3g} /day: {need}")
    return "\n".join(lines)
