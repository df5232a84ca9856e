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
