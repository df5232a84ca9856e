"""The campaign's results database: one SQLite file in WAL mode, queried by hand if need be.

Results stream in batch by batch, each batch one transaction, so a harness killed at any
moment leaves every committed run in place and no half of a batch (WAL recovery on the next
open rolls an unfinished transaction back). ``synchronous=NORMAL`` is enough for that: it can
lose the last commits to a power cut, never to a killed process, and a lost commit is only
re-run on resume, never counted twice.

A file that is not a campaign database of this schema (corrupt, truncated, another program's)
is refused with :class:`StoreError` and left exactly as it was: the checks only read. Resuming
checks that the spec, the model and the flight version are the ones the campaign began with.
The schema is documented in docs/hil.md.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flight.errors import ConfigError, FlightError
from hil.campaign.outcome import ROW_FIELDS, Outcome, RunResult
from hil.campaign.spec import CampaignSpec, file_sha256

__all__ = [
    "SCHEMA_VERSION",
    "ArmRow",
    "DuplicateRunError",
    "Store",
    "StoreError",
    "campaign_meta",
]

SCHEMA_VERSION = "1"
SQLITE_MAGIC = b"SQLite format 3\x00"
#: meta keys that must match for a resume, with the words of the refusal
RESUME_KEYS: dict[str, str] = {
    "spec_sha256": "the campaign spec",
    "model_sha256": "the model file",
    "flight_version": "the flight version",
}
REQUIRED_META = ("spec_text", "spec_sha256", "model_sha256", "flight_version", "seed")

_OUTCOMES = ", ".join(f"'{o.value}'" for o in Outcome)
#: runs columns: the RunResult fields (``index`` is ``idx``: INDEX is an SQL keyword)
RUN_COLUMNS: dict[str, str] = {
    "arm": "TEXT NOT NULL",
    "idx": "INTEGER NOT NULL",
    "site": "TEXT NOT NULL",
    "layer": "TEXT NOT NULL",
    "bit": "INTEGER NOT NULL",
    "byte_offset": "INTEGER NOT NULL",
    "fault": "TEXT NOT NULL",
    "injected": "INTEGER NOT NULL",
    "old": "TEXT NOT NULL",
    "new": "TEXT NOT NULL",
    "outcome": f"TEXT NOT NULL CHECK (outcome IN ({_OUTCOMES}))",
    "top1_changed": "INTEGER",
    "corrected_words": "INTEGER NOT NULL",
    "detect_s": "REAL",
    "recover_s": "REAL",
    "duration_s": "REAL NOT NULL",
    "worker": "TEXT NOT NULL",
    "extra": "TEXT NOT NULL",
    "finished": "REAL NOT NULL",
}
assert tuple(RUN_COLUMNS)[:-1] == tuple("idx" if f == "index" else f for f in ROW_FIELDS)

SCHEMA: dict[str, str] = {
    "meta": "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "arms": (
        "CREATE TABLE arms (name TEXT PRIMARY KEY, redundancy TEXT NOT NULL, "
        "planned INTEGER NOT NULL, inference_s REAL)"
    ),
    "golden": "CREATE TABLE golden (input INTEGER PRIMARY KEY, output BLOB NOT NULL, top1 INTEGER)",
    "runs": (
        "CREATE TABLE runs ("
        + ", ".join(f"{name} {decl}" for name, decl in RUN_COLUMNS.items())
        + ", PRIMARY KEY (arm, idx))"
    ),
}
COLUMNS: dict[str, tuple[str, ...]] = {
    "meta": ("key", "value"),
    "arms": ("name", "redundancy", "planned", "inference_s"),
    "golden": ("input", "output", "top1"),
    "runs": tuple(RUN_COLUMNS),
}


def campaign_meta(spec: CampaignSpec) -> dict[str, str]:
    """The meta a campaign starts with and a resume must match: the spec (text and hash), the
    model file's hash and the flight version."""
    import flight

    return {
        "spec_text": spec.text,
        "spec_sha256": spec.sha256,
        "model_sha256": file_sha256(spec.target.model),
        "flight_version": flight.__version__,
        "seed": str(spec.seed),
        "name": spec.name,
    }


class StoreError(ConfigError):
    """A results database that cannot be used: corrupt, foreign, or of another campaign."""


class DuplicateRunError(FlightError, ValueError):
    """An (arm, index) already stored: the harness ran an injection twice (a bug)."""


@dataclass(frozen=True)
class ArmRow:
    name: str
    redundancy: str
    planned: int
    inference_s: float | None


