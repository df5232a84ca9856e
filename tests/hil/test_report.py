"""The campaign report: summary.json numbers from a store of hand-made runs with known counts,
and an HTML report that is one self-contained file whose plots decode (and render in Chromium).

Every expected number here is worked out by hand from the runs below or by an independent
formula, never read back from the code under test.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flight.errors import ConfigError
from hil.campaign.outcome import Outcome, RunResult
from hil.campaign.report import write_report
from hil.campaign.store import Store

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]
Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
T0 = 1_790_000_000.0
DURATION = 0.5

SPEC = """\
[campaign]
name = "report-test"
seed = 7
runs = 20
[target]
level = "model"
model = "m.flm"
[fault]
model = "seu"
sites = ["weights", "activations"]
[[arm]]
name = "tmr"
redundancy = "tmr"
[[arm]]
name = "none"
redundancy = "none"
[[arm]]
name = "dwc"
redundancy = "dwc"
"""
META = {
    "spec_text": SPEC,
    "spec_sha256": "a" * 64,
    "model_sha256": "b" * 64,
    "flight_version": "1.2.3",
    "seed": 7,
}
PNG_RE = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def run(arm, site, layer, bit, outcome, **kw) -> dict:
    """One run's fields; the index is given when the store is filled."""
    fault = "seu" if outcome not in (Outcome.HANG, Outcome.CRASH) else outcome.value
    return dict(
        arm=arm,
        site=site,
        layer=layer,
        bit=bit,
        byte_offset=-1 if bit < 0 else 4 * bit,
        fault=fault,
        injected=outcome is not Outcome.NOT_INJECTED,
        old="00",
        new="00" if outcome is Outcome.NOT_INJECTED else "40",
        outcome=outcome,
        duration_s=DURATION,
        **kw,
    )


def times(n, r) -> list[dict]:
    return [dict(r) for _ in range(n)]


M, C, D, S = Outcome.MASKED, Outcome.CORRECTED, Outcome.DUE, Outcome.SDC
H, X, NI = Outcome.HANG, Outcome.CRASH, Outcome.NOT_INJECTED

RUNS = [
    # none: 14 runs, 3 not injected, 4 SDC in 11 injected
    *[run("none", "weights", "conv1/w", 30, S, top1_changed=t) for t in (True, False, True)],
    run("none", "weights", "conv1/w", 30, M),
    *times(4, run("none", "weights", "conv1/w", 5, M)),
    run("none", "activations", "relu1", 30, S, top1_changed=True),
    *times(2, run("none", "activations", "relu1", 30, D)),
    *times(3, run("none", "weights", "fc/w", 7, NI)),
    # tmr: 12 runs, 2 not injected, no SDC in 10 injected
    *times(5, run("tmr", "weights", "conv1/w", 30, C, corrected_words=1)),
    *times(3, run("tmr", "weights", "conv1/w", 30, M)),
    *times(2, run("tmr", "activations", "relu1", 30, M)),
    *times(2, run("tmr", "weights", "conv1/w", 30, NI)),
    # dwc: 4 hangs, 3 crashes (one never recovered), one masked weight flip
    *[
        run("dwc", "partition", "", -1, H, detect_s=d, recover_s=r)
        for d, r in ((0.5, 2.0), (0.25, 4.0), (1.0, 3.0), (0.75, 10.0))
    ],
    *[
        run("dwc", "partition", "", -1, X, detect_s=d, recover_s=r)
        for d, r in ((0.1, 1.5), (0.3, 2.5), (0.2, None))
    ],
    run("dwc", "weights", "conv1/w", 3, M),
]
INFERENCE_S = {"none": 4e-4, "tmr": 1e-3, "dwc": 2e-4}


