"""The PostgreSQL state backend, for CI runners and teams: ``--state postgresql://…``.

- One connection per process and database carries everything: claims, outcomes, the campaign
  lock and the bot leases. Its locks are session-level advisory locks, which the server
  releases when the process or its connection dies, so a dead run never blocks the next.
- A claim is committed before its request leaves. The claims queued during one turn of the
  event loop go in one statement (arrays through ``unnest``), as do the outcomes, so at most
  ``delivery.concurrency`` recipients can be uncertain after a crash, as with SQLite.
- One bot's limit across processes: a process holds a per-bot lease (an advisory lock on the
  bot's base URL and id) for as long as it sends with that bot. A second process that shares
  the database waits for the lease and says so, so that no two processes ever put requests
  for one bot on the wire together, and each keeps the bot's limit on its own.
- A lost connection stops the run: the next claim fails, nothing more is sent (exit 3), what
  was in flight is recorded as far as it can be, and the next run reads the rest as uncertain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from runner import pacing
from runner.errors import LockHeld, StateError, StateLost
from runner.secrets import Masker
from runner.state import IN_FLIGHT_AT_STOP, Location, Prior
from runner.state.sqlite import Snapshot, report
from runner.status import NOT_DELIVERED_IN_STATE, Status

SCHEMA_VERSION = 1
HEARTBEAT = 1.0  # seconds between checks that the connection (and so its locks) is alive
_CONNECT_TIMEOUT = 10.0
_LEASE_POLL = 0.5
_TABLES = """
CREATE TABLE IF NOT EXISTS campaign_runner_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS campaign_runner_recipients (
    campaign    text NOT NULL,
    recipient   text NOT NULL,
    row         bigint,
    status      text NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    http_status integer,
    result      text,
    error       text,
    run_id      text,
    first_at    double precision NOT NULL,
    updated_at  double precision NOT NULL,
    PRIMARY KEY (campaign, recipient)
);
CREATE TABLE IF NOT EXISTS campaign_runner_bots (
    bot      bigint PRIMARY KEY,
    acquired double precision NOT NULL,
    released double precision
);
CREATE TABLE IF NOT EXISTS campaign_runner_locks (
    campaign text PRIMARY KEY,
    host     text NOT NULL,
    pid      integer NOT NULL,
    since    timestamptz NOT NULL DEFAULT now()
);
"""
# Outcomes and claims of one batch in one statement: atomic, so a crash can never keep new
# claims while losing the outcomes queued before them (which would leave more than
# ``concurrency`` recipients uncertain), and one round trip. A recipient's claim and its
# outcome are never in the same batch: the outcome is recorded after the claim committed.
_BATCH = """
WITH outcomes AS (
    UPDATE campaign_runner_recipients AS r SET
        status = u.status, attempts = r.attempts + u.attempts, http_status = u.http_status,
        result = u.result, error = u.error, updated_at = u.at
    FROM unnest($6::text[], $7::text[], $8::int[], $9::int[], $10::text[], $11::text[],
                $12::float8[]) AS u(recipient, status, attempts, http_status, result, error, at)
    WHERE r.campaign = $1 AND r.recipient = u.recipient
    RETURNING 1
), claims AS (
    INSERT INTO campaign_runner_recipients
        (campaign, recipient, row, status, run_id, first_at, updated_at)
    SELECT $1, c.recipient, c.row, 'sending', $2, c.at, c.at
    FROM unnest($3::text[], $4::bigint[], $5::float8[]) AS c(recipient, row, at)
    ON CONFLICT (campaign, recipient) DO UPDATE SET
        status = 'sending', row = excluded.row, run_id = excluded.run_id,
        updated_at = excluded.updated_at
    RETURNING 1
)
SELECT (SELECT count(*) FROM outcomes) AS outcomes, (SELECT count(*) FROM claims) AS claims
"""
_ROWS = """
SELECT recipient, row, status, attempts, http_status, result, error, updated_at
FROM campaign_runner_recipients WHERE campaign = $1
"""
_NOW = "extract(epoch from clock_timestamp())"
# How long a new holder of a bot's lease waits: what is left of a pacing window since the last
# holder let go (all of it when the last holder died without letting go), so that its last
# requests and the new holder's first never share one of the API's seconds.
_HANDOVER = f"""
SELECT CASE WHEN released IS NULL OR released < acquired THEN $2
            ELSE greatest(0, $2 - ({_NOW} - released)) END AS wait
