"""The asyncio broadcast engine: ``concurrency`` workers per campaign on one transport.

The workers share one generator over the prepared stream (the same one `plan` writes), which
reports skips and drops recipients an earlier run settled. Each worker waits for the bot's
pacer, claims the recipient in the state (durable before the request can leave, and only once
it can), sends through the transport, classifies (`runner.outcome`), retries what surely did
not arrive, and records the outcome in the state and the report.

The engine owns no I/O of its own: a `Transport` sends (aiohttp, or an in-memory one in tests),
a `Clock` tells the time, a `ReportSink` takes the lines, and the state takes claims. So its
logic runs in tests in memory, on a fake clock.

A campaign-wide error (a rejected token, answers that are not the API's, an API that cannot be
reached from the start) stops the run at once and leaves everyone it touched `unsent`, so that
a plain rerun after the fix reaches them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runner import outcome
from runner.clock import SYSTEM, Clock
from runner.errors import StateLost
from runner.model import Campaign
from runner.outcome import Attempt, Kind
from runner.pacing import Pacer
from runner.pipeline import Item, Prepared, Skipped, earlier
from runner.report import line
from runner.secrets import Masker
from runner.state.store import Prior
from runner.status import Status
from runner.tally import Line, Tally
from runner.transport import AiohttpTransport, Transport

_YIELD_EVERY = 256  # rows between yields to the loop while skipping without I/O
_PAUSE = object()
_CHUNK = 64  # rows prepared at a time
# Attempts that could not connect, before the API ever answered, after which the run stops:
# the endpoint is wrong or down, and every further recipient would only wait out its retries.
UNREACHABLE_AT_START = 5
# 429s are the pacer's business (it slows the bot down), not the recipient's: they do not use
# up `delivery.retries`, up to this many for one recipient.
MAX_RATE_LIMITED = 20


class ReportSink(Protocol):
    """Where the engine's lines go (`runner.report.ReportWriter`); its tally is what
    progress reads."""

    tally: Tally

    def write(
        self, line: Line, record: Mapping[str, Any] | None = None, *, this_run: bool = True
    ) -> None: ...

    def attempted(
        self, http_status: int | None, started: float, kind: str, rate: float
    ) -> None: ...

    def deferred(self, opens: float | None) -> None: ...


class RunState(Protocol):
    """The state of one campaign during a run (`runner.state.core.CampaignRun`)."""

    has_history: bool
    schemes: tuple[tuple[str, ...], ...]

    def prior(self, recipient: str) -> Prior | None: ...

    def claim(self, recipient: str, row: int) -> Awaitable[None]: ...

    def record(
        self,
        recipient: str,
        status: Status,
        attempts: int,
        http_status: int | None,
        result: str | None,
        error: str | None,
    ) -> None: ...


@dataclass(frozen=True)
class Job:
    """One campaign of a run: what it sends, and where its outcomes go."""

    campaign: Campaign
    items: Iterator[Item]
    report: ReportSink
    state: RunState
    pacer: Pacer
    masker: Masker
    retry_failed: bool = False
    resend_uncertain: bool = False
    limit: int | None = None  # new recipients to send at most (a canary batch)
    ignore_history: bool = False  # a test send: every recipient given is sent, every time
    deadline: float | None = None  # epoch seconds: no request starts after it (not_after)
    budget: float | None = None  # clock.monotonic() after which no request starts (exit 0)


class JobRun:
    """What happens to a `Job` while the engine runs it; read by progress and the summary.

    Public attributes are read-only outside the engine; the engine changes them.
    """

    __slots__ = (
        "_stop",
        "aborted",
        "answered",
        "budget_spent",
        "cancelled",
        "consecutive_failures",
        "first_start",
        "interrupted",
        "job",
        "last_start",
        "leftover",
        "limited",
        "paused",
        "unreachable",
        "unstarted",
        "window_closed",
    )

    def __init__(self, job: Job) -> None:
        self.job = job
        self.aborted: str | None = None  #: why the run stopped itself (exit 3)
        self.interrupted = False  #: Ctrl-C / SIGTERM (exit 130)
        self.limited = False  #: stopped after `Job.limit` new recipients (exit 0)
        self.leftover: list[Item] = []  #: rows read but not handled when the run stopped
        self.unstarted: list[Item] = []  #: rows a worker held, unclaimed, when it stopped
        self.window_closed = False  #: the send window (schedule.not_after) closed mid-run
        self.budget_spent = False  #: the time budget (--max-duration) ran out (exit 0)
        self.paused: str | None = None  #: who paused the campaign and why (exit 3)
        self.cancelled = False  #: ... and it was a cancel: nothing more is ever sent
        self.first_start: float | None = None  #: monotonic time of the first request
        self.last_start: float | None = None  #: and of the latest one
        self.consecutive_failures = 0
        self.answered = False  #: the API has answered at least once in this run
        self.unreachable = 0  #: attempts that could not connect before any answer
        self._stop = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def abort(self, reason: str) -> None:
        if self.aborted is None:
            self.aborted = reason
        self._stop.set()

    def interrupt(self) -> None:
        self.interrupted = True
        self._stop.set()

    def pause(self, words: str, *, final: bool = False) -> None:
        """Someone paused or (``final``) cancelled the campaign: start nothing more (exit 3)."""
        self.paused = words
        self.cancelled = final
        self.abort(words)

    def spend(self) -> None:
        """The time budget ran out: start nothing more; the rest is left for the next run."""
        self.budget_spent = True
        self._stop.set()

    def close_window(self) -> None:
        """The send window closed (schedule.not_after): start nothing more."""
        self.window_closed = True
        self._stop.set()

    def rest(self) -> Iterator[Item]:
        """The rows a stopped run did not handle, in order: read, or not yet read."""
        return itertools.chain(self.unstarted, self.leftover, self.job.items)

    async def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if the run stops meanwhile; True when it stopped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # not wait_for: it can swallow a cancel
                await self._stop.wait()
        return self._stop.is_set()


def aiohttp_transport(job: Job) -> Transport:
    return AiohttpTransport(job.campaign.delivery, traced=job.pacer.traced)


class Engine:
    def __init__(
        self,
        jobs: list[Job],
        *,
        transport: Callable[[Job], Transport] = aiohttp_transport,
        clock: Clock = SYSTEM,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        seed: int | None = None,
    ):
        self.runs = [JobRun(job) for job in jobs]
        self._transport = transport
        self._clock = clock
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._random = random.Random(seed)

    def interrupt(self) -> None:
        """Ctrl-C / SIGTERM: start nothing new, let what is in flight finish."""
        for run in self.runs:
            run.interrupt()

    async def run(self) -> None:
        await asyncio.gather(*(self._run_job(run) for run in self.runs))

    async def _run_job(self, run: JobRun) -> None:
        transport = self._transport(run.job)
        try:
            # Workers pull from one shared generator, no queue between them: a stop leaves at
            # most one prepared chunk unsent, and nothing claimed that was not sent.
            source = self._to_send(run)
            workers = [
                asyncio.create_task(self._worker(run, source, transport))
                for _ in range(run.job.campaign.delivery.concurrency)
            ]
            try:
                await asyncio.gather(*workers)
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                source.close()
        finally:
            await transport.close()

    def _out_of_time(self, run: JobRun) -> bool:
        """Whether the send window or the time budget has closed (and the run with it)."""
        job = run.job
        if job.deadline is not None and self._clock.time() >= job.deadline:
            run.close_window()
        elif job.budget is not None and self._clock.monotonic() >= job.budget:
            run.spend()
        return run.stopping

    def _to_send(self, run: JobRun) -> Generator[Prepared | object, None, None]:
        """The recipients to send, in order; skips are reported on the way.

        Yields `_PAUSE` after a long run of rows with nothing to send (a rerun skipping a
        million delivered rows), so the loop still serves signals and progress meanwhile.
        """
        job = run.job
        write = job.report.write
        history = job.state.has_history and not job.ignore_history
        rows = job.items
        idle = 0
        budget = job.limit
        timed = job.deadline is not None or job.budget is not None
        chunk: list[Item] = []
        done = 0  # rows of the chunk handed on or reported
        try:
            while not run.stopping:
                # Rows are prepared a chunk at a time: reading and rendering in a tight loop is
                # markedly cheaper than one row between every two network events.
                chunk = list(itertools.islice(rows, _CHUNK))
                done = 0
                if not chunk:
                    return
                for item in chunk:
                    if run.stopping:
                        return
                    if timed and self._out_of_time(run):
                        return
                    if isinstance(item, Skipped):
                        if item.opens is None or not (history and _settled_earlier(job, item)):
                            write(line(item.row, item.recipient, item.status, reason=item.reason))
                            if item.opens is not None:
                                job.report.deferred(item.opens)
                    elif not (history and _settled_earlier(job, item)):
                        if budget is not None:
                            if budget <= 0:
                                run.limited = True  # the canary is out: the rest waits
                                return
                            budget -= 1
                        done += 1
                        idle = 0
                        yield item
                        continue
                    done += 1
                    idle += 1
                    if idle >= _YIELD_EVERY:
                        idle = 0
                        yield _PAUSE
        finally:
            # A stop leaves the rest of the chunk handled by nobody; it goes with the rows
            # not yet read (`rest`).
            run.leftover = chunk[done:]

    async def _worker(
        self,
        run: JobRun,
        source: Generator[Prepared | object, None, None],
        transport: Transport,
    ) -> None:
        job = run.job
        for item in source:
            if item is _PAUSE:
                await asyncio.sleep(0)
            else:
                assert type(item) is Prepared
                try:
                    delivered = await self._deliver(run, transport, item)
                except asyncio.CancelledError:
                    # A hard stop: the request may be out. The state keeps it 'sending',
                    # which the next run reads as uncertain; the report says so now.
                    job.report.write(
                        line(
                            item.row,
                            item.recipient,
                            Status.UNCERTAIN,
                            error="interrupted while in flight",
                        ),
                        record=item.record,
                    )
                    raise
                except StateLost as lost:
                    # Nothing can be claimed, so nothing more is sent; this one never left.
                    run.abort(str(lost))
                    job.report.write(
                        line(
                            item.row,
                            item.recipient,
                            Status.UNSENT,
                            error="not sent: the state could not record its claim",
                        ),
                        record=item.record,
                    )
                    return
                if delivered is None:
                    run.unstarted.append(item)
                    return
                self._settle(run, item, *delivered)
            if run.stopping:
                return

    async def _deliver(
        self, run: JobRun, transport: Transport, item: Prepared
    ) -> tuple[Attempt, int] | None:
        """Send one recipient until it settles. Its claim is made after the pacer lets its
        first request go and committed before that request is written, so a recipient still
        waiting for the limiter when the run dies is never taken for one in flight."""
        job = run.job
        delivery = job.campaign.delivery
        request = item.request
        clock = self._clock
        attempts = 0
        limited = 0  # answers of 429 among the attempts
        refused_since: float | None = None  # when this recipient's first 429 came
        pacer = job.pacer
        report = job.report
        timed = job.deadline is not None or job.budget is not None
        attempt: Attempt | None = None  # the last one, when retrying
        while True:
            slot = pacer.try_acquire() or await pacer.acquire()
            # The report's rate is of releases: the pacer spaces those, while a request's own
            # start waits on its claim (a cold database's first commit would make a short run
            # look faster than its limit).
            released = slot.t
            if run.stopping or (timed and self._out_of_time(run)):
                pacer.never_sent(slot)  # stopped while waiting for the pacer: never left
                if attempts == 0:
                    return None  # never claimed: not reached, like the rows not yet read
                return Attempt(Kind.RETRY, error="the run stopped before it was sent"), attempts
            try:
                # A retry is claimed again: that commit proves the state still holds the
                # campaign (its lock and the bot's lease live on the state's connection), so a
                # process cut off from it never sends on while another takes over.
                await job.state.claim(item.recipient, item.row)
            except StateLost as lost:
                pacer.never_sent(slot)
                if attempt is None:
                    raise
                run.abort(str(lost))
                attempt.error = f"{attempt.error}; the state was lost before its retry"
                return attempt, attempts
            except BaseException:
                pacer.never_sent(slot)
                raise
            attempts += 1
            started = clock.monotonic()
            if run.first_start is None:
                run.first_start = started
            run.last_start = started
            try:
                attempt = await transport.send(request, functools.partial(pacer.sent, slot))
            finally:
                if not slot.sent:
                    pacer.never_sent(slot)
            attempt.latency_ms = round((clock.monotonic() - started) * 1000, 2)
            report.attempted(attempt.http_status, released, attempt.kind.value, pacer.rate)
            if attempt.http_status is not None:
                run.answered = True
            elif attempt.kind is Kind.RETRY and not run.answered:
                run.unreachable += 1
                if run.unreachable >= UNREACHABLE_AT_START:
                    run.abort(
                        f"the API cannot be reached ({job.masker(attempt.error or '')}); "
                        "nothing was delivered. Check bot.base_url and the network, then run "
                        "again: every recipient left unsent will be sent"
                    )
            far = attempt.retry_after is not None and attempt.retry_after > outcome.RETRY_AFTER_CAP
            if attempt.http_status == 429:
                limited += 1
                pacer.slow_down(None if far else attempt.retry_after)
                if refused_since is None:
                    refused_since = started
                elif started - refused_since >= delivery.rate_limited_for:
                    # An API that refuses forever (Retry-After 0, junk, a date past) costs a
                    # bounded time: everyone left is unsent, for a later run.
                    attempt.error = (
                        f"{attempt.error}; the API kept answering 429 for "
                        f"{started - refused_since:.0f} s (delivery.rate_limited_for)"
                    )
                    run.abort(
                        "the API kept refusing requests (429) for "
                        f"{delivery.rate_limited_for:g} s; the run stopped and nobody was "
                        "marked failed: run again later"
                    )
                    return attempt, attempts
            again = attempt.kind is Kind.RETRY or (
                attempt.kind is Kind.UNCERTAIN and delivery.retry_timeouts
            )
            spent = attempts - min(limited, MAX_RATE_LIMITED)
            if not again or spent > delivery.retries:
                if attempt.http_status == 429:  # still refused after every allowed try
                    run.abort(
                        f"the API kept refusing requests (429) after {attempts} attempts; the "
                        "run stopped and nobody was marked failed: run again later"
                    )
                return attempt, attempts
            if run.stopping:
                attempt.error = f"{attempt.error}; the run stopped before its retry"
                return attempt, attempts
            wait = attempt.retry_after
            if far:
                # The API will take no request for that long: stop, leave everyone unsent.
                attempt.error = (
                    f"{attempt.error}; the API asked to wait {wait:.0f} s (Retry-After), over "
                    f"the {outcome.RETRY_AFTER_CAP:.0f} s cap: left for a later run"
                )
                run.abort(
                    f"the API asked to wait {wait:.0f} s before any more requests; the run "
                    "stopped and nobody was marked failed: run again later"
                )
                return attempt, attempts
            if await run.wait(self._backoff(attempts, wait)):
                attempt.error = f"{attempt.error}; the run stopped before its retry"
                return attempt, attempts

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        # Exponential with "equal jitter": never less than half the step, never in lockstep.
        step = min(self._backoff_cap, self._backoff_base * 2 ** (attempts - 1))
        delay = step / 2 + self._random.uniform(0, step / 2)
        return float(max(delay, retry_after or 0.0))

    def _settle(self, run: JobRun, item: Prepared, attempt: Attempt, attempts: int) -> None:
        job = run.job
        status = outcome.FINAL[attempt.kind]
        # Masked first, then shortened: a cut must never leave part of a secret behind.
        error = job.masker(attempt.error) if attempt.error else None
        result = _shorten(job.masker(attempt.result)) if attempt.result else None
        job.state.record(item.recipient, status, attempts, attempt.http_status, result, error)
        job.report.write(
            line(
                item.row,
                item.recipient,
                status,
                http_status=attempt.http_status,
                attempts=attempts,
                result=result,
                error=error,
                latency_ms=attempt.latency_ms,
            ),
            record=item.record,
        )
        if attempt.kind is Kind.CAMPAIGN:
            run.abort(f"{error}. Nobody was marked failed for it: fix the campaign and run again")
        elif status is Status.SENT:
            run.consecutive_failures = 0
        else:
            run.consecutive_failures += 1
            limit = job.campaign.delivery.max_consecutive_failures
            if run.consecutive_failures >= limit:
                run.abort(
                    f"{limit} recipients in a row were not delivered "
                    "(delivery.max_consecutive_failures); the run stopped itself"
                )


def _shorten(text: str) -> str:
    return text if len(text) <= outcome.SHOWN else text[: outcome.SHOWN] + "…"


def _settled_earlier(job: Job, item: Item) -> bool:
    """Report and drop a recipient an earlier run settled; False when it is to be sent (or
    deferred)."""
    found = earlier(
        item,
        job.state,
        retry_failed=job.retry_failed,
        resend_uncertain=job.resend_uncertain,
    )
    if found is None:
        return False
    record = item.record if type(item) is Prepared else None
    job.report.write(found, record=record, this_run=False)
    return True
