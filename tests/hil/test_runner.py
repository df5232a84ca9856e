"""The campaign runner: executors agree, a killed or stopped harness resumes without losing or
repeating a run, bad input is refused before anything runs, dead workers are survived.

Most tests use ``fake_engine`` (runs classified from (seed, index) alone, no inference), so the
runner's own behaviour is what they see; the last one runs the real model-level engine."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import fake_engine
import pytest

import flight
from hil.campaign import runner
from hil.campaign.runner import Progress, Snapshot, run_campaign
from hil.campaign.spec import load_spec
from hil.campaign.stats import Interval

HERE = Path(__file__).resolve().parent
MODEL = Path(flight.__file__).resolve().parent / "data" / "digits_cnn.flm"
#: Columns that say who ran a row and when, not what it found.
WHO_AND_WHEN = {"worker", "duration_s", "finished"}


def write_spec(
    path: Path,
    *,
    name: str = "runner-test",
    seed: int = 7,
    runs: int = 42,
    batch: int = 8,
    arms: tuple[str, ...] = ("none", "tmr"),
    campaign_extra: str = "",
) -> Path:
    arm_tables = "".join(f'\n[[arm]]\nname = "{a}"\nredundancy = "{a}"\n' for a in arms)
    path.write_text(
        f'[campaign]\nname = "{name}"\nseed = {seed}\nruns = {runs}\nbatch = {batch}\n'
        f"{campaign_extra}"
        f'\n[target]\nlevel = "model"\nmodel = "{MODEL}"\n'
        f'\n[fault]\nmodel = "seu"\nsites = ["weights", "activations", "outputs"]\n{arm_tables}'
    )
    return path


def stored_rows(db: Path, *, what_only: bool = True) -> dict[tuple[str, int], tuple]:
    """Every stored run by (arm, idx), read with plain SQL (not through the store)."""
    conn = sqlite3.connect(db)
    try:
        cursor = conn.execute("SELECT * FROM runs")
        names = [d[0] for d in cursor.description]
        keep = [i for i, n in enumerate(names) if not (what_only and n in WHO_AND_WHEN)]
        return {(row[0], row[1]): tuple(row[i] for i in keep) for row in cursor}
    finally:
        conn.close()


def expected_keys(arms: tuple[str, ...], runs: int) -> set[tuple[str, int]]:
    return {(arm, i) for arm in arms for i in range(runs)}


def quiet(_snap: Snapshot) -> None:
    pass


class Harness:
    """``hil`` with the fake engine as a separate process, in its own session (the test reaps
    the pool workers a killed harness leaves behind). Output goes to files, not pipes: orphaned
    workers would hold a pipe open after the harness died."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.out_path, self.err_path = tmp_path / f"{tag}.out", tmp_path / f"{tag}.err"
        path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fake_engine", *args],
                env={**os.environ, "PYTHONPATH": path},
                start_new_session=True,
                stdout=out,
                stderr=err,
            )
        self.pid = self.proc.pid

    def finish(self) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=300)
        return code, self.out_path.read_text(), self.err_path.read_text()


@pytest.fixture
def reap() -> Iterator[list[Harness]]:
    started: list[Harness] = []
    yield started
    for proc in started:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.proc.wait()


def wait_for_rows(db: Path, harness: Harness, at_least: int) -> int:
    """Poll the store until ``at_least`` runs are committed (generous bound: a loaded machine)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert harness.proc.poll() is None, harness.err_path.read_text()
        if db.exists():
            with suppress(sqlite3.OperationalError):
                conn = sqlite3.connect(db, timeout=30)
                try:
                    n = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
                finally:
                    conn.close()
                if n >= at_least:
                    return n
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} runs stored after 180 s")


@pytest.fixture
def fake_cli(monkeypatch: pytest.MonkeyPatch):
    """``hil`` in process, with the fake engine at the model level."""
    from hil import cli

    monkeypatch.setitem(runner.ENGINES, "model", "fake_engine")
    return cli.main


# --------------------------------------------------------------------------------------------
# Executors agree
# --------------------------------------------------------------------------------------------
def test_pool_sizes_and_a_dask_cluster_store_identical_runs(tmp_path: Path) -> None:
    """workers=1, workers=2 and a Dask LocalCluster on loopback store the same rows, and those
    are exactly the engine's function of (seed, arm, index)."""
    from distributed import LocalCluster

    spec = write_spec(tmp_path / "spec.toml", runs=42, batch=8)
    stores = {}
    for label, kwargs in (("w1", {"workers": 1}), ("w2", {"workers": 2})):
        summary = run_campaign(spec, tmp_path / label, engine=fake_engine, progress=quiet, **kwargs)
        assert summary["complete"] and summary["runs_this_session"] == 84
        stores[label] = stored_rows(tmp_path / label / "campaign.sqlite")
    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        summary = run_campaign(
            spec, tmp_path / "dask", dask=cluster.scheduler_address, engine=fake_engine,
            progress=quiet,
        )  # fmt: skip
    assert summary["complete"]
    stores["dask"] = stored_rows(tmp_path / "dask" / "campaign.sqlite")

    assert set(stores["w1"]) == expected_keys(("none", "tmr"), 42)
    assert stores["w1"] == stores["w2"] == stores["dask"]
    for (arm, i), row in stored_rows(tmp_path / "w1" / "campaign.sqlite").items():
        assert row[:11] == fake_engine.classify(7, arm, i).to_row()[:11]  # arm .. outcome


