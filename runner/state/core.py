"""The never-twice promise, written once above every store.

- Claims and outcomes queued during one turn of the event loop go to the store in one batch,
  and a worker waits only for the batch that holds its own claim. A batch carries every
  outcome recorded before it, so at most ``concurrency`` recipients can be uncertain after a
  crash, whatever the store.
- Every batch has a deadline: a database that stops answering stops the run (`StateLost`,
  exit 3) instead of hanging it, and nothing more is sent.
- Opening a run takes the campaign's lock, turns what a dead run left in flight into
  ``uncertain``, and enters the run in the history; closing it writes what is left, settles
  the history entry and lets the lock go.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from runner.errors import LockHeld, StateError, StateLost
from runner.secrets import Masker
from runner.state import Location
from runner.state.store import (
    Claim,
    Control,
    Outcome,
    Prior,
    Priors,
    RunRecord,
    Store,
    key_schemes,
)
from runner.status import NOT_DELIVERED_IN_STATE, Status

# Seconds a batch of claims and outcomes may take before the state counts as lost. A healthy
# database answers in milliseconds; this only bounds a stalled one.
WRITE_DEADLINE = 10.0
# Statuses `status` and the reports count, in this order.
SHOWN = (Status.SENT, Status.FAILED, Status.UNSENT, Status.UNCERTAIN, Status.SENDING)


async def open_store(location: Location, masker: Masker, *, readonly: bool = False) -> Store:
    """The store at ``location``, chosen here once. ``readonly`` never changes anything (for
    `plan` and `status`: a read-only folder, a run going on)."""
    if location.url is not None:
        from runner.state.postgres import PostgresStore

        return await PostgresStore.connect(location, masker)
    from runner.state.sqlite import SqliteStore

    assert location.path is not None
    return SqliteStore(location.path, readonly=readonly)


def actor() -> str:
    """Who acts: the CI's user when there is one, else user@host."""
    ci_user = " ".join((os.environ.get("GITHUB_ACTOR") or "").split())
    if ci_user:
        return ci_user
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def new_record(run_id: str, mode: str) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        started=time.time(),
        host=socket.gethostname(),
        pid=os.getpid(),
        actor=actor(),
        mode=mode,
    )


