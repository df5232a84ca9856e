"""Long campaigns (``pytest -m slow``): 1,000-frame `flight run` processes in a radiation
environment at x1e6, as an operator would run them on a test rig.

* a solar flare with the storm guard on: TMR holds, every output is corrected or withheld,
  none is wrong (no SDC) and nothing escalates;
* the same seeded flare with the guard off (``storm_upset_threshold = 0``), the control: vote
  alarms restart the partition until its ladder degrades it to simplex, which then delivers
  wrong outputs;
* the South Atlantic Anomaly: no wrong output, demo accuracy.

The recovery windows are widened to an hour so that the escalations depend on the seeded
upsets only, not on how fast a loaded machine runs the frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flight.mission import default_mission

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

FRAMES = 1000


def _mission_file(path: Path, storm_upset_threshold: int) -> Path:
    """The default mission in test mode, with hour-long vote-alarm and restart windows."""
    text = Path(default_mission().source).read_text()
    for old, new in (
        ("test_mode = false ", "test_mode = true "),
        ("vote_alarm_period_s = 10 ", "vote_alarm_period_s = 3600 "),
        ("restart_period_s = 60 ", "restart_period_s = 3600 "),
        ("storm_upset_threshold = 10 ", f"storm_upset_threshold = {storm_upset_threshold} "),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)
    return path


def _run(state_dir: Path, environment: str, *extra: str) -> dict:
    """`flight run --fast --json` for FRAMES frames at x1e6; its summary."""
    proc = subprocess.run(
        [
            sys.executable, "-m", "flight.cli", "run", "--environment", environment,
            "--accelerate", "1e6", "--frames", str(FRAMES), "--fast", "--json",
            "--state-dir", str(state_dir), *extra,
        ],
        capture_output=True,
        text=True,
        timeout=3000,
        cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    figures = {
        k: summary[k]
        for k in (
            "frames", "delivered", "corrected", "withheld", "unavailable", "sdc", "escalations",
            "restarts", "scrub_repairs", "golden_reloads", "weights_reverified", "accuracy",
            "elapsed_s",
        )
    }  # fmt: skip
    figures["mode"] = summary["partitions"]["classifier"]["mode"]
    figures["upsets"] = sum(summary["upsets"].values())
    print(f"\n{environment} {' '.join(extra)}: {figures}")  # the campaign's figures (-s shows)
    # every frame's inference is accounted for: delivered, withheld, or skipped while restarting
    assert summary["frames"] == FRAMES
    assert summary["delivered"] + summary["withheld"] + summary["unavailable"] == FRAMES
    return summary


@pytest.fixture(scope="module")
def guarded_flare(tmp_path_factory) -> dict:
    """The flare with the storm guard on (one run for the two tests below)."""
    tmp = tmp_path_factory.mktemp("guarded")
    mission = _mission_file(tmp / "guarded.toml", storm_upset_threshold=10)
    return _run(tmp / "state", "flare", "--mission", str(mission))


def test_a_1000_frame_flare_with_the_storm_guard_keeps_tmr(guarded_flare):
    summary = guarded_flare
    assert summary["escalations"] == 0 and summary["restarts"] == 0, summary
    assert summary["partitions"]["classifier"]["mode"] == "tmr"
    assert summary["events"]["VOTE_ESCALATION_HELD"] > 0  # the guard held vote escalations
    assert summary["corrected"] > 0 and summary["withheld"] > 0  # TMR masked, or withheld
    assert summary["accuracy"] >= 0.95
    assert sum(summary["upsets"].values()) > 10_000  # the flare really hit


def test_a_1000_frame_flare_with_the_storm_guard_delivers_no_wrong_output(guarded_flare):
    assert guarded_flare["sdc"] == 0, guarded_flare


def test_a_1000_frame_flare_without_the_storm_guard_degrades_and_delivers_wrong_outputs(
    tmp_path,
):
    mission = _mission_file(tmp_path / "off.toml", storm_upset_threshold=0)
    summary = _run(tmp_path / "state", "flare", "--mission", str(mission))
    assert summary["escalations"] > 0 and summary["restarts"] > 0, summary
    assert summary["partitions"]["classifier"]["mode"] == "none"  # TMR -> DWC -> simplex
    assert summary["events"].get("VOTE_ESCALATION_HELD", 0) == 0
    assert summary["sdc"] > 0, summary  # simplex delivers what TMR would have masked


def test_a_1000_frame_saa_run_delivers_no_wrong_output(tmp_path):
    summary = _run(tmp_path / "state", "saa")
    assert summary["sdc"] == 0, summary
    assert summary["escalations"] == 0, summary
    assert summary["corrected"] > 0 and summary["scrub_repairs"] > 0
    assert summary["accuracy"] >= 0.95