# --------------------------------------------------------------------------------------------
# Resume
# --------------------------------------------------------------------------------------------
def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path: Path, reap) -> None:
    arms, runs = ("none", "tmr"), 150
    spec = write_spec(tmp_path / "spec.toml", name="slow", runs=runs, batch=4)
    out = tmp_path / "out"
    db = out / "campaign.sqlite"
    harness = Harness(tmp_path, "campaign", "run", str(spec), "--out", str(out), "--workers", "2")
    reap.append(harness)
    wait_for_rows(db, harness, at_least=24)
    os.kill(harness.pid, signal.SIGKILL)  # the harness only: its workers are orphaned mid-batch
    harness.proc.wait()
    before = stored_rows(db, what_only=False)
    assert 24 <= len(before) < 2 * runs, "the kill should land mid-campaign"

    again = Harness(
        tmp_path, "campaign", "run", str(spec), "--out", str(out), "--workers", "2", "--resume"
    )
    reap.append(again)
    code, stdout, stderr = again.finish()
    assert code == 0, stderr
    summary = json.loads(stdout)
    after = stored_rows(db, what_only=False)
    assert set(after) == expected_keys(arms, runs)
    assert len(after) == 2 * runs
    assert {k: after[k] for k in before} == before  # stored rows untouched (worker, time too)
    assert summary["runs_this_session"] == 2 * runs - len(before)  # none run twice


def test_sigterm_stops_dispatching_commits_finished_batches_and_resumes(
    tmp_path: Path, reap
) -> None:
    spec = write_spec(tmp_path / "spec.toml", name="slow", runs=150, batch=4, arms=("none",))
    out = tmp_path / "out"
    harness = Harness(tmp_path, "campaign", "run", str(spec), "--out", str(out), "--workers", "2")
    reap.append(harness)
    wait_for_rows(out / "campaign.sqlite", harness, at_least=12)
    os.kill(harness.pid, signal.SIGTERM)
    code, stdout, stderr = harness.finish()
    assert code == 128 + signal.SIGTERM, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "SIGTERM" and not summary["complete"]
    stored = stored_rows(out / "campaign.sqlite")
    assert len(stored) == summary["arms"]["none"]["done"] < 150  # what finished is all committed
    assert len(stored) % 4 == 0  # whole batches only

    again = Harness(tmp_path, "campaign", "run", str(spec), "--out", str(out), "--resume")
    reap.append(again)
    code, _, stderr = again.finish()
    assert code == 0, stderr
    assert set(stored_rows(out / "campaign.sqlite")) == expected_keys(("none",), 150)


def test_resume_with_a_changed_spec_is_refused(tmp_path: Path, fake_cli, capsys) -> None:
    spec = write_spec(tmp_path / "spec.toml", runs=16)
    out = tmp_path / "out"
    assert fake_cli(["campaign", "run", str(spec), "--out", str(out)]) == 0
    before = (out / "campaign.sqlite").read_bytes()
    write_spec(spec, runs=16, seed=8)
    capsys.readouterr()
    assert fake_cli(["campaign", "run", str(spec), "--out", str(out), "--resume"]) == 78
    err = capsys.readouterr().err
    assert "cannot resume" in err and "the campaign spec" in err
    assert (out / "campaign.sqlite").read_bytes() == before


def test_an_existing_store_without_resume_is_refused(tmp_path: Path, fake_cli, capsys) -> None:
    spec = write_spec(tmp_path / "spec.toml", runs=8)
    out = tmp_path / "out"
    assert fake_cli(["campaign", "run", str(spec), "--out", str(out)]) == 0
    capsys.readouterr()
    assert fake_cli(["campaign", "run", str(spec), "--out", str(out)]) == 78
    assert "--resume" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def test_a_malformed_spec_is_refused_before_anything_runs(tmp_path: Path, fake_cli, capsys):
    spec = write_spec(tmp_path / "spec.toml", campaign_extra="runz = 5\n")
    out = tmp_path / "out"
    assert fake_cli(["campaign", "run", str(spec), "--out", str(out)]) == 78
    assert "runz" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("resume", [True, False])