class CampaignRun:
    """The state of one campaign during one run, as the engine uses it."""

    def __init__(
        self, store: Store, campaign: str, record: RunRecord, priors: Priors, *, owns: bool = False
    ) -> None:
        self.store = store
        self._owns = owns  # close the store with the run
        self.location = store.location
        self.campaign = campaign
        self.entry = record
        self.has_history = priors.has_history
        self.schemes = priors.schemes
        self._priors = priors
        self._claims: list[Claim] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._outcomes: list[Outcome] = []
        self._flushing: asyncio.Task[None] | None = None
        self.lost: StateLost | None = None
        #: outcomes the state never took (it was lost): the state shows those recipients in
        #: flight, and a later run reports them uncertain whatever this run knew of them
        self.unrecorded: list[Outcome] = []
        self.deadline = WRITE_DEADLINE

    def prior(self, recipient: str) -> Prior | None:
        return self._priors.prior(recipient)

    def claim(self, recipient: str, row: int) -> asyncio.Future[None]:
        """A future done once ``recipient`` is durably marked as being sent: await it."""
        waiter = asyncio.get_running_loop().create_future()
        if self.lost is not None:
            waiter.set_exception(self.lost)
            return waiter
        self._claims.append(Claim(recipient, row, time.time()))
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
        """Queue an outcome; it is written with the next batch."""
        found = Outcome(recipient, status, attempts, http_status, result, error, time.time())
        if self.lost is not None:
            self.unrecorded.append(found)
            return
        self._outcomes.append(found)
        self._schedule()

    async def control(self) -> Control | None:
        """A pause or cancel given since the run began (polled while it sends)."""
        async with asyncio.timeout(self.deadline):
            return await self.store.control(self.campaign)

    async def progress(self, **facts: Any) -> None:
        """Say how far the run has come, for `status` elsewhere meanwhile."""
        self.entry = replace(self.entry, facts={**self.entry.facts, **facts})
        async with asyncio.timeout(self.deadline):
            await self.store.update_run(self.campaign, self.entry)

    def _schedule(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Write batches until nothing is queued; what queues meanwhile goes in the next."""
        while (self._claims or self._outcomes) and self.lost is None:
            claims, waiters, outcomes = self._claims, self._waiters, self._outcomes
            self._claims, self._waiters, self._outcomes = [], [], []
            try:
                # A timeout scope, not wait_for: no task of its own for each batch, and a
                # cancellation is never swallowed (wait_for can, in Python 3.11).
                async with asyncio.timeout(self.deadline):
                    await self.store.write(self.campaign, self.entry.run_id, claims, outcomes)
            except (StateLost, TimeoutError) as exc:
                if isinstance(exc, StateLost):
                    self.lost = exc
                else:
                    self.lost = StateLost(
                        f"{self.location}: the state did not answer within "
                        f"{self.deadline:g} s; stopped sending so that nobody is sent twice. "
                        "Run again once it answers: what was in flight is reported uncertain"
                    )
                    self.store.abandon()  # stalled: nothing more may wait on it
                for waiter in waiters + self._waiters:
                    if not waiter.done():
                        waiter.set_exception(self.lost)
                self.unrecorded += outcomes + self._outcomes
                self._claims, self._waiters, self._outcomes = [], [], []
                return
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def abandon(self) -> None:
        """Stop as a killed process does (for tests of what a crash leaves)."""
        if self._flushing is not None:
            self._flushing.cancel()
        self._priors.close()
        self.store.abandon()

    async def close(self, **facts: Any) -> None:
        """Write what is left, settle the run's history entry with ``facts``, unlock."""
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self._flush()
        self._priors.close()
        exit_code = facts.pop("exit_code", None)
        self.entry = replace(
            self.entry,
            finished=time.time(),
            exit_code=exit_code,
            facts={**self.entry.facts, **facts},
        )
        if self.lost is None:
            with contextlib.suppress(StateLost, TimeoutError):
                async with asyncio.timeout(self.deadline):
                    await self.store.end(self.campaign, self.entry)
        with contextlib.suppress(StateLost, TimeoutError):
            async with asyncio.timeout(self.deadline):
                await self.store.unlock(self.campaign)
        if self._owns:
            await self.store.close()


async def _priors(store: Store, campaign: str) -> Priors:
    """What earlier runs left for ``campaign``, and each order of identifiers they keyed its
    V2 recipients by (`pipeline.prior_of` looks them up by each)."""
    found = await store.priors(campaign)
    found.schemes = key_schemes(await store.runs(campaign))
    return found


async def open_run(
    store: Store, campaign: str, record: RunRecord, *, owns: bool = False
) -> CampaignRun:
    """Lock ``campaign`` in ``store``, recover what a dead run left, and begin ``record``.
    ``owns``: the run closes the store when it closes."""
    try:
        await store.lock(campaign)
    except LockHeld as exc:
        raise LockHeld(f"{exc}: nothing was sent") from None
    try:
        await store.begin(campaign, record)
        priors = await _priors(store, campaign)
    except BaseException:
        with contextlib.suppress(StateLost, StateError):
            await store.unlock(campaign)
        raise
    return CampaignRun(store, campaign, record, priors, owns=owns)


async def status_report(store: Store, campaign: str, limit: int | None = None) -> dict[str, Any]:
    """Counts per status and the recipients not delivered (at most ``limit``; all if None)."""
    counts = await store.counts(campaign)
    missing = await store.undelivered(campaign, limit)
    return {
        "campaign": campaign,
        "state": str(store.location),
        "counts": {str(s): counts.get(s, 0) for s in SHOWN},
        "not_delivered": [r.as_dict() for r in missing],
        "not_delivered_count": sum(counts.get(s, 0) for s in NOT_DELIVERED_IN_STATE),
    }


async def read_status(
    location: Location, campaign: str, limit: int | None = None
) -> dict[str, Any]:
    """`status_report` of a campaign, read without changing anything."""
    store = await open_store(location, Masker(location.passwords), readonly=True)
    try:
        if not await store.runs(campaign, 1) and not await store.counts(campaign):
            raise StateError(f"{location}: no state yet for campaign {campaign} (has it been run?)")
        return await status_report(store, campaign, limit)
    finally:
        await store.close()


class Stores:
    """The stores one command uses, opened once each (one connection per database)."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._open: dict[Location, Store] = {}

    async def get(self, location: Location) -> Store:
        store = self._open.get(location)
        if store is None:
            store = self._open[location] = await open_store(location, self._masker)
        return store

    async def open_run(self, location: Location, campaign: str, record: RunRecord) -> CampaignRun:
        return await open_run(await self.get(location), campaign, record)

    async def lease_bots(
        self, bots: list[tuple[Location, str]], say: Callable[[str], None]
    ) -> None:
        """Each store holds the leases of the bots its campaigns send with."""
        for location, store in self._open.items():
            await store.lease_bots([bot for where, bot in bots if where == location], say)

    async def close(self) -> None:
        for store in self._open.values():
            await store.close()
        self._open.clear()


def read_priors(location: Location, campaign: str) -> Priors:
    """What earlier runs left for ``campaign``, read without changing anything, for a
    command outside an event loop (`plan`, `status`); close it when done."""

    async def read() -> Priors:
        store = await open_store(location, Masker(location.passwords), readonly=True)
        try:
            return await _priors(store, campaign)
        finally:
            await store.close()

    return asyncio.run(read())
