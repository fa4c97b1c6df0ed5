"""Durable run state in SQLite: who was sent, who failed, who is uncertain; one run at a time.

A recipient is marked ``sending`` durably before its request leaves, so that after a crash
nobody is sent twice: what was in flight becomes ``uncertain`` and is resent only on request.
Writes are group-committed: claims and outcomes gather for a millisecond and go into one
transaction; a worker waits only for the commit that holds
its own claim. That commit also carries every outcome recorded before it, so at most
``concurrency`` recipients can be uncertain after a crash.

The commit runs on the event loop's own thread. A commit of a turn's batch takes a fraction of
a millisecond; handing it to a thread instead cost more, because a busy loop holds the GIL and
the thread waited up to the interpreter's switch interval for it on every commit. The
millisecond of gathering cuts the number of commits at full speed (each costs several system
calls) and is nothing next to a request's round trip; two milliseconds already cost more in
waiting than they save.

WAL with ``synchronous=NORMAL`` survives the process being killed at any moment (what CI
runners and Ctrl-C do); it trades only the last commits on a power loss of the machine.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import LockHeld, UsageError

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
GATHER = 0.001  # seconds a claim may wait for others to share its commit
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
        db.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: cannot use this state file: {exc}") from None
    return db


@contextmanager
def campaign_lock(path: Path, campaign: str) -> Iterator[None]:
    """Hold the lock of ``campaign`` in the state file at ``path`` for a run.

    An OS file lock is released by the kernel when its process dies, however it dies, so a
    lock left by a killed run never blocks the next one.
    """
    lock_path = path.with_name(f"{path.name}.{campaign}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = lock_path.open("a+")
    try:
        _lock_exclusive(handle.fileno())
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise LockHeld(
            f"campaign {campaign} is already running ({holder}) with state {path}; "
            "wait for that run to finish: nothing was sent"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        yield
    finally:
        handle.close()


def _lock_exclusive(fd: int) -> None:
    """Take the file lock without waiting; OSError when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


@dataclass(frozen=True)
class Prior:
    status: str
    attempts: int
    http_status: int | None
    result: str | None
    error: str | None


class CampaignState:
    """The state of one campaign during one run."""

    def __init__(self, path: Path, campaign: str, run_id: str) -> None:
        self.path = path
        self.campaign = campaign
        self.run_id = run_id
        self._db = connect(path)
        # Whatever was in flight when an earlier run died may or may not have been sent.
        self._db.execute(
            "UPDATE recipients SET status = 'uncertain', error = ? "
            "WHERE campaign = ? AND status = 'sending'",
            (IN_FLIGHT_AT_STOP, campaign),
        )
        self._has_history = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM recipients WHERE campaign = ?)", (campaign,)
        ).fetchone()[0]
        self._claims: list[tuple[Any, ...]] = []
        self._outcomes: list[tuple[Any, ...]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_handle: asyncio.Handle | None = None

    def prior(self, recipient: str) -> Prior | None:
        """What an earlier run of this campaign left for ``recipient``."""
        if not self._has_history:
            return None
        found = self._db.execute(
            "SELECT status, attempts, http_status, result, error FROM recipients "
            "WHERE campaign = ? AND recipient = ?",
            (self.campaign, recipient),
        ).fetchone()
        return Prior(*found) if found else None

    async def claim(self, recipient: str, row: int) -> None:
        """Return once ``recipient`` is durably marked as being sent."""
        now = time.time()
        self._claims.append((self.campaign, recipient, row, self.run_id, now, now))
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._schedule()
        await waiter

    def record(
        self,
        recipient: str,
        status: str,
        attempts: int,
        http_status: int | None,
        result: str | None,
        error: str | None,
    ) -> None:
        """Queue an outcome; it is committed with the next claim or at `close`."""
        self._outcomes.append(
            (status, attempts, http_status, result, error, time.time(), self.campaign, recipient)
        )
        self._schedule()

    def _schedule(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(GATHER, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        claims, outcomes, waiters = self._claims, self._outcomes, self._waiters
        self._claims, self._outcomes, self._waiters = [], [], []
        try:
            self._commit(claims, outcomes)
        except sqlite3.Error as exc:
            failure = UsageError(f"{self.path}: cannot write the state: {exc}")
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(failure)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _commit(self, claims: list[tuple[Any, ...]], outcomes: list[tuple[Any, ...]]) -> None:
        if not claims and not outcomes:
            return
        # One transaction: outcomes first, then the claims that follow them. (The connection
        # is in autocommit mode, where `with db:` would commit every row on its own.)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if outcomes:
                db.executemany(_OUTCOME, outcomes)
            if claims:
                db.executemany(_CLAIM, claims)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Commit what is left (also after a hard stop) and close the file."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._commit(self._claims, self._outcomes)
        self._claims, self._outcomes = [], []
        self._db.close()


def status_report(path: Path, campaign: str) -> dict[str, Any]:
    """Counts per status and the recipients who did not get the message (for `status`)."""
    if not path.is_file():
        raise UsageError(f"{path}: no state yet for campaign {campaign} (has it been run?)")
    db = connect(path)
    try:
        counts = dict(
            db.execute(
                "SELECT status, COUNT(*) FROM recipients WHERE campaign = ? GROUP BY status",
                (campaign,),
            ).fetchall()
        )
        rows = db.execute(
            "SELECT recipient, row, status, attempts, http_status, result, error, updated_at "
            "FROM recipients WHERE campaign = ? AND status IN ('failed', 'uncertain', 'sending') "
            "ORDER BY status, row",
            (campaign,),
        ).fetchall()
    finally:
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
