"""The SQLite store: one file, with a journal beside it while a campaign runs.

During a run, claims and outcomes are appended to a journal file beside the state
(``<state>.<campaign>.journal``): each batch goes out in one ``write()``. At the end of the run
the journal is folded into SQLite, where later runs look recipients up; a journal left by a
crash is folded by the next run before anything else.

Why a journal: a SQLite transaction costs a dozen system calls (locks, WAL frames) and at full
speed the commit before each request made workers wait a millisecond or more; one append is a
single system call. A write to the page cache survives the process being killed at any moment
(what CI runners and Ctrl-C do), as SQLite's WAL with ``synchronous=NORMAL`` does; both trade
only the last writes on a power loss.

Pauses and the run history are written to the database itself (a few rows per run), so that
`campaign pause` in another process is seen by a run within a poll. Separate processes
coordinate only through the per-campaign file lock: they do not share a bot's rate limit (the
PostgreSQL store does).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from runner.errors import StateError, StateLost
from runner.state import Location
from runner.state import journal as journal_file
from runner.state.filelock import CampaignLock, holder_of
from runner.state.store import (
    COLUMNS,
    IN_FLIGHT_AT_STOP,
    Claim,
    Control,
    Holder,
    Outcome,
    Prior,
    Recipient,
    RunRecord,
    run_record,
    run_values,
)
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
CREATE TABLE IF NOT EXISTS runs (
    campaign  TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    started   REAL NOT NULL,
    finished  REAL,
    host      TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    mode      TEXT NOT NULL,
    exit_code INTEGER,
    facts     TEXT NOT NULL,
    PRIMARY KEY (campaign, run_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS controls (
    campaign TEXT PRIMARY KEY,
    action   TEXT NOT NULL,
    actor    TEXT NOT NULL,
    at       REAL NOT NULL,
    reason   TEXT NOT NULL
) WITHOUT ROWID;
"""
_MENTIONS = """
SELECT EXISTS (SELECT 1 FROM recipients WHERE campaign = ?)
    OR EXISTS (SELECT 1 FROM runs WHERE campaign = ?)
    OR EXISTS (SELECT 1 FROM controls WHERE campaign = ?)
"""
_RAN_FROM = """
SELECT r.campaign FROM runs AS r
WHERE r.started = (SELECT max(started) FROM runs WHERE campaign = r.campaign)
  AND json_extract(r.facts, '$.source') = ?
ORDER BY r.started DESC
"""
_CLAIM = """
INSERT INTO recipients (campaign, recipient, row, status, run_id, first_at, updated_at)
VALUES (?, ?, ?, 'sending', ?, ?, ?)
ON CONFLICT (campaign, recipient) DO UPDATE SET
    status = 'sending', row = excluded.row, run_id = excluded.run_id,
    updated_at = excluded.updated_at
"""
# A claim and its outcome in one write: the row as the two of them in turn would leave it.
_SETTLED = """
INSERT INTO recipients (campaign, recipient, row, status, attempts, http_status, result, error,
    run_id, first_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (campaign, recipient) DO UPDATE SET
    row = excluded.row, status = excluded.status, attempts = attempts + excluded.attempts,
    http_status = excluded.http_status, result = excluded.result, error = excluded.error,
    run_id = excluded.run_id, updated_at = excluded.updated_at
"""
_FOLD_BATCH = 4096  # settled rows handed to SQLite at once
_OUTCOME = """
UPDATE recipients SET status = ?, attempts = attempts + ?, http_status = ?, result = ?,
    error = ?, updated_at = ?
WHERE campaign = ? AND recipient = ?
"""
_PRIOR = (
    "SELECT status, attempts, http_status, result, error FROM recipients "
    "WHERE campaign = ? AND recipient = ?"
)
_RUN_COLUMNS = "run_id, started, finished, host, pid, actor, mode, exit_code, facts"


def status_of(word: str, where: object) -> Status:
    """A status word read from a state; an unknown one is damage, never guessed at."""
    try:
        return Status(word)
    except ValueError:
        raise StateError(
            f"{where}: the state holds an unknown status {word!r}; it was written by another "
            "program or a newer campaign-runner. Nothing was changed"
        ) from None


def connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        _check_shape(db, path)
        db.executescript(SCHEMA)
    except (sqlite3.DatabaseError, OSError) as exc:
        raise StateError(f"{path}: cannot use this state file: {exc}") from None
    return db


def _check_shape(db: sqlite3.Connection, path: object) -> None:
    """Refuse a database whose recipients table is not this program's."""
    found = [r[1] for r in db.execute("PRAGMA table_info(recipients)")]
    if found and found != list(COLUMNS):
        raise StateError(
            f"{path}: this is not a campaign-runner state (its recipients table has the "
            f"columns {', '.join(found)}); nothing was changed"
        )


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
    """Replay a journal inside the caller's transaction; its run id, None if folded before.

    A claim and the outcome that follows it become one write of the recipient's row (what
    applying them one after the other leaves), made in batches: a claim waits in memory until
    its outcome comes, and only the run's in-flight recipients ever wait at once."""
    records = journal_file.records(journal)
    header = next(records, None)
    run_id = str(header[1]) if header and header[0] == journal_file.RUN else journal.name
    if db.execute(
        "SELECT 1 FROM folded_runs WHERE campaign = ? AND run_id = ?", (campaign, run_id)
    ).fetchone():
        return None
    claimed: dict[str, tuple[Any, ...]] = {}  # recipient -> its claim, awaiting its outcome
    settled: list[tuple[Any, ...]] = []

    def write_settled() -> None:
        db.executemany(_SETTLED, settled)
        settled.clear()

    for record in records:
        if record[0] == journal_file.CLAIM:
            _, recipient, row, at = record
            if recipient in claimed:  # claimed again before an outcome: keep the order
                write_settled()
                db.execute(_CLAIM, claimed.pop(recipient))
            claimed[recipient] = (campaign, recipient, row, run_id, at, at)
        elif record[0] == journal_file.OUTCOME:
            _, recipient, status, attempts, http_status, result, error, at = record
            claim = claimed.pop(recipient, None)
            if claim is None:  # no claim of this run waiting: the row is there already
                write_settled()
                db.execute(
                    _OUTCOME,
                    (status, attempts, http_status, result, error, at, campaign, recipient),
                )
                continue
            _, _, row, _, first_at, _ = claim
            outcome = (status, attempts, http_status, result, error)
            settled.append((campaign, recipient, row, *outcome, run_id, first_at, at))
            if len(settled) >= _FOLD_BATCH:
                write_settled()
    write_settled()
    db.executemany(_CLAIM, claimed.values())  # still in flight when the journal ended
    return run_id


def journals(path: Path) -> dict[str, Path]:
    """The journals beside a state file, by campaign. Names are compared as plain text, never
    as a pattern, so a state named ``state[prod].sqlite3`` finds its own."""
    prefix, suffix = f"{path.name}.", ".journal"
    try:
        names = os.listdir(path.parent)
    except OSError:
        return {}
    return {
        name[len(prefix) : -len(suffix)]: path.parent / name
        for name in sorted(names)
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix + suffix)
    }


class SqlitePriors:
    """Look-ups in a SQLite table of recipients (the store's own, or a copy of another's)."""

    def __init__(self, db: sqlite3.Connection, campaign: str, own: bool = False) -> None:
        self._db = db
        self._campaign = campaign
        self._own = own  # close the connection with the priors
        found = db.execute(
            "SELECT EXISTS (SELECT 1 FROM recipients WHERE campaign = ?)", (campaign,)
        ).fetchone()
        self.has_history = bool(found[0])
        self.schemes: tuple[tuple[str, ...], ...] = ()  # set from the runs (`core.priors`)

    def prior(self, recipient: str) -> Prior | None:
        if not self.has_history:
            return None
        found = self._db.execute(_PRIOR, (self._campaign, recipient)).fetchone()
        if found is None:
            return None
        status = status_of(found[0], recipient)
        if status is Status.SENDING:  # a run going on, or one that died: it may be out
            return Prior(Status.UNCERTAIN, found[1], found[2], found[3], IN_FLIGHT_AT_STOP)
        return Prior(status, *found[1:])

    def close(self) -> None:
        if self._own:
            self._db.close()


