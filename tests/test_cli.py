"""The installed ``flight`` command, run as a user would."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest


def _flight(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("flight")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "flight.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")


def test_selftest_passes_and_reports_json():
    proc = _flight("selftest", "--json", "--region-mib", "2", "--upsets", "20", "--seed", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is True
    assert result["facts"]["upsets_injected"] == 20
    assert all(result["checks"].values()) and len(result["checks"]) >= 8


def test_selftest_fails_when_a_check_fails(monkeypatch):
    from flight import cli, selftest

    def broken(**kwargs):
        result = selftest.SelfTestResult()
        result.checks["vote_masks_upset"] = False
        return result

    monkeypatch.setattr(selftest, "run_selftest", broken)
    assert cli.main(["selftest"]) == 1


@pytest.mark.parametrize("args", [[], ["--help"]])
def test_help(args):
    proc = _flight(*args)
    assert "selftest" in proc.stdout


def _choices(parser, *path: str) -> list[str]:
    """The choices of option ``path[-1]`` of the subcommand ``path[:-1]``."""
    *commands, option = path
    for command in commands:
        sub = next(a for a in parser._actions if a.dest.endswith("command"))
        parser = sub.choices[command]
    return next(a for a in parser._actions if option in a.option_strings).choices


def test_choices_come_from_the_source_tables(monkeypatch):
    """Not a copy of the lists: a profile added to the table is a choice at once."""
    from flight import cli, environments, modes, radiation

    monkeypatch.setitem(environments.ENVIRONMENTS, "jovian", environments.FLARE)
    parser = cli.build_parser()
    assert "jovian" in _choices(parser, "run", "--environment")
    assert list(_choices(parser, "run", "--environment")) == list(radiation.ENVIRONMENTS)
    assert list(_choices(parser, "model", "run", "--redundancy")) == list(modes.MODES)


def test_building_the_parser_imports_no_numpy():
    """`flight --help` on a board must not pay for numpy (or numba) to list the choices."""
    script = (
        "import sys; from flight import cli; cli.build_parser(); "
        "print(sorted(m for m in ('numpy', 'numba', 'flight.radiation') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
