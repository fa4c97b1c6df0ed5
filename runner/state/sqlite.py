"""The SQLite state backend: one file, with a journal beside it while a campaign runs.

During a run, claims and outcomes are appended to a journal file beside the state
(``<state>.<campaign>.journal``): everything queued during one turn of the event loop goes out
in one ``write()``, and a worker waits only for the write that holds its own claim. That write
also carries every outcome recorded before it, so at most ``concurrency`` recipients can be
uncertain after a crash. At the end of the run the journal is folded into SQLite, where later
runs look recipients up; a journal left by a crash is folded by the next run before anything
else.

Why a journal: a SQLite transaction costs a dozen system calls (locks, WAL frames) and at full
speed the commit before each request made workers wait a millisecond or more; one append is a
single system call, cheap enough to make at every turn of the loop. A write to the page cache
survives the process being killed at any moment (what CI runners and Ctrl-C do), as SQLite's
WAL with ``synchronous=NORMAL`` does; both trade only the last writes on a power loss.

Separate processes coordinate only through the per-campaign file lock: they do not share a
bot's rate limit (the PostgreSQL backend does).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runner.errors import StateError, StateLost
from runner.state import IN_FLIGHT_AT_STOP, Location, Prior
from runner.state import journal as journal_file
from runner.state.filelock import CampaignLock
from runner.status import NOT_DELIVERED_IN_STATE, Status

SCHEMA = """
CREATE TABLE IF NOT EXISTS recipients (
    campaign    TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    row         INTEGER,
    status      TEXT NOT NULL,          -- a runner.status.Status word
    attempts    INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    result      TEXT,
    error       TEXT,
    run_id      TEXT,
    first_at    REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (campaign, recipient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS folded_runs (
    campaign TEXT NOT NULL,
    run_id   TEXT NOT NULL,
    PRIMARY KEY (campaign, run_id)
) WITHOUT ROWID;
"""
_CLAIM = """
INSERT INTO recipients (campaign, recipient, row, status, run_id, first_at, updated_at)
VALUES (?, ?, ?, 'sending', ?, ?, ?)
ON CONFLICT (campaign, recipient) DO UPDATE SET
    status = 'sending', row = excluded.row, run_id = excluded.run_id,
    updated_at = excluded.updated_at
"""
_OUTCOME = """
UPDATE recipients SET status = ?, attempts = attempts + ?, http_status = ?, result = ?,
    error = ?, updated_at = ?
WHERE campaign = ? AND recipient = ?
"""
_PRIOR = (
    "SELECT status, attempts, http_status, result, error FROM recipients "
    "WHERE campaign = ? AND recipient = ?"
)


def connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
    except (sqlite3.DatabaseError, OSError) as exc:
        raise StateError(f"{path}: cannot use this state file: {exc}") from None
    return db


def fold(db: sqlite3.Connection, campaign: str, journal: Path) -> None:
    """Apply a journal to the state in one transaction, then remove it (idempotent)."""
    if not journal.exists():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        run_id = apply(db, campaign, journal)
        if run_id is not None:
            db.execute("INSERT INTO folded_runs VALUES (?, ?)", (campaign, run_id))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    journal.unlink()


def apply(db: sqlite3.Connection, campaign: str, journal: Path) -> str | None:
    """Replay a journal inside the caller's transaction; its run id, None if folded before."""
    records = journal_file.records(journal)
    header = next(records, None)
    run_id = str(header[1]) if header and header[0] == journal_file.RUN else journal.name
    if db.execute(
        "SELECT 1 FROM folded_runs WHERE campaign = ? AND run_id = ?", (campaign, run_id)
    ).fetchone():
        return None
    for record in records:
        if record[0] == journal_file.CLAIM:
            _, recipient, row, at = record
            db.execute(_CLAIM, (campaign, recipient, row, run_id, at, at))
        elif record[0] == journal_file.OUTCOME:
            _, recipient, status, attempts, http_status, result, error, at = record
            db.execute(
                _OUTCOME, (status, attempts, http_status, result, error, at, campaign, recipient)
            )
    return run_id


def _has_history(db: sqlite3.Connection, campaign: str) -> bool:
    found = db.execute(
        "SELECT EXISTS (SELECT 1 FROM recipients WHERE campaign = ?)", (campaign,)
    ).fetchone()
    return bool(found[0])


def _prior(db: sqlite3.Connection, campaign: str, recipient: str) -> Prior | None:
    found = db.execute(_PRIOR, (campaign, recipient)).fetchone()
    if found is None:
        return None
    status = Status(found[0])
    if status is Status.SENDING:  # a run going on, or one that died: it may be out
        return Prior(Status.UNCERTAIN, found[1], found[2], found[3], IN_FLIGHT_AT_STOP)
    return Prior(status, *found[1:])


class SqliteRunState:
    """The state of one campaign during one run."""

    def __init__(self, path: Path, campaign: str, run_id: str) -> None:
        self.location = Location(path=path)
        self.campaign = campaign
        self._lock = CampaignLock(path, campaign)
        self._lock.acquire()
        try:
            self._db = connect(path)
            self._journal_path = journal_file.path_for(path, campaign)
            fold(self._db, campaign, self._journal_path)  # what a crashed run left
            # Whatever was in flight when an earlier run died may or may not have been sent.
            self._db.execute(
                "UPDATE recipients SET status = 'uncertain', error = ? "
                "WHERE campaign = ? AND status = 'sending'",
                (IN_FLIGHT_AT_STOP, campaign),
            )
            self.has_history = _has_history(self._db, campaign)
            self._journal = journal_file.Writer(self._journal_path, run_id)
        except BaseException:
            self._lock.release()
            raise
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_handle: asyncio.Handle | None = None

    def prior(self, recipient: str) -> Prior | None:
        return _prior(self._db, self.campaign, recipient) if self.has_history else None

    def claim(self, recipient: str, row: int) -> asyncio.Future[None]:
        """A future done once ``recipient`` is durably marked as being sent: await it."""
        self._journal.add([journal_file.CLAIM, recipient, row, time.time()])
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._schedule()
        return waiter

    def record(
        self,
        recipient: str,
        status: Status,
        attempts: int,
        http_status: int | None,
        result: str | None,
        error: str | None,
    ) -> None:
        self._journal.add(
            [
                journal_file.OUTCOME,
                recipient,
                str(status),
                attempts,
                http_status,
                result,
                error,
                time.time(),
            ]
        )
        self._schedule()

    def _schedule(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        waiters = self._waiters
        self._waiters = []
        try:
            self._journal.write()
        except OSError as exc:
            # Without the state nothing can promise "never twice": stop sending.
            failure = StateLost(
                f"{self._journal_path}: cannot write the state ({exc.strerror}); "
                "stopped sending so that nobody is sent twice"
            )
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(failure)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def abandon(self) -> None:
        """Let go of everything as a killed process does: no fold, no last write."""
        self._db.close()
        self._lock.release()

    async def close(self) -> None:
        """Write what is left (also after a hard stop), fold the journal, release the lock."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        try:
            self._journal.close()
            fold(self._db, self.campaign, self._journal_path)
            self._db.close()
        finally:
            self._lock.release()


class Snapshot:
    """A read-only view of a state file with its journal applied, as a run would see it.

    The file is copied into memory and never written, so that `plan` and `status` work on a
    read-only folder and while a run is going on."""

    def __init__(self, path: Path, campaign: str) -> None:
        self.campaign = campaign
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        if path.is_file():
            try:
                source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    source.backup(self.db)
                finally:
                    source.close()
            except sqlite3.DatabaseError as exc:
                raise StateError(f"{path}: cannot read this state file: {exc}") from None
        self.db.executescript(SCHEMA)
        journal = journal_file.path_for(path, campaign)
        if journal.exists():
            self.db.execute("BEGIN")
            apply(self.db, campaign, journal)
            self.db.execute("COMMIT")
        self.has_history = _has_history(self.db, campaign)
        self.exists = path.is_file() or journal.exists()

    @classmethod
    def of_rows(cls, campaign: str, rows: Iterable[tuple[Any, ...]]) -> Snapshot:
        """A snapshot made of (recipient, row, status, attempts, http_status, result, error,
        updated_at) tuples read from another backend; kept in a temporary file, not memory."""
        snapshot = cls.__new__(cls)
        snapshot.campaign = campaign
        snapshot.db = sqlite3.connect("", isolation_level=None)
        snapshot.db.executescript(SCHEMA)
        snapshot.db.execute("BEGIN")
        snapshot.db.executemany(
            "INSERT INTO recipients (campaign, recipient, row, status, attempts, http_status, "
            "result, error, first_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((campaign, *r[:7], r[7], r[7]) for r in rows),
        )
        snapshot.db.execute("COMMIT")
        snapshot.has_history = _has_history(snapshot.db, campaign)
        snapshot.exists = True
        return snapshot

    def prior(self, recipient: str) -> Prior | None:
        return _prior(self.db, self.campaign, recipient) if self.has_history else None

    def close(self) -> None:
        self.db.close()


def summarize(db: sqlite3.Connection, campaign: str, limit: int) -> dict[str, Any]:
    """Counts and the first ``limit`` recipients not delivered (all when negative)."""
    counts = dict(
        db.execute(
            "SELECT status, COUNT(*) FROM recipients WHERE campaign = ? GROUP BY status",
            (campaign,),
        ).fetchall()
    )
    marks = ", ".join("?" * len(NOT_DELIVERED_IN_STATE))
    rows = db.execute(
        "SELECT recipient, row, status, attempts, http_status, result, error, updated_at "
        f"FROM recipients WHERE campaign = ? AND status IN ({marks}) "
        "ORDER BY status, row LIMIT ?",
        (campaign, *NOT_DELIVERED_IN_STATE, limit),
    ).fetchall()
    return report(campaign, counts, rows)


def report(campaign: str, counts: dict[str, int], rows: list[Any]) -> dict[str, Any]:
    keys = (
        "recipient",
        "row",
        "status",
        "attempts",
        "http_status",
        "result",
        "error",
        "updated_at",
    )
    shown = (Status.SENT, Status.FAILED, Status.UNSENT, Status.UNCERTAIN, Status.SENDING)
    return {
        "campaign": campaign,
        "counts": {str(s): counts.get(s, 0) for s in shown},
        "not_delivered": [dict(zip(keys, r, strict=True)) for r in rows],
    }


def status_report(path: Path, campaign: str, limit: int = -1) -> dict[str, Any]:
    snapshot = Snapshot(path, campaign)
    try:
        if not snapshot.exists:
            raise StateError(f"{path}: no state yet for campaign {campaign} (has it been run?)")
        found = summarize(snapshot.db, campaign, limit)
    finally:
        snapshot.close()
    return {**found, "state": str(path)}
