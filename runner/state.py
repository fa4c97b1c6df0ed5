"""Durable run state: who was sent, who failed, who is uncertain; one run at a time.

A recipient is marked ``sending`` durably before its request leaves, so that after a crash
nobody is sent twice: what was in flight becomes ``uncertain`` and is resent only on request.

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
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import journal as journal_file
from runner.errors import RunAborted, UsageError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recipients (
    campaign    TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    row         INTEGER,
    status      TEXT NOT NULL,          -- sending | sent | failed | uncertain
    attempts    INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    result      TEXT,
    error       TEXT,
    run_id      TEXT,
    first_at    REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (campaign, recipient)
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
_FOLDED = """
CREATE TABLE IF NOT EXISTS folded_runs (
    campaign TEXT NOT NULL,
    run_id   TEXT NOT NULL,
    PRIMARY KEY (campaign, run_id)
) WITHOUT ROWID;
"""
IN_FLIGHT_AT_STOP = "in flight when an earlier run stopped; its outcome is unknown"


def path_for(given: Path | None, campaign: str, sandbox: bool) -> Path:
    """The state file of a campaign: ``--state`` or ``.campaign-state/<name>.sqlite3``.

    A rehearsal's state stands beside the real one (``.sandbox`` before the suffix), never in
    it, so that a sandbox run never marks a real recipient as delivered.
    """
    if given is None:
        return Path(".campaign-state") / (
            f"{campaign}.sandbox.sqlite3" if sandbox else f"{campaign}.sqlite3"
        )
    return (
        given.with_name(f"{given.stem}.sandbox{given.suffix or '.sqlite3'}") if sandbox else given
    )


def connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA + _FOLDED)
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: cannot use this state file: {exc}") from None
    return db


@dataclass(frozen=True)
class Prior:
    status: str
    attempts: int
    http_status: int | None
    result: str | None
    error: str | None


def fold(db: sqlite3.Connection, campaign: str, journal: Path) -> None:
    """Apply a journal to the state in one transaction, then remove it (idempotent)."""
    if not journal.exists():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        run_id = _apply(db, campaign, journal)
        if run_id is not None:
            db.execute("INSERT INTO folded_runs VALUES (?, ?)", (campaign, run_id))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    journal.unlink()


def _apply(db: sqlite3.Connection, campaign: str, journal: Path) -> str | None:
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


class CampaignState:
    """The state of one campaign during one run."""

    def __init__(self, path: Path, campaign: str, run_id: str) -> None:
        self.path = path
        self.campaign = campaign
        self.run_id = run_id
        self._db = connect(path)
        self._journal_path = journal_file.path_for(path, campaign)
        fold(self._db, campaign, self._journal_path)  # what a crashed run left
        # Whatever was in flight when an earlier run died may or may not have been sent.
        self._db.execute(
            "UPDATE recipients SET status = 'uncertain', error = ? "
            "WHERE campaign = ? AND status = 'sending'",
            (IN_FLIGHT_AT_STOP, campaign),
        )
        self.has_history: bool = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM recipients WHERE campaign = ?)", (campaign,)
        ).fetchone()[0]
        self._journal = journal_file.Writer(self._journal_path, run_id)
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_handle: asyncio.Handle | None = None

    def prior(self, recipient: str) -> Prior | None:
        """What an earlier run of this campaign left for ``recipient``."""
        if not self.has_history:
            return None
        found = self._db.execute(
            "SELECT status, attempts, http_status, result, error FROM recipients "
            "WHERE campaign = ? AND recipient = ?",
            (self.campaign, recipient),
        ).fetchone()
        return Prior(*found) if found else None

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
        status: str,
        attempts: int,
        http_status: int | None,
        result: str | None,
        error: str | None,
    ) -> None:
        """Queue an outcome; it is written at the end of the loop's turn, with any claims."""
        self._journal.add(
            [
                journal_file.OUTCOME,
                recipient,
                status,
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
            self.flush()
        except OSError as exc:
            # Without the state nothing can promise "never twice": stop sending.
            failure = RunAborted(
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

    def flush(self) -> None:
        """Hand everything queued to the operating system now."""
        self._journal.write()

    def close(self) -> None:
        """Write what is left (also after a hard stop), fold the journal, close the file."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._journal.close()
        fold(self._db, self.campaign, self._journal_path)
        self._db.close()


def status_report(path: Path, campaign: str, limit: int = -1) -> dict[str, Any]:
    """Counts per status and the recipients who did not get the message (at most ``limit``
    of them; all when negative)."""
    if not path.is_file():
        raise UsageError(f"{path}: no state yet for campaign {campaign} (has it been run?)")
    db = connect(path)
    journal = journal_file.path_for(path, campaign)
    try:
        # A run going on (or one that died) has its latest news in the journal: read it as
        # if folded, and roll back, leaving the journal to its run.
        db.execute("BEGIN IMMEDIATE")
        if journal.exists():
            _apply(db, campaign, journal)
        counts = dict(
            db.execute(
                "SELECT status, COUNT(*) FROM recipients WHERE campaign = ? GROUP BY status",
                (campaign,),
            ).fetchall()
        )
        rows = db.execute(
            "SELECT recipient, row, status, attempts, http_status, result, error, updated_at "
            "FROM recipients WHERE campaign = ? AND status IN ('failed', 'uncertain', 'sending') "
            "ORDER BY status, row LIMIT ?",
            (campaign, limit),
        ).fetchall()
    finally:
        db.execute("ROLLBACK")
        db.close()
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
    return {
        "campaign": campaign,
        "state": str(path),
        "counts": {s: counts.get(s, 0) for s in ("sent", "failed", "uncertain", "sending")},
        "not_delivered": [dict(zip(keys, r, strict=True)) for r in rows],
    }
