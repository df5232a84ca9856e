"""Campaign reports: ``summary.json`` for scripts and sign-off checks, ``report.html`` for people.

Both are computed from the campaign's SQLite store alone (``DIR/campaign.sqlite``), so a report
can be written while a campaign still runs, after it was killed, or on another machine. The HTML
is one self-contained file (inline CSS, plots as inline PNG, no external URL) because it is read
where there is no network: a ground station, an archive, an e-mail attachment.

Decisions the numbers rest on (docs/hil.md, "Reading the report"):

* a not-injected run (the read-back showed no change) is counted apart and is not a trial: every
  rate's denominator is ``injected`` = runs - not-injected;
* rates are Wilson score intervals at the spec's ``confidence`` (default 95 %); with zero
  events the estimate is 0 and the bound that matters is ``high`` (``zero_events`` says so);
* the per-bit breakdown leaves out runs without a bit position (bit -1: hangs, crashes), the
  per-layer breakdown runs without a layer name; the per-site breakdown holds every run;
* overhead is fault-free inference time relative to the unprotected arm (redundancy ``none``,
  the fastest if several), else to the fastest arm;
* percentiles interpolate linearly between order statistics (numpy's default).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import sqlite3
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flight.errors import ConfigError
from hil.campaign.outcome import Outcome, RunResult
from hil.campaign.stats import wilson
from hil.campaign.store import Store

__all__ = ["DEFAULT_CONFIDENCE", "STORE_NAME", "summarize", "write_report"]

STORE_NAME = "campaign.sqlite"
SUMMARY_NAME = "summary.json"
HTML_NAME = "report.html"
DEFAULT_CONFIDENCE = 0.95  # when the stored spec names none (the spec's own default)
TIMED_OUTCOMES = (Outcome.HANG, Outcome.CRASH)

# One colour per outcome, the same in every plot; not-injected is grey: it is not a result.
COLOURS = {
    Outcome.MASKED: "#4c9f70",
    Outcome.CORRECTED: "#3b75af",
    Outcome.DUE: "#e0a030",
    Outcome.SDC: "#c0392b",
    Outcome.HANG: "#8e44ad",
    Outcome.CRASH: "#34495e",
    Outcome.NOT_INJECTED: "#bbbbbb",
}
ARM_COLOURS = ("#c0392b", "#3b75af", "#4c9f70", "#e0a030", "#8e44ad", "#34495e")
ARM_LINES = ("-", "--", ":", "-.")


def write_report(out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``report.html`` into ``out_dir`` from its campaign store.

    Both files are replaced atomically, so a reader never sees half a report. Raises
    :class:`ConfigError` without writing anything if matplotlib (the ``hil`` extra) is missing
    or the directory holds no campaign store.
    """
    out = Path(out_dir)
    figure_cls = _figure_class()
    summary, series = summarize(out / STORE_NAME)
    text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
    page = render_html(summary, series, figure_cls)
    return _replace(out / SUMMARY_NAME, text), _replace(out / HTML_NAME, page)


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


def rate(k: int, n: int, confidence: float) -> dict[str, Any]:
    """A Wilson interval as JSON; ``estimate`` is null when there was no trial at all."""
    interval = wilson(k, n, confidence)
    return {
        "estimate": _finite(interval.estimate),
        "low": float(interval.low),
        "high": float(interval.high),
        "events": k,
        "trials": n,
        "zero_events": k == 0 and n > 0,
        "confidence": confidence,
    }


def distribution(values: Sequence[float]) -> dict[str, Any]:
    """count, min, median, p90, max (null when empty)."""
    if not values:
        return {"count": 0, "min": None, "median": None, "p90": None, "max": None}
    data = np.asarray(values, dtype=float)
    return {
        "count": len(values),
        "min": float(data.min()),
        "median": float(np.percentile(data, 50)),
        "p90": float(np.percentile(data, 90)),
        "max": float(data.max()),
    }