def fill(out: Path, runs=RUNS, inference_s=INFERENCE_S, meta=META) -> Path:
    """A store in ``out`` with ``runs``; run k finishes at T0 + k."""
    store = Store.create(out / "campaign.sqlite", meta)
    try:
        for name, t in inference_s.items():
            store.set_arm(name, name if name in ("none", "tmr", "dwc") else "none", 20, t)
        index: dict[str, int] = {}
        for k, fields in enumerate(runs):
            i = index[fields["arm"]] = index.get(fields["arm"], -1) + 1
            store.add([RunResult(index=i, **fields)], finished=T0 + k)
    finally:
        store.close()
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, str, Path]:
    out = fill(tmp_path_factory.mktemp("campaign"))
    json_path, html_path = write_report(out)
    assert (json_path, html_path) == (out / "summary.json", out / "report.html")
    return json.loads(json_path.read_text()), html_path.read_text(), out


def wilson_textbook(k: int, n: int) -> tuple[float, float]:
    """Wilson (1927) in its usual textbook form, written independently of hil.campaign.stats."""
    p = k / n
    centre = p + Z95**2 / (2 * n)
    spread = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    denominator = 1 + Z95**2 / n
    return (centre - spread) / denominator, (centre + spread) / denominator


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics at rank q (n - 1)."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (pos - lo) * (xs[hi] - xs[lo])


def counts(**nonzero: int) -> dict[str, int]:
    return {o.value: nonzero.get(o.value, 0) for o in Outcome}


# ---- summary.json --------------------------------------------------------------------------


def test_counts_name_every_outcome_and_keep_not_injected_apart(report):
    summary, _, _ = report
    arms = summary["arms"]
    assert list(arms) == ["tmr", "none", "dwc"]  # the spec's order
    assert arms["none"]["counts"] == counts(sdc=4, masked=5, due=2, not_injected=3)
    assert arms["tmr"]["counts"] == counts(corrected=5, masked=5, not_injected=2)
    assert arms["dwc"]["counts"] == counts(hang=4, crash=3, masked=1)
    got = {n: (a["runs"], a["injected"], a["not_injected"]) for n, a in arms.items()}
    assert got == {"none": (14, 11, 3), "tmr": (12, 10, 2), "dwc": (8, 8, 0)}
    assert arms["none"]["top1_changed"] == 3
    assert arms["tmr"]["corrected_words"] == 5


def test_sdc_rate_is_a_wilson_interval_over_the_injected_runs(report):
    summary, _, _ = report
    sdc = summary["arms"]["none"]["sdc_rate"]
    low, high = wilson_textbook(4, 11)
    assert sdc["estimate"] == pytest.approx(4 / 11, rel=1e-12)
    assert (sdc["low"], sdc["high"]) == (
        pytest.approx(low, rel=1e-9),
        pytest.approx(high, rel=1e-9),
    )
    assert (sdc["events"], sdc["trials"], sdc["zero_events"]) == (4, 11, False)


def test_intervals_are_at_the_spec_confidence(tmp_path):
    spec = SPEC.replace("runs = 20", "confidence = 0.99\nmargin = 0.05")
    fill(tmp_path, meta={**META, "spec_text": spec})
    summary = json.loads(write_report(tmp_path)[0].read_text())
    z99 = 2.5758293035489004  # the standard normal's 99.5 % quantile
    assert summary["campaign"]["confidence"] == 0.99
    tmr = summary["arms"]["tmr"]["sdc_rate"]
    assert tmr["high"] == pytest.approx(z99**2 / (10 + z99**2), rel=1e-9)
    assert tmr["confidence"] == 0.99
    assert "SDC rate (99%)" in (tmp_path / "report.html").read_text()


def test_zero_events_report_the_upper_bound(report):
    summary, _, _ = report
    sdc = summary["arms"]["tmr"]["sdc_rate"]
    # k = 0: the Wilson upper bound is z^2 / (n + z^2)
    assert sdc["high"] == pytest.approx(Z95**2 / (10 + Z95**2), rel=1e-9)
    assert (sdc["estimate"], sdc["low"], sdc["zero_events"], sdc["trials"]) == (0.0, 0.0, True, 10)
    assert summary["campaign"]["confidence"] == sdc["confidence"] == 0.95


