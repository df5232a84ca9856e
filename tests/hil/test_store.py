"""The campaign database: runs round trip, a batch is all or nothing (also under SIGKILL), a
duplicate is a bug, and anything that is not this campaign's database is refused untouched."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flight.errors import ConfigError
from hil.campaign.outcome import Outcome, RunResult
from hil.campaign.store import DuplicateRunError, Store, StoreError

META = {
    "spec_text": "[campaign]\nname = 'x'\n",
    "spec_sha256": "a" * 64,
    "model_sha256": "b" * 64,
    "flight_version": "0.1.0",
    "seed": 7,
}


def run(arm="none", index=0, outcome=Outcome.SDC, **kw):
    fields = dict(
        arm=arm, index=index, site="weights", layer="conv1", bit=31, byte_offset=1024,
        fault="seu", injected=outcome is not Outcome.NOT_INJECTED, old="3f800000",
        new="bf800000", outcome=outcome, top1_changed=True, corrected_words=0, detect_s=None,
        recover_s=None, duration_s=0.00012, worker="pid 42", extra={"replica": 1, "input": 9},
    )  # fmt: skip
    fields.update(kw)
    return RunResult(**fields)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_runs_round_trip_with_every_field(tmp_path):
    path = tmp_path / "campaign.sqlite"
    hang = run("tmr", 3, Outcome.HANG, site="partition", layer="", bit=-1, byte_offset=-1,
               fault="hang", top1_changed=None, detect_s=0.25, recover_s=1.5, extra={})  # fmt: skip
    missed = run("tmr", 4, Outcome.NOT_INJECTED, old="00", new="00", top1_changed=False)
    with Store.create(path, META) as store:
        store.set_arm("none", "none", 100)
        store.set_arm("tmr", "tmr", 100, inference_s=0.0002)
        assert store.add([run(), run(index=1, outcome=Outcome.MASKED, top1_changed=None)]) == 2
        store.add([hang, missed])
        store.put_golden([(0, b"\x01\x02", 7), (1, b"\x03", None)])
        # WAL from the start: a reader (the live report) never blocks the writer
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.close()
    with Store.open(path) as store:
        assert list(store.results("tmr")) == [hang, missed]
        assert [r.index for r in store.results()] == [0, 1, 3, 4]
        assert next(store.results()) == run()
        assert store.done("none") == {0, 1} and store.done("dwc") == set()
        counts = store.counts()
        assert counts["none"][Outcome.SDC] == 1 and counts["none"][Outcome.MASKED] == 1
        assert counts["tmr"][Outcome.NOT_INJECTED] == 1 and counts["tmr"][Outcome.DUE] == 0
        arms = store.arms()
        assert (arms["tmr"].planned, arms["tmr"].inference_s) == (100, 0.0002)
        assert arms["none"].inference_s is None
        store.set_arm("none", "none", 100, inference_s=0.0001)
        store.set_arm("none", "none", 120)  # a later plan keeps the measured time
        assert (store.arms()["none"].planned, store.arms()["none"].inference_s) == (120, 0.0001)
        assert store.golden() == [(0, b"\x01\x02", 7), (1, b"\x03", None)]
        meta = store.meta()
        assert meta["seed"] == "7" and meta["spec_text"] == META["spec_text"]
        assert meta["schema_version"] == "1" and float(meta["created"]) > 0
    # the schema is plain SQL: a query by hand sees the columns the docs name
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute(
        "SELECT outcome, detect_s, recover_s, extra FROM runs WHERE arm='tmr' AND idx=3"
    ).fetchone() == ("hang", 0.25, 1.5, "{}")
    conn.close()


def test_run_result_rows_and_json_round_trip():
    r = run(extra={"a": [1, 2]})
    assert RunResult.from_row(r.to_row()) == r
    assert RunResult.from_json(r.to_json()) == r
    assert r.to_json()["outcome"] == "sdc"
    with pytest.raises(ValueError, match="contradicts"):
        run(outcome=Outcome.MASKED, injected=False)
    with pytest.raises(ValueError, match="contradicts"):
        run(outcome=Outcome.NOT_INJECTED, injected=True)
    with pytest.raises(ValueError, match="site"):
        run(site="registers")
    with pytest.raises(ValueError, match="bit"):
        run(bit=32)
    with pytest.raises(ValueError):
        run(outcome="worse")


def test_a_duplicate_run_raises_and_its_whole_batch_is_left_out(tmp_path):
    with Store.create(tmp_path / "c.sqlite", META) as store:
        store.add([run(index=0)])
        with pytest.raises(DuplicateRunError):
            store.add([run(index=1), run(index=2), run(index=0)])
        with pytest.raises(DuplicateRunError):
            store.add([run(index=5), run(index=5)])
        assert store.done("none") == {0}
        store.add([run(index=1), run("tmr", 0)])  # the store is still usable
        assert store.done("none") == {0, 1}


def test_create_refuses_an_existing_file_and_incomplete_meta(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"precious")
    with pytest.raises(StoreError, match="already exists"):
        Store.create(path, META)
    assert path.read_bytes() == b"precious"
    with pytest.raises(ValueError, match="model_sha256"):
        Store.create(tmp_path / "d.sqlite", {k: v for k, v in META.items() if k != "model_sha256"})


def _foreign(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, jpeg BLOB)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.commit()
    conn.close()


def _old_version(path):
    Store.create(path, META).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()


def _truncated(path):
    with Store.create(path, META) as store:
        store.add(run(index=i) for i in range(2000))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scribbled(path):
    with Store.create(path, META) as store:
        store.add(run(index=i) for i in range(2000))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page : 5 * page] = os.urandom(2 * page)  # two pages of the runs table
    path.write_bytes(bytes(data))


def _index_mismatch(path):
    """A row whose key no longer matches its index entry: readable page by page, caught only
    by the integrity check."""
    with Store.create(path, META) as store:
        store.add(run(index=i) for i in range(50))
        store.add([run("qzqzqz", 0)])
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = path.read_bytes()
    assert data.count(b"qzqzqz") == 2  # once in the table, once in the primary-key index
    path.write_bytes(data.replace(b"qzqzqz", b"qzqzqy", 1))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(os.urandom(8192)), "not an SQLite database"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + os.urandom(4000)), "left as it is"),
        (_foreign, "not a campaign database of this schema"),
        (_old_version, "schema version '0'"),
        (_truncated, "left as it is"),
        (_scribbled, "left as it is"),
        (_index_mismatch, "the campaign database is corrupt (left as it is)"),
    ],
    ids=["empty", "random", "header-then-random", "foreign", "old-version", "truncated",
         "scribbled", "index-mismatch"],
)  # fmt: skip
def test_a_corrupt_or_foreign_database_is_refused_and_left_untouched(tmp_path, make, words):
    path = tmp_path / "campaign.sqlite"
    make(path)
    before = sha(path)
    siblings = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(StoreError) as info:
        Store.open(path)
    assert words in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, ConfigError)
    assert sha(path) == before
    # nothing left behind but what was there (a read of a WAL-mode file may leave an empty
    # write-ahead log and its index: they hold no data and change nothing)
    for p in tmp_path.iterdir():
        if p.name.endswith("-wal"):
            assert p.stat().st_size == 0
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-shm", "-wal")))
    assert left == siblings


def test_campaign_meta_resumes_the_same_spec_and_refuses_an_edited_model(tmp_path):
    import shutil

    import flight
    from hil.campaign.spec import load_spec
    from hil.campaign.store import campaign_meta

    model = tmp_path / "m.flm"
    shutil.copy(Path(flight.__file__).parent / "data" / "digits_cnn.flm", model)
    (tmp_path / "s.toml").write_text(
        '[campaign]\nname = "c"\nruns = 3\n[target]\nmodel = "m.flm"\n'
        '[fault]\n[[arm]]\nname = "a"\n'
    )
    meta = campaign_meta(load_spec(tmp_path / "s.toml"))
    assert meta["flight_version"] == flight.__version__ and meta["seed"] == "0"
    assert meta["model_sha256"] == sha(model)
    Store.create(tmp_path / "c.sqlite", meta).close()
    with Store.open(tmp_path / "c.sqlite") as store:
        store.check_resume(campaign_meta(load_spec(tmp_path / "s.toml")))
        with model.open("r+b") as f:
            f.seek(100)
            byte = f.read(1)
            f.seek(100)
            f.write(bytes([byte[0] ^ 1]))
        with pytest.raises(StoreError, match="the model file"):
            store.check_resume(campaign_meta(load_spec(tmp_path / "s.toml")))


def test_a_missing_database_is_refused_not_created(tmp_path):
    with pytest.raises(StoreError, match="no campaign database"):
        Store.open(tmp_path / "none.sqlite")
    assert not (tmp_path / "none.sqlite").exists()


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("spec_sha256", "the campaign spec"),
        ("model_sha256", "the model file"),
        ("flight_version", "the flight version"),
    ],
)
def test_resume_refuses_another_spec_model_or_flight_version(tmp_path, key, words):
    path = tmp_path / "c.sqlite"
    Store.create(path, META).close()
    with Store.open(path) as store:
        store.check_resume(META)  # the same campaign: fine
        with pytest.raises(StoreError, match=f"cannot resume.*{words} \\({key}: stored"):
            store.check_resume({**META, key: "c" * 64})
    two = {**META, "spec_sha256": "0", "flight_version": "9.9"}
    with Store.open(path) as store, pytest.raises(StoreError) as info:
        store.check_resume(two)
    assert "the campaign spec" in str(info.value) and "the flight version" in str(info.value)
    assert "the model file" not in str(info.value)


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from hil.campaign.outcome import Outcome, RunResult
    from hil.campaign.store import Store

    store = Store.open(sys.argv[1])
    batch, inside = int(sys.argv[2]), sys.argv[3] == "inside"
    calls = 0

    def kill_inside_sqlite():
        # called by SQLite every 1,000 instructions of a statement: the 3rd call is well
        # inside the batch's INSERTs, rows into it
        global calls
        calls += 1
        if calls == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return 0

    for b in range(10**9):
        rows = [
            RunResult(arm="none", index=b * batch + i, site="weights", layer="w", bit=i % 32,
                      byte_offset=b, fault="seu", injected=True, old="00", new="01",
                      outcome=Outcome.SDC, worker=str(b), extra={"batch": b})
            for i in range(batch)
        ]
        if inside and b == 5:
            store._conn.set_progress_handler(kill_inside_sqlite, 1000)
        print("adding", b, flush=True)
        store.add(rows)
        print("added", b, flush=True)
    """
)


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_sigkill_during_adds_loses_no_committed_batch_and_leaves_no_half(tmp_path, where):
    """``inside``: the child kills itself from SQLite's progress handler in the middle of a
    batch's INSERTs (deterministic); ``outside``: the test kills it as it starts a batch."""
    path = tmp_path / "campaign.sqlite"
    Store.create(path, META).close()
    batch = 2000
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(batch), where],
        stdout=subprocess.PIPE,
        text=True,
    )
    committed = -1
    try:
        for line in child.stdout:
            word, b = line.split()
            if word == "added":
                committed = int(b)
            if (int(b) == 5 and where == "outside") or int(b) > 5:  # (inside: never > 5)
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert committed == 4
    with Store.open(path) as store:
        done = store.done("none")
        assert len(done) % batch == 0, f"{len(done)} runs: half a batch was stored"
        assert done == set(range(len(done)))  # every batch up to the last one committed
        assert len(done) >= (committed + 1) * batch  # every reported commit is there
        if where == "inside":
            assert len(done) == 5 * batch
        for r in store.results():
            assert r.extra == {"batch": r.index // batch} and r.byte_offset == r.index // batch
        store.add([run(index=len(done))])  # and the campaign goes on


def test_results_read_in_chunks_and_adds_from_other_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with Store.create(tmp_path / "c.sqlite", META) as store:
        # an executor's completion callbacks run in its threads: they may add
        with ThreadPoolExecutor(2) as pool:
            for arm in ("a", "b"):
                for start in range(0, 10, 5):
                    batch = [run(arm, i) for i in range(start, start + 5)]
                    pool.submit(lambda b=batch: b).add_done_callback(
                        lambda f: store.add(f.result())
                    )
        expected = [("a", i) for i in range(10)] + [("b", i) for i in range(10)]
        for chunk in (1, 3, 10, 1000):
            assert [(r.arm, r.index) for r in store.results(chunk=chunk)] == expected
            assert [r.index for r in store.results("b", chunk=chunk)] == list(range(10))
        assert list(store.results("c")) == []