@dataclass
class _Tally:
    """Outcome counts of one stratum."""

    counts: Counter[Outcome] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome] += 1

    def to_json(self, confidence: float) -> dict[str, Any]:
        runs = sum(self.counts.values())
        not_injected = self.counts[Outcome.NOT_INJECTED]
        injected = runs - not_injected
        return {
            "runs": runs,
            "injected": injected,
            "not_injected": not_injected,
            "counts": {o.value: self.counts[o] for o in Outcome},
            "sdc_rate": rate(self.counts[Outcome.SDC], injected, confidence),
        }


@dataclass
class _Arm:
    """Everything one arm's runs add up to."""

    name: str
    redundancy: str | None = None
    planned: int | None = None
    inference_s: float | None = None
    total: _Tally = field(default_factory=_Tally)
    sites: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    layers: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    bits: dict[int, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    top1_changed: int = 0
    corrected_words: int = 0
    timed: dict[Outcome, list[RunResult]] = field(default_factory=lambda: defaultdict(list))

    def add(self, result: RunResult) -> None:
        outcome = Outcome(result.outcome)
        self.total.add(outcome)
        self.sites[result.site].add(outcome)
        if result.layer:
            self.layers[result.layer].add(outcome)
        if result.bit >= 0:
            self.bits[result.bit].add(outcome)
        if outcome is Outcome.SDC and result.top1_changed:
            self.top1_changed += 1
        self.corrected_words += result.corrected_words
        if outcome in TIMED_OUTCOMES:
            self.timed[outcome].append(result)

    def to_json(self, overhead: dict[str, Any], confidence: float) -> dict[str, Any]:
        c = confidence
        return {
            "redundancy": self.redundancy,
            "planned": self.planned,
            **self.total.to_json(c),
            "top1_changed": self.top1_changed,
            "corrected_words": self.corrected_words,
            "overhead": overhead,
            "by_site": {k: self.sites[k].to_json(c) for k in sorted(self.sites)},
            "by_layer": {k: self.layers[k].to_json(c) for k in sorted(self.layers)},
            "by_bit": {str(k): self.bits[k].to_json(c) for k in sorted(self.bits)},
            "recovery": {o.value: _recovery(self.timed[o]) for o in TIMED_OUTCOMES},
        }


def _recovery(results: list[RunResult]) -> dict[str, Any]:
    detect = [r.detect_s for r in results if r.detect_s is not None]
    recover = [r.recover_s for r in results if r.recover_s is not None]
    return {
        "runs": len(results),
        "detected": len(detect),
        "recovered": len(recover),
        "detect_s": distribution(detect),
        "recover_s": distribution(recover),
    }


@dataclass
class Series:
    """What the plots need beyond the summary: when each arm's runs finished."""

    finished: dict[str, list[float]]
    started: float | None
    recovery: dict[str, dict[str, list[float]]]  # arm -> outcome -> recover_s values
    spec_text: str


def summarize(store_path: Path) -> tuple[dict[str, Any], Series]:
    """Read a campaign store (read-only) and compute the summary and the plot series."""
    if not store_path.is_file():
        raise ConfigError(f"{store_path}: no campaign store here (run `hil campaign run` first)")
    store = Store.open(store_path)  # refuses a corrupt or foreign file, never rewrites it
    try:
        meta = store.meta()
        arm_rows = store.arms()
        results = list(store.results())
    finally:
        store.close()
    times = _finish_times(store_path)
    spec = _spec_tables(meta.get("spec_text", ""))

    # Arms in the spec's order (the order the reader chose), then any others by name.
    order = [a.get("name") for a in spec.get("arm", []) if isinstance(a, dict)]
    arms: dict[str, _Arm] = {}
    for name in [n for n in order if n in arm_rows] + sorted(set(arm_rows) - set(order)):
        row = arm_rows[name]
        arms[name] = _Arm(name, row.redundancy, row.planned, row.inference_s)
    for result in results:
        arms.setdefault(result.arm, _Arm(result.arm)).add(result)

    overheads = _overheads(arms.values())
    finished: dict[str, list[float]] = {name: [] for name in arms}
    for arm, end, _duration in times:
        finished[arm].append(end)
    for values in finished.values():
        values.sort()
    starts = [end - duration for _arm, end, duration in times]
    started = min(starts) if starts else None
    last = max((end for _arm, end, _d in times), default=None)

    confidence = _confidence(spec)
    summary = {
        "campaign": _campaign(meta, spec, len(results), started, last),
        "arms": {name: arm.to_json(overheads[name], confidence) for name, arm in arms.items()},
    }
    recovery = {
        name: {
            o.value: sorted(r.recover_s for r in arm.timed[o] if r.recover_s is not None)
            for o in TIMED_OUTCOMES
        }
        for name, arm in arms.items()
    }
    return summary, Series(finished, started, recovery, meta.get("spec_text", ""))


def _finish_times(path: Path) -> list[tuple[str, float, float]]:
    """(arm, finished, duration_s) per run: the store's API does not give when a run ended.
    Read-only, so a report can be taken while the campaign is still writing."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        return conn.execute("SELECT arm, finished, duration_s FROM runs").fetchall()
    finally:
        conn.close()


def _overheads(arms: Iterable[_Arm]) -> dict[str, dict[str, Any]]:
    arms = list(arms)
    timed = {a.name: a.inference_s for a in arms if a.inference_s is not None and a.inference_s > 0}
    unprotected = [name for name in timed if _arm_redundancy(arms, name) == "none"]
    pool = unprotected or list(timed)
    baseline = min(pool, key=timed.__getitem__) if pool else None
    out = {}
    for arm in arms:
        t = timed.get(arm.name)
        relative = t / timed[baseline] if t is not None and baseline is not None else None
        out[arm.name] = {"inference_s": arm.inference_s, "relative": relative, "baseline": baseline}
    return out


def _arm_redundancy(arms: list[_Arm], name: str) -> str | None:
    return next(a.redundancy for a in arms if a.name == name)


def _campaign(
    meta: dict[str, str],
    spec: dict[str, Any],
    runs: int,
    started: float | None,
    finished: float | None,
) -> dict[str, Any]:
    wall = finished - started if started is not None and finished is not None else None
    return {
        "name": spec.get("campaign", {}).get("name") or meta.get("name"),
        "seed": _int_or_none(meta.get("seed")),
        "level": spec.get("target", {}).get("level"),
        "fault_model": spec.get("fault", {}).get("model"),
        "sites": spec.get("fault", {}).get("sites"),
        "flight_version": meta.get("flight_version"),
        "spec_sha256": meta.get("spec_sha256"),
        "model_sha256": meta.get("model_sha256"),
        "created": _number_or_text(meta.get("created")),
        "schema_version": meta.get("schema_version"),
        "runs": runs,
        "started": started,
        "finished": finished,
        "started_utc": _utc(started),
        "finished_utc": _utc(finished),
        "wall_s": wall,
        "runs_per_s": runs / wall if wall else None,
        "confidence": _confidence(spec),
    }


def _confidence(spec: dict[str, Any]) -> float:
    """The spec's confidence is the level of every reported interval (docs/hil.md)."""
    value = spec.get("campaign", {}).get("confidence", DEFAULT_CONFIDENCE)
    return float(value) if isinstance(value, int | float) and 0 < value < 1 else DEFAULT_CONFIDENCE


def _level(summary: dict[str, Any]) -> str:
    return f"{summary['campaign']['confidence']:.0%}"


def _spec_tables(text: str) -> dict[str, Any]:
    """The spec as stored; a report must still come out if it no longer parses."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _figure_class() -> type:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError(
            "the HTML report needs matplotlib: pip install 'flight[hil]' (the hil extra)"
        ) from exc
    return Figure


def _png(fig: Any) -> str:
    """The figure as base64 PNG, rendered by Agg whatever the process's backend is."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plot_outcomes(summary: dict[str, Any], figure: type) -> Any:
    arms = summary["arms"]
    names = list(arms)
    fig = figure(figsize=(9, 1.2 + 0.6 * max(len(names), 1)), layout="constrained")
    ax = fig.add_subplot()
    left = np.zeros(len(names))
    for outcome in Outcome:
        shares = np.array(
            [_share(arms[n]["counts"][outcome.value], arms[n]["runs"]) for n in names]
        )
        ax.barh(names, shares, left=left, color=COLOURS[outcome], label=outcome.value)
        left += shares
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of runs")
    ax.set_title("Outcome mix per arm")
    fig.legend(ncols=len(Outcome), loc="outside lower center", fontsize=8)
    return fig


def _share(k: int, n: int) -> float:
    return k / n if n else 0.0


def _interval_points(
    strata: dict[str, dict[str, Any]], keys: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Estimates and asymmetric error bars; an untried stratum is left out (nan)."""
    est = np.array(
        [_nan(strata[k]["sdc_rate"]["estimate"]) if k in strata else np.nan for k in keys]
    )
    low = np.array([strata[k]["sdc_rate"]["low"] if k in strata else np.nan for k in keys])
    high = np.array([strata[k]["sdc_rate"]["high"] if k in strata else np.nan for k in keys])
    # Rounding can put a bound a hair past the estimate; matplotlib refuses negative bars.
    return est, np.fmax(np.vstack([est - low, high - est]), 0.0)


def _plot_bits(summary: dict[str, Any], figure: type) -> Any | None:
    arms = {n: a["by_bit"] for n, a in summary["arms"].items() if a["by_bit"]}
    if not arms:
        return None
    keys = [str(b) for b in range(32)]
    fig = figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.6 / len(arms)
    colours = _arm_colours(summary["arms"])
    for i, (name, strata) in enumerate(arms.items()):
        est, err = _interval_points(strata, keys)
        x = np.arange(32) + (i - (len(arms) - 1) / 2) * width
        ax.errorbar(x, est, yerr=err, fmt="o", ms=3, capsize=2, color=colours[name], label=name)
    ax.set_xticks(range(0, 32, 2))
    ax.set_xlim(-0.8, 31.8)
    ax.set_xlabel("bit position in the 32-bit word")
    ax.set_ylabel(f"SDC rate ({_level(summary)} Wilson)")
    ax.set_title("SDC rate against bit position")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _plot_layers(summary: dict[str, Any], figure: type) -> Any | None:
    arms = {n: a["by_layer"] for n, a in summary["arms"].items() if a["by_layer"]}
    if not arms:
        return None
    layers = sorted({layer for strata in arms.values() for layer in strata})
    fig = figure(
        figsize=(9, 1.5 + 0.32 * len(layers) * max(1, len(arms) / 2)), layout="constrained"
    )
    ax = fig.add_subplot()
    height = 0.8 / len(arms)
    colours = _arm_colours(summary["arms"])
    for i, (name, strata) in enumerate(arms.items()):
        est, err = _interval_points(strata, layers)
        y = np.arange(len(layers)) + (i - (len(arms) - 1) / 2) * height
        ax.barh(
            y,
            np.nan_to_num(est),
            height=height,
            xerr=err,
            color=colours[name],
            alpha=0.8,
            error_kw={"capsize": 2, "elinewidth": 1},
            label=name,
        )
    ax.set_yticks(range(len(layers)), layers, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"SDC rate ({_level(summary)} Wilson)")
    ax.set_title("Vulnerability per layer")
    ax.grid(axis="x", alpha=0.3)
    ax.legend()
    return fig


def _plot_recovery(series: Series, figure: type) -> Any | None:
    # colour: the outcome (as in the outcome mix); line style: the arm
    curves = [
        (f"{arm} {outcome}", values, COLOURS[Outcome(outcome)], ARM_LINES[i % len(ARM_LINES)])
        for i, (arm, by_outcome) in enumerate(series.recovery.items())
        for outcome, values in by_outcome.items()
        if values
    ]
    if not curves:
        return None
    fig = figure(figsize=(9, 3.8), layout="constrained")
    hist, cdf = fig.subplots(1, 2)
    for label, values, colour, line in curves:
        bins = min(30, max(5, len(values) // 3))
        hist.hist(values, bins=bins, histtype="step", lw=1.5, ls=line, color=colour, label=label)
        ys = np.arange(1, len(values) + 1) / len(values)
        cdf.step(values, ys, where="post", color=colour, ls=line, label=label)
    hist.set_xlabel("recovery time (s)")
    hist.set_ylabel("runs")
    hist.set_title("Recovery time")
    cdf.set_xlabel("recovery time (s)")
    cdf.set_ylabel("share recovered")
    cdf.set_ylim(0, 1.02)
    cdf.set_title("Recovery time, cumulative")
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=8)
    return fig


def _arm_colours(arms: Iterable[str]) -> dict[str, str]:
    """One colour per arm, by its place in the report, the same in every plot."""
    return {name: ARM_COLOURS[i % len(ARM_COLOURS)] for i, name in enumerate(arms)}


def _plot_timeline(series: Series, figure: type) -> Any | None:
    if series.started is None:
        return None
    fig = figure(figsize=(9, 3.5), layout="constrained")
    ax = fig.add_subplot()
    every = sorted(t for values in series.finished.values() for t in values)
    colours = _arm_colours(series.finished)
    for name, values in series.finished.items():
        if values:
            ax.step(
                np.array(values) - series.started,
                np.arange(1, len(values) + 1),
                where="post",
                color=colours[name],
                label=name,
            )
    if len(series.finished) > 1:
        ax.step(
            np.array(every) - series.started,
            np.arange(1, len(every) + 1),
            where="post",
            color="black",
            ls="--",
            label="all arms",
        )
    ax.set_xlabel("seconds since the first run started")
    ax.set_ylabel("injections done")
    ax.set_title("Injections over time")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; } td.l, th.l { text-align: left; }
img { max-width: 100%; display: block; margin: 0.6em 0; }
.empty { color: #666; font-style: italic; } pre { background: #f6f6f6; padding: 0.6em; }
"""


def render_html(summary: dict[str, Any], series: Series, figure: type) -> str:
    """The whole report as one string: plots, then the tables behind them."""
    camp = summary["campaign"]
    title = f"Campaign {camp['name'] or '(unnamed)'}"
    level = _level(summary)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _meta_table(camp),
        "<h2>Outcomes per arm</h2>",
        _plot_or_text(_plot_outcomes(summary, figure), "outcome mix per arm", "no arms"),
        _arms_table(summary["arms"], level),
        "<h2>SDC rate against bit position</h2>",
        _plot_or_text(_plot_bits(summary, figure), "SDC rate per bit", "no bit-level injections"),
        _strata_tables(summary["arms"], "by_bit", "bit", level),
        "<h2>Vulnerability per layer</h2>",
        _plot_or_text(_plot_layers(summary, figure), "SDC rate per layer", "no named layers"),
        _strata_tables(summary["arms"], "by_layer", "layer", level),
        "<h2>Per site</h2>",
        _strata_tables(summary["arms"], "by_site", "site", level),
        "<h2>Recovery time (hangs and crashes)</h2>",
        _plot_or_text(_plot_recovery(series, figure), "recovery times", "no hangs or crashes"),
        _recovery_table(summary["arms"]),
        "<h2>Injections over time</h2>",
        _plot_or_text(_plot_timeline(series, figure), "injections over time", "no runs yet"),
        "<h2>Spec</h2>",
        f"<details><summary>campaign spec</summary><pre>{_e(series.spec_text)}</pre></details>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _plot_or_text(fig: Any | None, alt: str, empty: str) -> str:
    if fig is None:
        return f'<p class="empty">{_e(empty)}</p>'
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{_png(fig)}">'


def _table(header: list[str], rows: Iterable[list[Any]], left: int = 1) -> str:
    def cells(tag: str, row: list[Any]) -> str:
        return "".join(
            f"<{tag}{' class=l' if i < left else ''}>{_e(_fmt(v))}</{tag}>"
            for i, v in enumerate(row)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def _meta_table(camp: dict[str, Any]) -> str:
    keys = (
        "name",
        "seed",
        "level",
        "fault_model",
        "sites",
        "flight_version",
        "spec_sha256",
        "model_sha256",
        "started_utc",
        "finished_utc",
        "wall_s",
        "runs",
        "runs_per_s",
    )
    return _table(["", "value"], ([k, camp[k]] for k in keys), left=2)


def _rate_text(r: dict[str, Any]) -> str:
    if r["estimate"] is None:
        return "n/a"
    bound = f"≤ {r['high']:.3g}" if r["zero_events"] else f"[{r['low']:.3g}, {r['high']:.3g}]"
    return f"{r['estimate']:.3g} {bound}"


def _arms_table(arms: dict[str, Any], level: str) -> str:
    header = [
        "arm",
        "redundancy",
        "runs",
        "injected",
        *[o.value for o in Outcome],
        f"SDC rate ({level})",
        "top-1 changed",
        "inference (s)",
        "overhead",
    ]
    rows = [
        [
            name,
            a["redundancy"],
            a["runs"],
            a["injected"],
            *[a["counts"][o.value] for o in Outcome],
            _rate_text(a["sdc_rate"]),
            a["top1_changed"],
            a["overhead"]["inference_s"],
            _times(a["overhead"]["relative"]),
        ]
        for name, a in arms.items()
    ]
    return _table(header, rows, left=2)


def _strata_tables(arms: dict[str, Any], kind: str, label: str, level: str) -> str:
    header = [
        "arm",
        label,
        "runs",
        "not injected",
        "sdc",
        f"SDC rate ({level})",
        *[o.value for o in Outcome if o not in (Outcome.SDC, Outcome.NOT_INJECTED)],
    ]
    rows = [
        [
            name,
            key,
            s["runs"],
            s["not_injected"],
            s["counts"]["sdc"],
            _rate_text(s["sdc_rate"]),
            *[
                s["counts"][o.value]
                for o in Outcome
                if o not in (Outcome.SDC, Outcome.NOT_INJECTED)
            ],
        ]
        for name, a in arms.items()
        for key, s in a[kind].items()
    ]
    if not rows:
        return ""
    return f"<details><summary>per {_e(label)}</summary>{_table(header, rows, left=2)}</details>"


def _recovery_table(arms: dict[str, Any]) -> str:
    header = [
        "arm",
        "outcome",
        "runs",
        "detected",
        "recovered",
        "measure",
        "count",
        "min",
        "median",
        "p90",
        "max",
    ]
    rows = []
    for name, a in arms.items():
        for outcome, r in a["recovery"].items():
            if not r["runs"]:
                continue
            for measure in ("detect_s", "recover_s"):
                d = r[measure]
                rows.append(
                    [
                        name,
                        outcome,
                        r["runs"],
                        r["detected"],
                        r["recovered"],
                        measure,
                        d["count"],
                        d["min"],
                        d["median"],
                        d["p90"],
                        d["max"],
                    ]
                )
    return _table(header, rows, left=2) if rows else ""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _replace(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _nan(x: float | None) -> float:
    return np.nan if x is None else x


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _number_or_text(text: str | None) -> float | str | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return text


def _utc(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _times(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}×"


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