def test_breakdowns_per_site_layer_and_bit(report):
    summary, _, _ = report
    none, dwc = summary["arms"]["none"], summary["arms"]["dwc"]

    def brief(strata):
        return {
            k: (s["runs"], s["not_injected"], s["sdc_rate"]["events"], s["sdc_rate"]["trials"])
            for k, s in strata.items()
        }

    assert brief(none["by_site"]) == {"weights": (11, 3, 3, 8), "activations": (3, 0, 1, 3)}
    assert brief(none["by_layer"]) == {
        "conv1/w": (8, 0, 3, 8),
        "relu1": (3, 0, 1, 3),
        "fc/w": (3, 3, 0, 0),
    }
    assert brief(none["by_bit"]) == {"5": (4, 0, 0, 4), "7": (3, 3, 0, 0), "30": (7, 0, 4, 7)}
    assert none["by_bit"]["30"]["counts"] == counts(sdc=4, masked=1, due=2)
    low, high = wilson_textbook(4, 7)
    rate30 = none["by_bit"]["30"]["sdc_rate"]
    assert (rate30["low"], rate30["high"]) == (pytest.approx(low), pytest.approx(high))
    # a stratum with no injected run has no estimate and says nothing: [0, 1]
    rate7 = none["by_bit"]["7"]["sdc_rate"]
    assert (rate7["estimate"], rate7["low"], rate7["high"]) == (None, 0.0, 1.0)
    # hangs and crashes have no bit and no layer: only the per-site breakdown holds them
    assert list(dwc["by_bit"]) == ["3"] and list(dwc["by_layer"]) == ["conv1/w"]
    assert brief(dwc["by_site"]) == {"partition": (7, 0, 0, 7), "weights": (1, 0, 0, 1)}


def test_recovery_time_distribution(report):
    summary, _, _ = report
    recovery = summary["arms"]["dwc"]["recovery"]
    hang_recover, hang_detect = [2.0, 4.0, 3.0, 10.0], [0.5, 0.25, 1.0, 0.75]
    assert recovery["hang"]["recover_s"] == {
        "count": 4,
        "min": 2.0,
        "median": pytest.approx(3.5),
        "p90": pytest.approx(percentile(hang_recover, 0.9)),  # 8.2
        "max": 10.0,
    }
    assert recovery["hang"]["detect_s"]["p90"] == pytest.approx(percentile(hang_detect, 0.9))
    assert recovery["hang"]["detect_s"]["median"] == pytest.approx(0.625)
    crash = recovery["crash"]
    assert (crash["runs"], crash["detected"], crash["recovered"]) == (3, 3, 2)
    assert crash["recover_s"]["p90"] == pytest.approx(percentile([1.5, 2.5], 0.9))  # 2.4
    assert summary["arms"]["none"]["recovery"]["hang"]["recover_s"] == {
        "count": 0,
        "min": None,
        "median": None,
        "p90": None,
        "max": None,
    }


def test_overhead_is_relative_to_the_unprotected_arm(report):
    summary, _, _ = report
    got = {n: a["overhead"] for n, a in summary["arms"].items()}
    # dwc is the fastest here, but the baseline is the arm without redundancy
    assert {n: o["baseline"] for n, o in got.items()} == dict.fromkeys(got, "none")
    assert got["tmr"]["relative"] == pytest.approx(2.5)
    assert got["dwc"]["relative"] == pytest.approx(0.5)
    assert got["none"] == {"inference_s": 4e-4, "relative": 1.0, "baseline": "none"}


def test_overhead_without_an_unprotected_arm_is_relative_to_the_fastest(tmp_path):
    runs = [r for r in RUNS if r["arm"] != "none"]
    fill(tmp_path, runs, {"tmr": 1e-3, "dwc": 4e-4})
    summary = json.loads(write_report(tmp_path)[0].read_text())
    assert summary["arms"]["tmr"]["overhead"]["baseline"] == "dwc"
    assert summary["arms"]["tmr"]["overhead"]["relative"] == pytest.approx(2.5)


