"""``hil link``: the ground console of a board's space link.

* ``hil link send COMMAND [NAME=VALUE ...] --to URL --key KEYFILE``: seal and send one
  telecommand and print its verification stages as they arrive (exit 0 when it completed, 1
  when it failed or was refused, 124 when no final report came in time);
* ``hil link listen --from URL [--json]``: live decoded telemetry, one line per packet;
* ``hil link replay FILE [--json]``: decode a ``flight run --tm-file`` recording;
* ``hil link upload MODEL --to URL --key KEYFILE --partition NAME``: send a model over CFDP
  and activate it (the completion report arrives after its trial frames).

Argument values are typed by the command's declaration (``flight link dictionary``): numbers
as decimal or 0x-hex, enumerations by label, byte strings as hex.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from flight import errors

__all__ = ["add_link_parser", "parse_arguments"]

EXIT_FAILED = 1
EXIT_TIMEOUT = 124


def add_link_parser(sub: Any) -> None:
    link = sub.add_parser("link", help="the space link's ground console")
    cmds = link.add_subparsers(dest="link_command", metavar="ACTION")
    link.set_defaults(func=lambda args: (link.print_help(), 2)[1])

    send = cmds.add_parser("send", help="send one authenticated telecommand")
    send.add_argument("name", metavar="COMMAND", help="a command name (flight link dictionary)")
    send.add_argument("arguments", nargs="*", metavar="NAME=VALUE")
    send.add_argument("--to", required=True, metavar="URL", help="the board's link URL")
    send.add_argument("--key", required=True, metavar="KEYFILE", help="the key file (TOML)")
    send.add_argument("--spi", type=int, help="the key to use (default: the file's active one)")
    send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for reports")
    send.add_argument("--json", action="store_true", help="reports as JSON lines")
    send.set_defaults(func=_send)

    listen = cmds.add_parser("listen", help="print live telemetry")
    listen.add_argument("--from", dest="url", required=True, metavar="URL")
    listen.add_argument("--json", action="store_true", help="JSON lines")
    listen.add_argument("--duration", type=float, help="stop after this many seconds")
    listen.add_argument("--count", type=int, help="stop after this many packets")
    listen.set_defaults(func=_listen)

    replay = cmds.add_parser("replay", help="decode a flight run --tm-file recording")
    replay.add_argument("file")
    replay.add_argument("--json", action="store_true", help="JSON lines")
    replay.set_defaults(func=_replay)

    upload = cmds.add_parser("upload", help="send a model over CFDP and activate it")
    upload.add_argument("model", help="the .flm file")
    upload.add_argument("--to", required=True, metavar="URL")
    upload.add_argument("--key", required=True, metavar="KEYFILE")
    upload.add_argument("--partition", required=True)
    upload.add_argument("--trial-frames", type=int, default=10)
    upload.add_argument("--timeout", type=float, default=120.0)
    upload.add_argument("--json", action="store_true")
    upload.set_defaults(func=_upload)


def parse_arguments(command: str, pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings typed by the command's declaration."""
    from flight.link import catalog

    definition = catalog.COMMANDS_BY_NAME.get(command)
    if definition is None:
        known = ", ".join(sorted(catalog.COMMANDS_BY_NAME))
        raise errors.ConfigError(f"unknown command {command!r}; known: {known}")
    fields = {f.name: f for f in definition.args}
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in fields:
            expected = " ".join(f"{f}=..." for f in fields) or "no arguments"
            raise errors.ConfigError(f"{command}: bad argument {pair!r}; expected {expected}")
        values[name] = _typed(fields[name], text, command)
    missing = [n for n in fields if n not in values]
    if missing:
        raise errors.ConfigError(f"{command}: missing {', '.join(missing)}")
    return values


def _typed(field: Any, text: str, command: str) -> Any:
    kind = field.type.kind
    try:
        if kind in ("enum", "string"):
            return text
        if kind in ("bytes", "blob"):
            return bytes.fromhex(text)
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if kind == "float":
            return float(text)
        return int(text, 0)
    except ValueError:
        raise errors.ConfigError(
            f"{command}: {field.name}={text!r} is not a valid {field.type.name}"
        ) from None


def _print(tm: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(tm.to_json(), default=str), flush=True)
    else:
        print(tm.describe(), flush=True)


def _send(args: argparse.Namespace) -> int:
    from hil.link.ground import GroundStation

    values = parse_arguments(args.name, args.arguments)
    with GroundStation(args.to, args.key, spi=args.spi) as ground:
        sent = ground.send(args.name, **values)
        return _follow(ground, sent, args.timeout, args.json)


def _follow(ground: Any, sent: bytes, timeout: float, as_json: bool) -> int:
    final = None
    for report in ground.follow(sent, timeout):
        _print(report, as_json)
        final = report
    return _verdict(final, timeout)


def _verdict(final: Any, timeout: float) -> int:
    """0 for a completed command, 1 for a refused or failed one, 124 without a final report."""
    if final is None or final.values["stage"] not in (
        "COMPLETION_SUCCESS",
        "COMPLETION_FAILURE",
        "ACCEPTANCE_FAILURE",
        "START_FAILURE",
    ):
        print(f"hil link: no final report within {timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    return 0 if final.values["stage"] == "COMPLETION_SUCCESS" else EXIT_FAILED


def _listen(args: argparse.Namespace) -> int:
    from hil.link.ground import GroundStation

    seen = 0
    end = None if args.duration is None else time.monotonic() + args.duration
    with GroundStation(args.url) as ground:
        while end is None or time.monotonic() < end:
            for tm in ground.receive(timeout=0.2):
                _print(tm, args.json)
                seen += 1
                if args.count is not None and seen >= args.count:
                    return 0
    return 0


def _replay(args: argparse.Namespace) -> int:
    from hil.link.ground import read_tm_file

    bad = 0
    for item in read_tm_file(args.file):
        if isinstance(item, errors.PacketError):
            bad += 1
            print(f"hil link: undecodable packet: {item}", file=sys.stderr)
            continue
        _print(item, args.json)
    return 1 if bad else 0


def _upload(args: argparse.Namespace) -> int:
    from hil.link.ground import GroundStation

    with GroundStation(args.to, args.key) as ground:
        try:
            reports = ground.upload_model(
                args.model, args.partition, trial_frames=args.trial_frames, timeout=args.timeout
            )
        except errors.LinkError as exc:  # the board did not take the file
            print(f"hil link: {exc}", file=sys.stderr)
            return EXIT_FAILED
        for report in reports:
            _print(report, args.json)
        return _verdict(reports[-1] if reports else None, args.timeout)
