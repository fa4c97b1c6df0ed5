"""The PostgreSQL store, for CI runners, teams and workers: ``--state postgresql://…``.

- One connection per process and database carries everything: claims, outcomes, the campaign
  locks and the bot leases. Its locks are session-level advisory locks, which the server
  releases when the process or its connection dies, so a dead run never blocks the next.
- A batch of claims and outcomes is one statement (arrays through ``unnest``): atomic, and one
  round trip however many recipients it carries.
- One bot's limit across processes: a process holds a per-bot lease (an advisory lock on the
  bot's identity) for as long as it sends with that bot. A second process that shares the
  database waits for the lease and says so. Leases are taken in one global order (sorted), so
  two processes that need the same bots can never wait for each other.
- A lost connection stops the run: the next batch fails, nothing more is sent (exit 3), and
  the next run reads what was in flight as uncertain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from runner import pacing
from runner.errors import StateError, StateLost
from runner.secrets import Masker
from runner.state import Location
from runner.state.sqlite import SqlitePriors, priors_of_rows, status_of
from runner.state.store import (
    COLUMNS,
    IN_FLIGHT_AT_STOP,
    Claim,
    Control,
    Holder,
    Outcome,
    Recipient,
    RunRecord,
    held,
    run_record,
    run_values,
)
from runner.status import NOT_DELIVERED_IN_STATE, Status

SCHEMA_VERSION = 2  # 2: run history and controls (an older runner would ignore a pause)
HEARTBEAT = 1.0  # seconds between checks that the connection (and so its locks) is alive
STALLED = 5.0  # seconds a heartbeat may wait for an answer before the database counts as lost
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
CREATE TABLE IF NOT EXISTS campaign_runner_runs (
    campaign  text NOT NULL,
    run_id    text NOT NULL,
    started   double precision NOT NULL,
    finished  double precision,
    host      text NOT NULL,
    pid       integer NOT NULL,
    actor     text NOT NULL,
    mode      text NOT NULL,
    exit_code integer,
    facts     jsonb NOT NULL,
    PRIMARY KEY (campaign, run_id)
);
CREATE TABLE IF NOT EXISTS campaign_runner_controls (
    campaign text PRIMARY KEY,
    action   text NOT NULL,
    actor    text NOT NULL,
    at       double precision NOT NULL,
    reason   text NOT NULL
);
"""
# Each outcome's row is found by its whole key, one lookup per outcome (the LIMIT keeps the
# planner from turning the lookups into a join). Written as a plain join, the plan a connection
# keeps for the statement was made while a new state's table was empty and read every row of
# the campaign for each batch: a first run of 30,000 recipients slowed six-fold as it went, and
# a first run of a million would have crawled. Only this run writes its campaign's rows (the
# campaign lock), one batch at a time, so the row found is the row updated.
# Outcomes and claims of one batch in one statement: atomic, so a crash can never keep new
# claims while losing the outcomes queued before them, and one round trip. A recipient's claim
# and its outcome are never in the same batch: the outcome is recorded after the claim.
_BATCH = """
WITH outcomes AS (
    UPDATE campaign_runner_recipients AS r SET
        status = u.status, attempts = r.attempts + u.attempts, http_status = u.http_status,
        result = u.result, error = u.error, updated_at = u.at
    FROM unnest($6::text[], $7::text[], $8::int[], $9::int[], $10::text[], $11::text[],
                $12::float8[]) AS u(recipient, status, attempts, http_status, result, error, at),
         LATERAL (SELECT x.ctid AS found FROM campaign_runner_recipients AS x
                  WHERE x.campaign = $1 AND x.recipient = u.recipient LIMIT 1) AS t
    WHERE r.ctid = t.found
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
_ROWS = f"SELECT {', '.join(COLUMNS)} FROM campaign_runner_recipients WHERE campaign = $1"
_RUN_COLUMNS = "run_id, started, finished, host, pid, actor, mode, exit_code, facts"
_PUT_RUN = f"""
INSERT INTO campaign_runner_runs (campaign, {_RUN_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
ON CONFLICT (campaign, run_id) DO UPDATE SET finished = excluded.finished,
    exit_code = excluded.exit_code, facts = excluded.facts
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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # The driver's own state machine, left mid-operation by a connection the server or
        # the network ended: "cannot switch to state 12" says nothing to a person.
        return "the connection was broken off, by the server or the network"
    return str(exc) or type(exc).__name__


async def _connect(location: Location, masker: Masker) -> asyncpg.Connection:
    assert location.url is not None
    try:
        connection = await asyncpg.connect(location.url, timeout=_CONNECT_TIMEOUT)
        async with connection.transaction():
            # Two first runs at once must not both create the tables.
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _key("schema", ""))
            await connection.execute(_TABLES)
            version = await connection.fetchval("SELECT max(version) FROM campaign_runner_schema")
            if version is None or version < SCHEMA_VERSION:
                await connection.execute("DELETE FROM campaign_runner_schema")
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
    except ValueError as exc:  # the driver refused the URL itself
        raise StateError(
            f"{location}: this state URL cannot be used: {masker(_describe(exc))}. Nothing was sent"
        ) from None
    return connection


class PostgresStore:
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
    async def connect(cls, location: Location, masker: Masker) -> PostgresStore:
        return cls(location, await _connect(location, masker), masker)

    async def execute(self, query: str, *args: Any) -> Any:
        """Run one statement; a failure marks the store lost and raises `StateLost`."""
        if self.lost is not None:
            raise self.lost
        try:
            async with self._lock:
                return await self._connection.fetch(query, *args)
        except Exception as exc:  # whatever the driver raises, the state is gone for this run
            if self.lost is not None:  # the heartbeat found it stalled first: say that
                raise self.lost from None
            self.lost = StateLost(
                f"{self.location}: the state database stopped answering "
                f"({self._masker(_describe(exc))}); stopped sending so that nobody is sent "
                "twice. Run again once it is back: what was in flight is reported uncertain"
            )
            raise self.lost from None

    async def _beat(self) -> None:
        """Notice a lost or stalled connection (and with it the locks) even while nothing is
        claimed: a database that does not answer within `STALLED` is lost for this run."""
        while self.lost is None:
            await asyncio.sleep(HEARTBEAT)
            try:
                async with asyncio.timeout(STALLED):
                    await self.execute("SELECT 1")
            except StateLost:
                return
            except TimeoutError:
                self.lost = StateLost(
                    f"{self.location}: the state database did not answer within {STALLED:g} s; "
                    "stopped sending so that nobody is sent twice. Run again once it answers: "
                    "what was in flight is reported uncertain"
                )
                self._connection.terminate()  # nothing more waits on it
                return

    # -- one run --------------------------------------------------------------------------

    async def lock(self, campaign: str) -> None:
        taken = await self.execute(
            "SELECT pg_try_advisory_lock($1) AS taken", _key("campaign", campaign)
        )
        if not taken[0]["taken"]:
            raise held(campaign, await self.holder(campaign), self.location)
        await self.execute(
            "INSERT INTO campaign_runner_locks (campaign, host, pid) VALUES ($1, $2, $3) "
            "ON CONFLICT (campaign) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
            "since = now()",
            campaign,
            socket.gethostname(),
            os.getpid(),
        )

    async def unlock(self, campaign: str) -> None:
        if self.lost is None:
            await self.execute("DELETE FROM campaign_runner_locks WHERE campaign = $1", campaign)
            await self.execute("SELECT pg_advisory_unlock($1)", _key("campaign", campaign))

    async def holder(self, campaign: str) -> Holder | None:
        """The lock row counts only while its advisory lock is held (a dead holder's row
        stays behind, its lock gone with its connection)."""
        found = await self.execute(
            "SELECT l.host, l.pid, l.since FROM campaign_runner_locks l WHERE l.campaign = $1 "
            "AND EXISTS (SELECT 1 FROM pg_locks p WHERE p.locktype = 'advisory' AND p.granted "
            "AND p.objsubid = 1 AND ((p.classid::bigint << 32) | p.objid::bigint) = $2)",
            campaign,
            _key("campaign", campaign),
        )
        if not found:
            return None
        r = found[0]
        return Holder(r["host"], r["pid"], f"{r['since']:%Y-%m-%d %H:%M:%S %Z}")

    async def begin(self, campaign: str, run: RunRecord) -> None:
        # Whatever was in flight when an earlier run died may or may not have been sent.
        await self.execute(
            "UPDATE campaign_runner_recipients SET status = 'uncertain', error = $2 "
            "WHERE campaign = $1 AND status = 'sending'",
            campaign,
            IN_FLIGHT_AT_STOP,
        )
        await self._put_run(campaign, run)

    async def write(
        self, campaign: str, run_id: str, claims: Sequence[Claim], outcomes: Sequence[Outcome]
    ) -> None:
        await self.execute(
            _BATCH,
            campaign,
            run_id,
            [c.recipient for c in claims],
            [c.row for c in claims],
            [c.at for c in claims],
            [o.recipient for o in outcomes],
            [str(o.status) for o in outcomes],
            [o.attempts for o in outcomes],
            [o.http_status for o in outcomes],
            [o.result for o in outcomes],
            [o.error for o in outcomes],
            [o.at for o in outcomes],
        )

    async def end(self, campaign: str, run: RunRecord) -> None:
        await self._put_run(campaign, run)

    async def update_run(self, campaign: str, run: RunRecord) -> None:
        await self._put_run(campaign, run)

    async def _put_run(self, campaign: str, run: RunRecord) -> None:
        await self.execute(_PUT_RUN, *run_values(campaign, run))

    async def priors(self, campaign: str) -> SqlitePriors:
        return priors_of_rows(campaign, await self.rows(campaign))

    async def lease_bots(self, bots: Sequence[str], say: Callable[[str], None]) -> None:
        """Hold each bot's lease for this run, in sorted order, waiting while another process
        holds one."""
        for bot in sorted(set(bots)):
            await self._lease(_key("bot", bot), say)

    async def _lease(self, key: int, say: Callable[[str], None]) -> None:
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

    # -- reading ---------------------------------------------------------------------------

    async def ran_from(self, source: str) -> list[str]:
        found = await self.execute(
            "SELECT campaign FROM (SELECT DISTINCT ON (campaign) campaign, started, facts "
            "FROM campaign_runner_runs ORDER BY campaign, started DESC) AS latest "
            "WHERE facts->>'source' = $1 ORDER BY started DESC",
            source,
        )
        return [row["campaign"] for row in found]

    async def mentions(self, campaign: str) -> bool:
        found = await self.execute(
            "SELECT EXISTS (SELECT 1 FROM campaign_runner_recipients WHERE campaign = $1) "
            "OR EXISTS (SELECT 1 FROM campaign_runner_runs WHERE campaign = $1) "
            "OR EXISTS (SELECT 1 FROM campaign_runner_controls WHERE campaign = $1) AS found",
            campaign,
        )
        return bool(found[0]["found"])

    async def counts(self, campaign: str) -> dict[Status, int]:
        found = await self.execute(
            "SELECT status, count(*) AS n FROM campaign_runner_recipients "
            "WHERE campaign = $1 GROUP BY status",
            campaign,
        )
        return {status_of(r["status"], self.location): r["n"] for r in found}

    async def undelivered(self, campaign: str, limit: int | None) -> list[Recipient]:
        found = await self.execute(
            "SELECT recipient, row, status, attempts, http_status, result, error, updated_at "
            "FROM campaign_runner_recipients WHERE campaign = $1 AND status = ANY($2::text[]) "
            "ORDER BY status, row LIMIT $3",
            campaign,
            [str(s) for s in NOT_DELIVERED_IN_STATE],
            limit,
        )
        return [Recipient(r[0], r[1], status_of(r[2], self.location), *tuple(r)[3:]) for r in found]

    async def campaigns(self) -> list[str]:
        found = await self.execute(
            "SELECT campaign FROM campaign_runner_recipients UNION SELECT campaign FROM "
            "campaign_runner_runs UNION SELECT campaign FROM campaign_runner_controls"
        )
        return sorted(r["campaign"] for r in found)

    async def rows(self, campaign: str) -> list[tuple[Any, ...]]:
        found = [tuple(r) for r in await self.execute(_ROWS, campaign)]
        for r in found:
            status_of(r[3], self.location)
        return found

    async def insert(self, rows: Sequence[tuple[Any, ...]], runs: Sequence[Any]) -> None:
        if self.lost is not None:
            raise self.lost
        try:
            async with self._lock, self._connection.transaction():
                await self._connection.copy_records_to_table(
                    "campaign_runner_recipients", records=rows, columns=COLUMNS
                )
                for campaign, run in runs:
                    await self._connection.execute(_PUT_RUN, *run_values(campaign, run))
        except _DB_ERRORS as exc:
            raise StateError(f"{self.location}: {self._masker(_describe(exc))}") from None

    async def runs(self, campaign: str, limit: int | None = None) -> list[RunRecord]:
        found = await self.execute(
            f"SELECT {_RUN_COLUMNS} FROM campaign_runner_runs WHERE campaign = $1 "
            "ORDER BY started DESC LIMIT $2",
            campaign,
            limit,
        )
        return [run_record(tuple(r)) for r in found]

    async def forget(self, campaign: str) -> None:
        await self.execute(
            "WITH r AS (DELETE FROM campaign_runner_recipients WHERE campaign = $1), "
            "h AS (DELETE FROM campaign_runner_runs WHERE campaign = $1) "
            "DELETE FROM campaign_runner_controls WHERE campaign = $1",
            campaign,
        )

    async def control(self, campaign: str) -> Control | None:
        found = await self.execute(
            "SELECT action, actor, at, reason FROM campaign_runner_controls WHERE campaign = $1",
            campaign,
        )
        return Control(*tuple(found[0])) if found else None

    async def set_control(self, campaign: str, control: Control | None) -> None:
        if control is None:
            await self.execute("DELETE FROM campaign_runner_controls WHERE campaign = $1", campaign)
            return
        await self.execute(
            "INSERT INTO campaign_runner_controls VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (campaign) DO UPDATE SET action = excluded.action, "
            "actor = excluded.actor, at = excluded.at, reason = excluded.reason",
            campaign,
            control.action,
            control.actor,
            control.at,
            control.reason,
        )

    # -- ending ----------------------------------------------------------------------------

    def abandon(self) -> None:
        """Drop the connection without a word, as a killed process does (or as a run does
        when the database stalls: nothing may wait on it any more)."""
        self.lost = self.lost or StateLost(f"{self.location}: the state was let go")
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
        if self.lost is not None:  # a stalled or lost connection: do not wait on it
            self._connection.terminate()
            return
        try:
            await asyncio.wait_for(self._connection.close(), 5)
        except _DB_ERRORS:
            self._connection.terminate()