def test_campaign_metadata(report):
    summary, _, _ = report
    camp = summary["campaign"]
    n = len(RUNS)
    assert (camp["name"], camp["seed"], camp["flight_version"]) == ("report-test", 7, "1.2.3")
    assert (camp["spec_sha256"], camp["runs"]) == ("a" * 64, n)
    assert camp["started"] == T0 - DURATION  # the first run started before it finished
    assert camp["finished"] == T0 + n - 1
    assert camp["runs_per_s"] == pytest.approx(n / (n - 1 + DURATION))


def test_summary_is_strict_json(report):
    _, _, out = report

    def refuse(name):
        raise AssertionError(f"summary.json holds {name}, which is not JSON")

    json.loads((out / "summary.json").read_text(), parse_constant=refuse)
    assert not list(out.glob("*.tmp"))


# ---- report.html ---------------------------------------------------------------------------


def test_html_is_self_contained_with_one_png_per_plot(report):
    from matplotlib import image

    _, page, _ = report
    assert not re.search(r"https?://", page)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page)
    pngs = PNG_RE.findall(page)
    assert len(pngs) == page.count("<img ") == 5  # outcomes, bits, layers, recovery, timeline
    for data in pngs:
        pixels = image.imread(io.BytesIO(base64.b64decode(data, validate=True)), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 300
        assert pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.01  # not blank


def test_html_says_so_when_there_is_no_hang_or_crash(tmp_path):
    fill(tmp_path, [r for r in RUNS if r["arm"] != "dwc"])
    page = write_report(tmp_path)[1].read_text()
    assert "no hangs or crashes" in page
    assert len(PNG_RE.findall(page)) == 4


def test_html_escapes_names_from_the_store(tmp_path):
    runs = [*RUNS, run("none", "weights", "<b>evil</b>", 1, M)]
    fill(tmp_path, runs)
    page = write_report(tmp_path)[1].read_text()
    assert "&lt;b&gt;evil&lt;/b&gt;" in page and "<b>evil</b>" not in page


def test_a_campaign_without_runs_yet_still_reports(tmp_path):
    fill(tmp_path, [])
    summary_path, html_path = write_report(tmp_path)
    summary = json.loads(summary_path.read_text())
    assert summary["arms"]["tmr"]["runs"] == 0
    rate = summary["arms"]["tmr"]["sdc_rate"]
    # no trial, no claim: not "zero events", and the interval is all of [0, 1]
    assert (rate["estimate"], rate["low"], rate["high"], rate["zero_events"]) == (None, 0, 1, False)
    assert summary["campaign"]["started"] is None and summary["campaign"]["runs_per_s"] is None
    page = html_path.read_text()
    assert "no runs yet" in page and "no bit-level injections" in page
    assert len(PNG_RE.findall(page)) == 1  # the (empty) outcome mix, arms listed


# ---- refusals ------------------------------------------------------------------------------


def test_without_matplotlib_it_names_the_extra_and_writes_nothing(tmp_path, monkeypatch):
    fill(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ConfigError, match=r"matplotlib.*\bhil\b"):
        write_report(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaign.sqlite"]


def test_a_directory_without_a_store_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no campaign store"):
        write_report(tmp_path)


def test_a_corrupt_store_is_refused_and_left_alone(tmp_path):
    junk = b"SQLite format 3\x00" + bytes(range(256)) * 8
    (tmp_path / "campaign.sqlite").write_bytes(junk)
    with pytest.raises(ConfigError):
        write_report(tmp_path)
    assert (tmp_path / "campaign.sqlite").read_bytes() == junk
    assert not (tmp_path / "summary.json").exists()


# ---- in a browser --------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_the_report_renders_in_headless_chromium(report, tmp_path):
    import numpy as np
    from matplotlib import image

    _, _, out = report
    png = tmp_path / "shot.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "screenshot_report.py"), str(out), str(png)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert png.stat().st_size > 30_000  # a page of plots, not an empty or error page
    pixels = image.imread(png)
    assert pixels.shape[:2] == (2400, 1280)
    # the plots are there: the outcome bars' green covers a large block of the page
    green = np.array([0x4C, 0x9F, 0x70]) / 255
    assert (np.abs(pixels[..., :3] - green).max(axis=-1) < 4 / 255).sum() > 10_000