def priors_of_rows(campaign: str, rows: Iterable[tuple[Any, ...]]) -> SqlitePriors:
    """Priors over rows (`COLUMNS`) read from another store, kept in a temporary file (a
    million recipients would not fit in memory comfortably)."""
    db = sqlite3.connect("", isolation_level=None)
    db.executescript(SCHEMA)
    db.execute("BEGIN")
    db.executemany(
        f"INSERT INTO recipients VALUES ({', '.join('?' * len(COLUMNS))})", (tuple(r) for r in rows)
    )
    db.execute("COMMIT")
    return SqlitePriors(db, campaign, own=True)


class SqliteStore:
    """A state file. ``readonly`` reads a snapshot (the file copied into memory with every
    journal applied, as a run would see it), so that `plan` and `status` work on a read-only
    folder and while a run is going on."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.location = Location(path=path)
        self.path = path
        self.readonly = readonly
        self._locks: dict[str, CampaignLock] = {}
        self._journals: dict[str, journal_file.Writer] = {}
        # A snapshot is made when first read: `mentions` may answer without one.
        self._conn = None if readonly else connect(path)
        self._handed = False  # a snapshot handed to priors closes with them

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._snapshot()
        return self._conn

    def _snapshot(self) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        if self.path.is_file():
            try:
                source = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                try:
                    source.backup(db)
                finally:
                    source.close()
                _check_shape(db, self.path)
            except sqlite3.DatabaseError as exc:
                raise StateError(f"{self.path}: cannot read this state file: {exc}") from None
        db.executescript(SCHEMA)
        for campaign, journal in journals(self.path).items():
            db.execute("BEGIN")
            apply(db, campaign, journal)
            db.execute("COMMIT")
        return db

    # -- one run --------------------------------------------------------------------------

    async def lock(self, campaign: str) -> None:
        lock = CampaignLock(self.path, campaign)
        lock.acquire()
        self._locks[campaign] = lock

    async def unlock(self, campaign: str) -> None:
        lock = self._locks.pop(campaign, None)
        if lock is not None:
            lock.release()

    async def holder(self, campaign: str) -> Holder | None:
        return holder_of(self.path, campaign)

    async def begin(self, campaign: str, run: RunRecord) -> None:
        journal = journal_file.path_for(self.path, campaign)
        fold(self._db, campaign, journal)  # what a crashed run left
        # Whatever was in flight when an earlier run died may or may not have been sent.
        self._db.execute(
            "UPDATE recipients SET status = 'uncertain', error = ? "
            "WHERE campaign = ? AND status = 'sending'",
            (IN_FLIGHT_AT_STOP, campaign),
        )
        self._put_run(campaign, run)
        self._journals[campaign] = journal_file.Writer(journal, run.run_id)

    async def write(
        self,
        campaign: str,
        run_id: str,  # noqa: ARG002 (the journal's first line names the run)
        claims: Sequence[Claim],
        outcomes: Sequence[Outcome],
    ) -> None:
        writer = self._journals[campaign]
        add = writer.add
        # A journal line is the record's own fields after its kind (see journal.py).
        for o in outcomes:
            add([journal_file.OUTCOME, *o])
        for c in claims:
            add([journal_file.CLAIM, *c])
        try:
            writer.write()
        except OSError as exc:
            raise StateLost(
                f"{writer.path}: cannot write the state ({exc.strerror}); "
                "stopped sending so that nobody is sent twice"
            ) from None

    async def end(self, campaign: str, run: RunRecord) -> None:
        writer = self._journals.pop(campaign, None)
        if writer is not None:
            writer.close()
        fold(self._db, campaign, journal_file.path_for(self.path, campaign))
        self._put_run(campaign, run)

    async def update_run(self, campaign: str, run: RunRecord) -> None:
        self._put_run(campaign, run)

    def _put_run(self, campaign: str, run: RunRecord) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO runs (campaign, {_RUN_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            run_values(campaign, run),
        )

    async def priors(self, campaign: str) -> SqlitePriors:
        if self.readonly:  # the snapshot outlives the store, for as long as the priors
            self._handed = True
            return SqlitePriors(self._db, campaign, own=True)
        return SqlitePriors(self._db, campaign)

    async def lease_bots(self, bots: Sequence[str], say: Callable[[str], None]) -> None:
        """Processes on one SQLite file do not share a bot's limit: nothing to hold."""

    # -- reading ---------------------------------------------------------------------------

    async def mentions(self, campaign: str) -> bool:
        if self._conn is None and campaign in journals(self.path):
            return True
        return bool(self._look(_MENTIONS, (campaign,) * 3)[0][0])

    async def ran_from(self, source: str) -> list[str]:
        return [row[0] for row in self._look(_RAN_FROM, (source,))]

    def _look(self, query: str, args: tuple[Any, ...]) -> list[Any]:
        """One query of the tables (not the journals of runs going on), answered without
        copying the file when this read-only store has not been read yet."""
        if self._conn is None:
            try:
                probe = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                try:
                    return probe.execute(query, args).fetchall()
                finally:
                    probe.close()
            except sqlite3.DatabaseError:
                pass  # an older, missing or damaged file: the snapshot reads it or says why
        return self._db.execute(query, args).fetchall()

    async def counts(self, campaign: str) -> dict[Status, int]:
        found = self._db.execute(
            "SELECT status, COUNT(*) FROM recipients WHERE campaign = ? GROUP BY status",
            (campaign,),
        ).fetchall()
        return {status_of(s, self.path): n for s, n in found}

    async def undelivered(self, campaign: str, limit: int | None) -> list[Recipient]:
        marks = ", ".join("?" * len(NOT_DELIVERED_IN_STATE))
        rows = self._db.execute(
            "SELECT recipient, row, status, attempts, http_status, result, error, updated_at "
            f"FROM recipients WHERE campaign = ? AND status IN ({marks}) "
            "ORDER BY status, row LIMIT ?",
            (campaign, *NOT_DELIVERED_IN_STATE, -1 if limit is None else limit),
        ).fetchall()
        return [Recipient(r[0], r[1], status_of(r[2], self.path), *r[3:]) for r in rows]

    async def campaigns(self) -> list[str]:
        found = self._db.execute(
            "SELECT campaign FROM recipients UNION SELECT campaign FROM runs "
            "UNION SELECT campaign FROM controls"
        ).fetchall()
        return sorted(c for (c,) in found)

    async def rows(self, campaign: str) -> list[tuple[Any, ...]]:
        found = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM recipients WHERE campaign = ?", (campaign,)
        ).fetchall()
        for r in found:
            status_of(r[3], self.path)  # an unknown status is never copied silently
        return found

    async def insert(self, rows: Sequence[tuple[Any, ...]], runs: Sequence[Any]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                f"INSERT INTO recipients ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})",
                rows,
            )
            for campaign, run in runs:
                self._put_run(campaign, run)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def runs(self, campaign: str, limit: int | None = None) -> list[RunRecord]:
        # Written straight to the tables, never to a journal: a look needs no snapshot.
        found = self._look(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE campaign = ? ORDER BY started DESC LIMIT ?",
            (campaign, -1 if limit is None else limit),
        )
        return [run_record(tuple(r)) for r in found]

    async def forget(self, campaign: str) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        for table in ("recipients", "runs", "controls", "folded_runs"):
            self._db.execute(f"DELETE FROM {table} WHERE campaign = ?", (campaign,))
        self._db.execute("COMMIT")

    async def control(self, campaign: str) -> Control | None:
        found = self._db.execute(
            "SELECT action, actor, at, reason FROM controls WHERE campaign = ?", (campaign,)
        ).fetchone()
        return Control(*found) if found else None

    async def set_control(self, campaign: str, control: Control | None) -> None:
        if control is None:
            self._db.execute("DELETE FROM controls WHERE campaign = ?", (campaign,))
            return
        self._db.execute(
            "INSERT OR REPLACE INTO controls VALUES (?, ?, ?, ?, ?)",
            (campaign, control.action, control.actor, control.at, control.reason),
        )

    # -- ending ----------------------------------------------------------------------------

    def abandon(self) -> None:
        for writer in self._journals.values():
            with contextlib.suppress(OSError):
                os.close(writer.fd)
        self._journals.clear()
        if self._conn is not None:
            self._conn.close()
        for lock in self._locks.values():
            lock.release()
        self._locks.clear()

    async def close(self) -> None:
        for campaign in list(self._journals):
            self._journals.pop(campaign).close()
        if not self._handed and self._conn is not None:
            self._conn.close()
        for lock in self._locks.values():
            lock.release()
        self._locks.clear()