def test_a_corrupt_database_is_refused_and_left_untouched(
    tmp_path: Path, fake_cli, capsys, resume: bool
) -> None:
    spec = write_spec(tmp_path / "spec.toml", runs=8)
    out = tmp_path / "out"
    out.mkdir()
    garbage = b"SQLite format 3\x00" + bytes(range(256)) * 16
    (out / "campaign.sqlite").write_bytes(garbage)
    argv = ["campaign", "run", str(spec), "--out", str(out)] + (["--resume"] if resume else [])
    assert fake_cli(argv) == 78
    assert "campaign.sqlite" in capsys.readouterr().err
    assert (out / "campaign.sqlite").read_bytes() == garbage
    assert sorted(p.name for p in out.iterdir()) == ["campaign.sqlite"]


# --------------------------------------------------------------------------------------------
# Early stop, dead workers, progress
# --------------------------------------------------------------------------------------------
def test_early_stop_ends_each_arm_once_its_strata_meet_the_margin(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "spec.toml",
        runs=2000,
        batch=16,
        campaign_extra="early_stop = true\nmargin = 0.25\n",
    )
    summary = run_campaign(spec, tmp_path / "out", engine=fake_engine, progress=quiet)
    for arm in ("none", "tmr"):
        assert summary["arms"][arm]["early_stopped"]
        assert summary["arms"][arm]["done"] < 2000
    assert summary["complete"]


def test_a_batch_whose_worker_dies_runs_again_and_nothing_is_lost_or_repeated(
    tmp_path: Path,
) -> None:
    spec = write_spec(tmp_path / "spec.toml", name=f"die {uuid.uuid4()}", runs=40, batch=4)
    summary = run_campaign(spec, tmp_path / "out", workers=2, engine=fake_engine, progress=quiet)
    assert summary["complete"] and summary["retries"] >= 2  # index 5 of each arm killed once
    rows = stored_rows(tmp_path / "out" / "campaign.sqlite")
    assert set(rows) == expected_keys(("none", "tmr"), 40)


@pytest.mark.parametrize("max_retries", [0, 2])
def test_a_batch_that_always_kills_its_worker_is_given_up_alone(
    tmp_path: Path, max_retries: int
) -> None:
    """Bounded retries; the batches that shared the broken pool are not blamed for it."""
    spec = write_spec(
        tmp_path / "spec.toml", name=f"dieall {uuid.uuid4()}", runs=24, batch=4, arms=("none",)
    )
    summary = run_campaign(
        spec, tmp_path / "out", workers=2, engine=fake_engine, progress=quiet,
        max_retries=max_retries,
    )  # fmt: skip
    assert summary["arms"]["none"]["abandoned"] == [4, 5, 6, 7]
    assert not summary["complete"]
    rows = stored_rows(tmp_path / "out" / "campaign.sqlite")
    assert set(rows) == {("none", i) for i in range(24) if i not in (4, 5, 6, 7)}
    killer = fake_engine.Batch(load_spec(spec), "none", (4, 5, 6, 7), None)
    # first death among other batches (the pool broke under all of them: nobody blamed), then
    # alone: the first try and max_retries more
    assert len(fake_engine.marker_of(killer).read_text()) == 1 + 1 + max_retries


def _snap(done: int, elapsed: float, final: bool = False) -> Snapshot:
    return Snapshot(
        planned={"none": 100},
        done={"none": done},
        counts={"none": {"masked": done - 1, "sdc": 1}},
        sdc={"none": Interval(0.01, 0.001, 0.05)},
        session_runs=done,
        elapsed_s=elapsed,
        final=final,
    )


def test_progress_is_a_plain_line_every_few_seconds_off_a_terminal() -> None:
    now = [0.0]
    stream = io.StringIO()
    show = Progress(stream, every_s=5.0, tty=False, clock=lambda: now[0])
    for step in range(11):  # one snapshot a second for ten seconds
        now[0] = float(step)
        show(_snap(step * 5 + 1, max(now[0], 1.0)))
    show(_snap(100, 10.0, final=True))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # t = 0, 5, 10, and the final line
    assert "\r" not in stream.getvalue()
    assert lines[1].startswith("none 26/100") and "ETA" in lines[1] and "sdc 1" in lines[1]


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    now = [0.0]
    stream = io.StringIO()
    show = Progress(stream, tty=True, clock=lambda: now[0])
    show(_snap(10, 1.0))
    now[0] = 1.0
    show(_snap(20, 2.0))
    assert stream.getvalue().count("\r") == 2 and "\n" not in stream.getvalue()
    assert "10 runs/s" in stream.getvalue() and "00:08" in stream.getvalue()  # 80 left at 10/s