FROM campaign_runner_bots WHERE bot = $1
"""
_ACQUIRED = f"""
INSERT INTO campaign_runner_bots (bot, acquired) VALUES ($1, {_NOW})
ON CONFLICT (bot) DO UPDATE SET acquired = excluded.acquired
"""
_DB_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _key(kind: str, name: str) -> int:
    """A stable 64-bit advisory lock key for a campaign or a bot."""
    digest = hashlib.sha256(f"campaign-runner:{kind}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _connect(location: Location, masker: Masker) -> asyncpg.Connection:
    assert location.url is not None
    try:
        connection = await asyncpg.connect(location.url, timeout=_CONNECT_TIMEOUT)
        async with connection.transaction():
            # Two first runs at once must not both create the tables.
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _key("schema", ""))
            await connection.execute(_TABLES)
            version = await connection.fetchval("SELECT max(version) FROM campaign_runner_schema")
            if version is None:
                await connection.execute(
                    "INSERT INTO campaign_runner_schema VALUES ($1)", SCHEMA_VERSION
                )
            elif version > SCHEMA_VERSION:
                raise StateError(
                    f"{location}: the state was written by a newer campaign-runner "
                    f"(schema {version}); upgrade to use it. Nothing was sent"
                )
    except _DB_ERRORS as exc:
        raise StateError(
            f"{location}: cannot use the state database: {masker(_describe(exc))}. Nothing was sent"
        ) from None
    return connection


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class Session:
    """The process's connection to one state database."""

    def __init__(self, location: Location, connection: asyncpg.Connection, masker: Masker):
        self.location = location
        self._connection = connection
        self._masker = masker
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self.lost: StateLost | None = None
        self._leases: list[int] = []
        self._heartbeat = asyncio.ensure_future(self._beat())

    @classmethod
    async def connect(cls, location: Location, masker: Masker) -> Session:
        return cls(location, await _connect(location, masker), masker)

    async def execute(self, query: str, *args: Any) -> Any:
        """Run one statement; a failure marks the session lost and raises `StateLost`."""
        if self.lost is not None:
            raise self.lost
        try:
            async with self._lock:
                return await self._connection.fetch(query, *args)
        except Exception as exc:  # whatever the driver raises, the state is gone for this run
            self.lost = StateLost(
                f"{self.location}: the state database stopped answering "
                f"({self._masker(_describe(exc))}); stopped sending so that nobody is sent "
                "twice. Run again once it is back: what was in flight is reported uncertain"
            )
            raise self.lost from None

    async def _beat(self) -> None:
        """Notice a lost connection (and with it the locks) even while nothing is claimed."""
        while self.lost is None:
            await asyncio.sleep(HEARTBEAT)
            try:
                await asyncio.wait_for(self.execute("SELECT 1"), HEARTBEAT * 5)
            except (StateLost, TimeoutError):
                return

    async def insert(
        self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> None:
        """Bulk-load ``rows`` in one transaction (COPY): for `state copy`."""
        if self.lost is not None:
            raise self.lost
        try:
            async with self._lock, self._connection.transaction():
                await self._connection.copy_records_to_table(table, records=rows, columns=columns)
        except _DB_ERRORS as exc:
            raise StateError(f"{self.location}: {self._masker(_describe(exc))}") from None

    async def hold(self, campaign: str) -> None:
        """Take the campaign's lock for this session, or raise `LockHeld` saying who has it."""
        key = _key("campaign", campaign)
        taken = await self.execute("SELECT pg_try_advisory_lock($1) AS taken", key)
        if not taken[0]["taken"]:
            holder = await self.execute(
                "SELECT host, pid, since FROM campaign_runner_locks WHERE campaign = $1",
                campaign,
            )
            who = (
                f"host {holder[0]['host']} pid {holder[0]['pid']} since "
                f"{holder[0]['since']:%Y-%m-%d %H:%M:%S %Z}"
                if holder
                else "another process"
            )
            raise LockHeld(
                f"campaign {campaign} is already running ({who}) with state {self.location}; "
                "wait for that run to finish: nothing was sent"
            )

    async def open_run(self, campaign: str, run_id: str) -> PgRunState:
        await self.hold(campaign)
        await self.execute(
            "INSERT INTO campaign_runner_locks (campaign, host, pid) VALUES ($1, $2, $3) "
            "ON CONFLICT (campaign) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
            "since = now()",
            campaign,
            socket.gethostname(),
            os.getpid(),
        )
        # Whatever was in flight when an earlier run died may or may not have been sent.
        await self.execute(
            "UPDATE campaign_runner_recipients SET status = 'uncertain', error = $2 "
            "WHERE campaign = $1 AND status = 'sending'",
            campaign,
            IN_FLIGHT_AT_STOP,
        )
        rows = await self.execute(_ROWS, campaign)
        return PgRunState(self, campaign, run_id, Snapshot.of_rows(campaign, map(tuple, rows)))

    async def lease_bot(self, bot: tuple[str, str], say: Callable[[str], None]) -> None:
        """Hold the bot's lease for this run, waiting while another process holds it."""
        key = _key("bot", "\x00".join(bot))
        said = False
        while True:
            taken = await self.execute("SELECT pg_try_advisory_lock($1) AS taken", key)
            if taken[0]["taken"]:
                self._leases.append(key)
                wait = await self.execute(_HANDOVER, key, pacing.WINDOW)
                await self.execute(_ACQUIRED, key)
                if wait and wait[0]["wait"] > 0:
                    await asyncio.sleep(wait[0]["wait"])
                return
            if not said:
                say(
                    "waiting: another process sharing this state is sending with the same bot; "
                    "processes take turns with a bot so that its limit holds"
                )
                said = True
            await asyncio.sleep(_LEASE_POLL)

    async def release(self, campaign: str) -> None:
        if self.lost is None:
            await self.execute("DELETE FROM campaign_runner_locks WHERE campaign = $1", campaign)
            await self.execute("SELECT pg_advisory_unlock($1)", _key("campaign", campaign))

    def abandon(self) -> None:
        """Drop the connection without a word, as a killed process does."""
        self._heartbeat.cancel()
        self._connection.terminate()

    async def close(self) -> None:
        """Close the connection; the server releases every lock it held."""
        for key in self._leases:
            with contextlib.suppress(StateLost):
                await self.execute(
                    f"UPDATE campaign_runner_bots SET released = {_NOW} WHERE bot = $1", key
                )
        self._heartbeat.cancel()
        await asyncio.gather(self._heartbeat, return_exceptions=True)
        try:
            await asyncio.wait_for(self._connection.close(), 5)
        except _DB_ERRORS:
            self._connection.terminate()


class PgRunState:
    """The state of one campaign during one run, in PostgreSQL."""

    def __init__(self, session: Session, campaign: str, run_id: str, priors: Snapshot) -> None:
        self.location = session.location
        self.campaign = campaign
        self.has_history = priors.has_history
        self._session = session
        self._run_id = run_id
        self._priors = priors
        self._claims: list[tuple[str, int, float]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._outcomes: list[tuple[Any, ...]] = []
        self._flushing: asyncio.Task[None] | None = None

    def prior(self, recipient: str) -> Prior | None:
        return self._priors.prior(recipient)

    def claim(self, recipient: str, row: int) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        self._claims.append((recipient, row, time.time()))
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
        self._outcomes.append(
            (recipient, str(status), attempts, http_status, result, error, time.time())
        )
        self._schedule()

    def _schedule(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        """Write batches until nothing is queued; what queues meanwhile goes in the next."""
        while self._claims or self._outcomes:
            claims, waiters, outcomes = self._claims, self._waiters, self._outcomes
            self._claims, self._waiters, self._outcomes = [], [], []
            try:
                await self._session.execute(
                    _BATCH,
                    self.campaign,
                    self._run_id,
                    *_columns(claims, 3),
                    *_columns(outcomes, 7),
                )
            except StateLost as lost:
                for waiter in waiters + self._waiters:
                    if not waiter.done():
                        waiter.set_exception(lost)
                self._claims, self._waiters, self._outcomes = [], [], []
                return
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def close(self) -> None:
        """Write what is left, release the campaign's lock."""
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self._flush()
        self._priors.close()
        with contextlib.suppress(StateLost):  # else the server released the locks already
            await self._session.release(self.campaign)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column, for ``unnest``."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


async def _read_rows(location: Location, campaign: str) -> list[tuple[Any, ...]]:
    connection = await _connect(location, Masker([location.password or ""]))
    try:
        return [tuple(r) for r in await connection.fetch(_ROWS, campaign)]
    finally:
        await connection.close()


def read(location: Location, campaign: str) -> Snapshot:
    """What the database holds for ``campaign``, as a read-only snapshot (for `plan`)."""
    return Snapshot.of_rows(campaign, asyncio.run(_read_rows(location, campaign)))


async def read_status(location: Location, campaign: str, limit: int) -> dict[str, Any]:
    connection = await _connect(location, Masker([location.password or ""]))
    try:
        counts = {
            r["status"]: r["n"]
            for r in await connection.fetch(
                "SELECT status, count(*) AS n FROM campaign_runner_recipients "
                "WHERE campaign = $1 GROUP BY status",
                campaign,
            )
        }
        rows = await connection.fetch(
            "SELECT recipient, row, status, attempts, http_status, result, error, updated_at "
            "FROM campaign_runner_recipients WHERE campaign = $1 AND status = ANY($2::text[]) "
            "ORDER BY status, row LIMIT $3",
            campaign,
            [str(s) for s in NOT_DELIVERED_IN_STATE],
            None if limit < 0 else limit,
        )
    finally:
        await connection.close()
    if not counts:
        raise StateError(f"{location}: no state yet for campaign {campaign} (has it been run?)")
    return {**report(campaign, counts, [tuple(r) for r in rows]), "state": str(location)}