class Store:
    """One campaign's database. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path, self._conn = path, conn
        # one connection shared by the harness's threads (an executor's completion callbacks
        # run in its own thread): every use holds the lock
        self._lock = threading.RLock()

    # ---- opening --------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], meta: Mapping[str, Any]) -> Store:
        """A new database at ``path`` (which must not exist) with ``meta``."""
        path = Path(path)
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise ValueError(f"store meta lacks {', '.join(missing)}")
        if path.exists() or path.is_symlink():
            raise StoreError(
                f"{path}: already exists; resume the campaign, or choose another output"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(path, "rwc")
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                for ddl in SCHEMA.values():
                    conn.execute(ddl)
                rows = {"created": f"{time.time():.6f}", **{k: str(v) for k, v in meta.items()}}
                rows["schema_version"] = SCHEMA_VERSION
                conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted(rows.items()))
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Store:
        """Open an existing campaign database, refusing (never repairing) anything else."""
        path = Path(path)
        _check_header(path)
        # the checks read through a read-only connection: closing a read-write one could
        # checkpoint a stray WAL into a file that is not ours
        probe = _connect(path, "ro")
        try:
            _check_database(path, probe)
        finally:
            probe.close()
        conn = _connect(path, "rw")
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- meta, arms, golden ---------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def check_resume(self, meta: Mapping[str, Any]) -> None:
        """Refuse to continue with another spec, model or flight version, naming which."""
        stored = self.meta()
        differ = [
            f"{words} ({key}: stored {stored.get(key)!r}, now {str(meta.get(key))!r})"
            for key, words in RESUME_KEYS.items()
            if str(meta.get(key)) != stored.get(key)
        ]
        if differ:
            raise StoreError(
                f"{self.path}: cannot resume: differs from the campaign's start: "
                + "; ".join(differ)
            )

    def set_arm(
        self, name: str, redundancy: str, planned: int, inference_s: float | None = None
    ) -> None:
        """Record (or update) an arm's plan and its fault-free time per inference."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO arms VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "redundancy=excluded.redundancy, planned=excluded.planned, "
                "inference_s=COALESCE(excluded.inference_s, arms.inference_s)",
                (name, redundancy, planned, inference_s),
            )

    def arms(self) -> dict[str, ArmRow]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM arms ORDER BY name").fetchall()
        return {r[0]: ArmRow(*r) for r in rows}

    def put_golden(self, rows: Iterable[tuple[int, bytes, int | None]]) -> None:
        """Store the golden outputs (input index, output bytes, top-1 or None) at once."""
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT INTO golden VALUES (?, ?, ?)",
                [
                    (int(i), bytes(out), None if top1 is None else int(top1))
                    for i, out, top1 in rows
                ],
            )

    def golden(self) -> list[tuple[int, bytes, int | None]]:
        with self._lock:
            return self._conn.execute(
                "SELECT input, output, top1 FROM golden ORDER BY input"
            ).fetchall()

    # ---- runs -----------------------------------------------------------------------------

    def add(self, results: Iterable[RunResult], finished: float | None = None) -> int:
        """Store a batch in one transaction: all of it or none. Returns the rows added."""
        now = time.time() if finished is None else finished
        rows = [(*r.to_row(), now) for r in results]
        marks = ", ".join("?" * len(RUN_COLUMNS))
        try:
            with self._lock, self._conn:
                self._conn.executemany(f"INSERT INTO runs VALUES ({marks})", rows)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc) and "PRIMARY KEY" not in str(exc):
                raise
            raise DuplicateRunError(
                f"{self.path}: a run of this batch is stored already ({exc}); nothing of the "
                "batch was added"
            ) from exc
        return len(rows)

    def done(self, arm: str) -> set[int]:
        """Indices of ``arm`` already stored (what a resume skips)."""
        with self._lock:
            rows = self._conn.execute("SELECT idx FROM runs WHERE arm = ?", (arm,)).fetchall()
        return {i for (i,) in rows}

    def results(self, arm: str | None = None, chunk: int = 1000) -> Iterator[RunResult]:
        """Stored runs, by arm then index, read ``chunk`` rows per query (each query complete
        under the lock, so adds from other threads may go on between them)."""
        names = ", ".join(tuple(RUN_COLUMNS)[:-1])
        where = "" if arm is None else "arm = ? AND "
        first: tuple[Any, ...] = () if arm is None else (arm,)
        after: tuple[str, int] = ("", -1)
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {names} FROM runs WHERE {where}(arm, idx) > (?, ?) "
                    "ORDER BY arm, idx LIMIT ?",
                    (*first, *after, chunk),
                ).fetchall()
            for row in rows:
                yield RunResult.from_row(row)
            if len(rows) < chunk:
                return
            after = (rows[-1][0], rows[-1][1])

    def counts(self) -> dict[str, dict[Outcome, int]]:
        """Runs per arm and outcome (every class present, zeros included)."""
        out = {name: {o: 0 for o in Outcome} for name in self.arms()}
        with self._lock:
            rows = self._conn.execute(
                "SELECT arm, outcome, COUNT(*) FROM runs GROUP BY arm, outcome"
            ).fetchall()
        for arm, outcome, n in rows:
            out.setdefault(arm, {o: 0 for o in Outcome})[Outcome(outcome)] = n
        return out


# --------------------------------------------------------------------------------------------
# Checks that only read
# --------------------------------------------------------------------------------------------


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    uri = f"file:{quote(str(path))}?mode={mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30.0, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the campaign database: {exc}") from exc
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        if mode != "ro":
            conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(
            f"{path}: the campaign database cannot be read (left as it is): {exc}"
        ) from exc
    return conn


def _check_header(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise StoreError(f"{path}: no campaign database here") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the campaign database: {exc}") from exc
    if not head:
        raise StoreError(f"{path}: empty file, not a campaign database (left as it is)")
    if head != SQLITE_MAGIC:
        raise StoreError(f"{path}: not an SQLite database (left as it is)")


def _check_database(path: Path, conn: sqlite3.Connection) -> None:
    try:
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        if problems != ["ok"]:
            raise StoreError(
                f"{path}: the campaign database is corrupt (left as it is): "
                + "; ".join(problems[:3])
            )
        tables = {
            name: tuple(c[1] for c in conn.execute(f"PRAGMA table_info({name})").fetchall())
            for name in COLUMNS
        }
        for name, columns in COLUMNS.items():
            if tables[name] != columns:
                found = ", ".join(tables[name]) or "missing"
                raise StoreError(
                    f"{path}: not a campaign database of this schema (left as it is): table "
                    f"{name!r} has columns {found}; expected {', '.join(columns)}"
                )
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            version = "none" if row is None else repr(row[0])
            raise StoreError(
                f"{path}: campaign database schema version {version}; this harness reads "
                f"version {SCHEMA_VERSION!r} (left as it is)"
            )
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path}: the campaign database cannot be read (left as it is): {exc}"
        ) from exc
