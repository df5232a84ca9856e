"""``flight link``: the space link's dictionaries and its interface control document.

Kept apart from :mod:`flight.cli` so the link's commands grow in one place; ``flight.cli``
only registers them (:func:`add_link_parser`). Imports happen when a command runs, so
``flight --help`` stays fast on a board.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_link_parser(subparsers: Any) -> None:
    """Add ``link dictionary`` and ``link icd`` to the ``flight`` subcommands."""
    link = subparsers.add_parser("link", help="space link: dictionaries and the ICD")
    link_sub = link.add_subparsers(dest="link_command", metavar="ACTION", required=True)
    dictionary = link_sub.add_parser(
        "dictionary", help="the ground dictionary: F´-style JSON, or XTCE for Yamcs"
    )
    dictionary.add_argument(
        "--format",
        choices=("json", "xtce"),
        default="json",
        help='json (default) or xtce (needs yamcs-pymdb: pip install "flight[ground]")',
    )
    dictionary.add_argument("-o", "--output", help="file to write (default: standard output)")
    dictionary.set_defaults(func=_cmd_dictionary)
    icd = link_sub.add_parser("icd", help="the interface control document (docs/icd.md)")
    icd.add_argument("-o", "--output", help="file to write (default: standard output)")
    icd.set_defaults(func=_cmd_icd)


def _cmd_dictionary(args: argparse.Namespace) -> int:
    from flight.link import dictionary

    if args.format == "xtce":
        text = dictionary.xtce_dictionary()
    else:
        text = json.dumps(dictionary.json_dictionary(), indent=2, ensure_ascii=False) + "\n"
    return _emit(text, args.output)


def _cmd_icd(args: argparse.Namespace) -> int:
    from flight.link import dictionary

    return _emit(dictionary.icd_markdown(), args.output)


def _emit(text: str, output: str | None) -> int:
    if output is None:  # UTF-8 whatever the locale says: the ICD is not ASCII
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()
        return 0
    from flight.atomic import write_atomically

    write_atomically(output, text.encode("utf-8"), strict_directory_sync=False)
    print(f"wrote {output}", file=sys.stderr)
    return 0