def test_resume_refuses_golden_outputs_that_changed(tmp_path: Path, monkeypatch) -> None:
    """The inputs file is not in the resume checks' hashes: the golden outputs catch it."""
    spec = write_spec(tmp_path / "spec.toml", runs=8)
    run_campaign(spec, tmp_path / "out", engine=fake_engine, progress=quiet)
    monkeypatch.setattr(fake_engine.Golden, "compute", classmethod(lambda cls, s: cls(s.seed + 1)))
    with pytest.raises(runner.CampaignError, match="golden outputs differ"):
        run_campaign(spec, tmp_path / "out", engine=fake_engine, progress=quiet, resume=True)


def test_campaign_report_hands_the_directory_to_the_report_module(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import types

    from hil import cli

    seen = []
    report = types.ModuleType("hil.campaign.report")
    report.write_report = lambda out: (
        seen.append(out)
        or (
            Path(out) / "summary.json",
            Path(out) / "report.html",
        )
    )
    monkeypatch.setitem(sys.modules, "hil.campaign.report", report)
    assert cli.main(["campaign", "report", str(tmp_path)]) == 0
    assert seen == [str(tmp_path)]
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "summary.json"),
        str(tmp_path / "report.html"),
    ]


# --------------------------------------------------------------------------------------------
# The real model-level engine, through the command line
# --------------------------------------------------------------------------------------------
def test_a_small_real_model_level_campaign_through_the_cli(tmp_path: Path, capsys) -> None:
    from hil import cli
    from hil.campaign.outcome import Outcome

    spec = write_spec(tmp_path / "spec.toml", name="real", runs=96, batch=48)
    out = tmp_path / "out"
    assert cli.main(["campaign", "run", str(spec), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    db = out / "campaign.sqlite"
    assert set(stored_rows(db)) == expected_keys(("none", "tmr"), 96)
    for arm in ("none", "tmr"):
        assert sum(summary["arms"][arm]["counts"].values()) == 96  # not-injected counted apart
    assert summary["arms"]["tmr"]["counts"].get(Outcome.SDC, 0) == 0
    assert summary["arms"]["none"]["counts"].get(Outcome.SDC, 0) > 0
    assert summary["arms"]["tmr"]["sdc_rate"]["high"] > 0  # the upper bound of zero events
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM golden").fetchone()[0] > 0  # golden first
        inference = dict(conn.execute("SELECT name, inference_s FROM arms"))
    finally:
        conn.close()
    assert set(inference) == {"none", "tmr"} and all(s > 0 for s in inference.values())

    assert cli.main(["campaign", "run", str(spec), "--out", str(out), "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["runs_this_session"] == 0


def test_a_dask_worker_that_dies_loses_its_batch_to_a_retry_not_to_the_campaign(
    tmp_path: Path,
) -> None:
    """The scheduler gives up on a task whose worker died at once (allowed-failures 0), so the
    runner's own re-queue is what saves the batch; the nanny restarts the worker."""
    import dask
    from distributed import LocalCluster

    spec = write_spec(tmp_path / "spec.toml", name=f"die {uuid.uuid4()}", runs=24, batch=4)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
    ):  # fmt: skip
        summary = run_campaign(
            spec, tmp_path / "out", dask=cluster.scheduler_address, engine=fake_engine,
            progress=quiet,
        )  # fmt: skip
    assert summary["complete"] and summary["retries"] >= 2
    assert set(stored_rows(tmp_path / "out" / "campaign.sqlite")) == expected_keys(
        ("none", "tmr"), 24
    )


def test_the_real_engine_stores_the_same_runs_on_a_pool_and_on_dask(tmp_path: Path) -> None:
    from distributed import LocalCluster

    spec = write_spec(tmp_path / "spec.toml", name="real", runs=48, batch=16)
    run_campaign(spec, tmp_path / "pool", workers=2, progress=quiet)
    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        run_campaign(spec, tmp_path / "dask", dask=cluster.scheduler_address, progress=quiet)
    pool = stored_rows(tmp_path / "pool" / "campaign.sqlite")
    assert set(pool) == expected_keys(("none", "tmr"), 48)
    assert pool == stored_rows(tmp_path / "dask" / "campaign.sqlite")
