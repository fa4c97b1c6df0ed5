"""`campaign state copy SRC DST`: move a state between a SQLite file and PostgreSQL.

Every campaign of the source is copied whole, claims and outcomes as they stand, so that a team
can start with the local file and move to a shared database without resending anyone. Both
sides are locked per campaign while copying (a run going on is refused), and a destination
that already holds one of the campaigns is refused rather than merged: two histories of one
campaign cannot both be true.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from runner.errors import StateError
from runner.secrets import Masker
from runner.state import Location
from runner.state import journal as journal_file
from runner.state.filelock import CampaignLock

COLUMNS = (
    "campaign",
    "recipient",
    "row",
    "status",
    "attempts",
    "http_status",
    "result",
    "error",
    "run_id",
    "first_at",
    "updated_at",
)
Row = tuple[Any, ...]


async def copy(source: Location, target: Location) -> dict[str, int]:
    """Copy every campaign of ``source`` into ``target``; recipients copied per campaign."""
    if str(source) == str(target):
        raise StateError(f"{source}: source and destination are the same state")
    masker = Masker([p for p in (source.password, target.password) if p])
    if source.url is None:
        assert source.path is not None
        rows, locks = _read_sqlite(source)
    else:
        rows, locks = await _read_postgres(source, masker)
    try:
        campaigns = sorted({r[0] for r in rows})
        if target.url is None:
            _write_sqlite(target, campaigns, rows)
        else:
            await _write_postgres(target, campaigns, rows, masker)
    finally:
        await locks.close()
    return {c: sum(1 for r in rows if r[0] == c) for c in campaigns}


class _SqliteLocks:
    def __init__(self, locks: Sequence[CampaignLock]) -> None:
        self._locks = locks

    async def close(self) -> None:
        for lock in self._locks:
            lock.release()


def _read_sqlite(source: Location) -> tuple[list[Row], _SqliteLocks]:
    from runner.state.sqlite import SCHEMA, apply

    path = source.path
    assert path is not None
    if not path.is_file():
        raise StateError(f"{path}: no such state file")
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as disk:
            disk.backup(db)
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{path}: cannot read this state file: {exc}") from None
    db.executescript(SCHEMA)
    campaigns = {c for (c,) in db.execute("SELECT DISTINCT campaign FROM recipients")}
    prefix = f"{path.name}."
    for journal in path.parent.glob(f"{path.name}.*.journal"):
        campaigns.add(journal.name[len(prefix) : -len(".journal")])
    locks = []
    try:
        for campaign in sorted(campaigns):
            lock = CampaignLock(path, campaign)
            lock.acquire()  # refuses while a run of it goes on
            locks.append(lock)
            journal = journal_file.path_for(path, campaign)
            if journal.exists():  # what a crashed run left, read as the next run would
                db.execute("BEGIN")
                apply(db, campaign, journal)
                db.execute("COMMIT")
        rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM recipients").fetchall()
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    finally:
        db.close()
    return rows, _SqliteLocks(locks)


def _write_sqlite(target: Location, campaigns: list[str], rows: list[Row]) -> None:
    from runner.state.sqlite import connect

    assert target.path is not None
    locks = [CampaignLock(target.path, c) for c in campaigns]
    held = []
    try:
        for lock in locks:
            lock.acquire()
            held.append(lock)
        db = connect(target.path)
        try:
            _refuse_existing(
                target,
                [
                    c
                    for c in campaigns
                    if db.execute("SELECT 1 FROM recipients WHERE campaign = ?", (c,)).fetchone()
                ],
            )
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                f"INSERT INTO recipients ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})",
                rows,
            )
            db.execute("COMMIT")
        finally:
            db.close()
    finally:
        for lock in held:
            lock.release()


def _refuse_existing(target: Location, present: list[str]) -> None:
    if present:
        raise StateError(
            f"{target} already holds campaign {', '.join(present)}; nothing was copied "
            "(two histories of one campaign cannot be merged)"
        )


async def _read_postgres(source: Location, masker: Masker) -> tuple[list[Row], Any]:
    from runner.state.postgres import Session

    session = await Session.connect(source, masker)
    try:
        found = await session.execute("SELECT DISTINCT campaign FROM campaign_runner_recipients")
        for record in found:
            await session.hold(record["campaign"])
        rows = [
            tuple(r)
            for r in await session.execute(
                f"SELECT {', '.join(COLUMNS)} FROM campaign_runner_recipients"
            )
        ]
    except BaseException:
        await session.close()
        raise
    return rows, session


async def _write_postgres(
    target: Location, campaigns: list[str], rows: list[Row], masker: Masker
) -> None:
    from runner.state.postgres import Session

    session = await Session.connect(target, masker)
    try:
        for campaign in campaigns:
            await session.hold(campaign)
        present = await session.execute(
            "SELECT DISTINCT campaign FROM campaign_runner_recipients WHERE campaign = ANY($1)",
            campaigns,
        )
        _refuse_existing(target, sorted(r["campaign"] for r in present))
        await session.insert("campaign_runner_recipients", COLUMNS, rows)
    finally:
        await session.close()
