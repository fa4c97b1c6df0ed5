"""The asyncio broadcast engine: ``concurrency`` workers per campaign on one aiohttp session.

The workers share one generator over the prepared stream (the same one `plan` writes), which
reports skips and drops recipients an earlier run settled. Each worker claims a recipient in
the state, waits for the bot's pacer, sends, classifies, retries what surely did not arrive,
and records the outcome in the state and the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace

import aiohttp
from yarl import URL

from runner import outcome
from runner.model import Campaign
from runner.outcome import Attempt
from runner.pacing import Pacer
from runner.pipeline import Item, Prepared, Skipped
from runner.report import ReportWriter, line
from runner.secrets import Masker
from runner.state import CampaignState

_FINAL_STATUS = {
    outcome.SENT: "sent",
    outcome.FAILED: "failed",
    outcome.UNCERTAIN: "uncertain",
    outcome.FATAL: "failed",
    outcome.RETRY: "failed",  # retries ran out: the last outcome stands
}
_YIELD_EVERY = 256  # rows between yields to the loop while skipping without I/O
_PAUSE = object()
_CHUNK = 64  # rows prepared at a time


@dataclass
class Job:
    """One campaign of a run, and what happens to it."""

    campaign: Campaign
    items: Iterator[Item]
    report: ReportWriter
    state: CampaignState
    pacer: Pacer
    masker: Masker
    retry_failed: bool = False
    resend_uncertain: bool = False
    aborted: str | None = None  # why the run stopped itself (exit 3)
    interrupted: bool = False
    first_start: float | None = None
    last_start: float | None = None
    consecutive_failures: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def abort(self, reason: str) -> None:
        if self.aborted is None:
            self.aborted = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()


async def _headers_sent(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: object
) -> None:
    pacer, slot = context.trace_request_ctx
    pacer.sent(slot)


class Engine:
    def __init__(self, jobs: list[Job], *, backoff_base: float = 0.5, backoff_cap: float = 30.0):
        self.jobs = jobs
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._random = random.Random()

    def interrupt(self) -> None:
        """Ctrl-C / SIGTERM: start nothing new, let what is in flight finish."""
        for job in self.jobs:
            job.interrupted = True
            job._stop.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._run_job(job) for job in self.jobs))

    async def _run_job(self, job: Job) -> None:
        delivery = job.campaign.delivery
        timeout = aiohttp.ClientTimeout(
            total=None, connect=delivery.timeout, sock_read=delivery.timeout
        )
        connector = aiohttp.TCPConnector(limit=delivery.concurrency, limit_per_host=0)
        # The pacer learns when each request is really written (see pacing.py).
        traces = []
        if job.pacer.traced:
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_headers_sent)
            traces.append(trace)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, trace_configs=traces
        ) as session:
            # Workers pull from one shared generator, no queue between them: a stop leaves at
            # most one prepared chunk unsent, and nothing claimed that was not sent.
            source = self._to_send(job)
            workers = [
                asyncio.create_task(self._worker(job, source, session))
                for _ in range(delivery.concurrency)
            ]
            try:
                await asyncio.gather(*workers)
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    def _to_send(self, job: Job) -> Iterator[Prepared | object]:
        """The recipients to send, in order; skips are reported on the way.

        Yields `_PAUSE` after a long run of rows with nothing to send (a rerun skipping a
        million delivered rows), so the loop still serves signals and progress meanwhile.
        """
        write = job.report.write
        history = job.state.has_history
        rows = job.items
        idle = 0
        while True:
            # Rows are prepared a chunk at a time: reading and rendering in a tight loop is
            # markedly cheaper than one row between every two network events.
            chunk = list(itertools.islice(rows, _CHUNK))
            if not chunk:
                return
            for item in chunk:
                if isinstance(item, Skipped):
                    write(line(item.row, item.recipient, "skipped", reason=item.reason))
                elif not history or not self._settled_earlier(job, item):
                    idle = 0
                    yield item
                    continue
                idle += 1
                if idle >= _YIELD_EVERY:
                    idle = 0
                    yield _PAUSE

    @staticmethod
    def _settled_earlier(job: Job, item: Prepared) -> bool:
        prior = job.state.prior(item.recipient)
        if prior is None:
            return False
        write = job.report.write
        if prior.status == "sent":
            write(line(item.row, item.recipient, "skipped", reason="already sent"))
            return True
        if prior.status == "failed" and not job.retry_failed:
            reason = "failed in an earlier run; not retried (use --retry-failed)"
        elif prior.status == "uncertain" and not job.resend_uncertain:
            reason = "uncertain since an earlier run; not resent (use --resend-uncertain)"
        else:
            return False
        write(
            line(
                item.row,
                item.recipient,
                prior.status,
                reason=reason,
                http_status=prior.http_status,
                result=prior.result,
                error=prior.error,
            )
        )
        return True

    async def _worker(
        self, job: Job, source: Iterator[Prepared | object], session: aiohttp.ClientSession
    ) -> None:
        claim = job.state.claim
        for item in source:
            if item is _PAUSE:
                await asyncio.sleep(0)
            else:
                assert type(item) is Prepared
                await claim(item.recipient, item.row)
                try:
                    attempt, attempts = await self._deliver(job, session, item)
                except asyncio.CancelledError:
                    # A hard stop: the request may be out. The state keeps it 'sending',
                    # which the next run reads as uncertain; the report says so now.
                    job.report.write(
                        line(
                            item.row,
                            item.recipient,
                            "uncertain",
                            error="interrupted while in flight",
                        )
                    )
                    raise
                self._settle(job, item, attempt, attempts)
            if job.stopping:
                return

    async def _deliver(
        self, job: Job, session: aiohttp.ClientSession, item: Prepared
    ) -> tuple[Attempt, int]:
        delivery = job.campaign.delivery
        request = item.request
        url = URL(request.url, encoded=True)
        attempts = 0
        pacer = job.pacer
        while True:
            slot = pacer.try_acquire() or await pacer.acquire()
            attempts += 1
            started = time.monotonic()
            if job.first_start is None:
                job.first_start = started
            job.last_start = started
            try:
                async with session.request(
                    request.method,
                    url,
                    headers=request.headers,
                    data=request.body,
                    allow_redirects=False,
                    trace_request_ctx=(pacer, slot),
                ) as response:
                    body = await response.read()
                attempt = outcome.from_response(response.status, body, response.headers)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                attempt = outcome.from_exception(exc)
            finally:
                if not slot.sent:
                    pacer.never_sent(slot)
            attempt.latency_ms = round((time.monotonic() - started) * 1000, 2)
            again = attempt.kind == outcome.RETRY or (
                attempt.kind == outcome.UNCERTAIN and delivery.retry_timeouts
            )
            if not again or attempts > delivery.retries or job.stopping:
                return attempt, attempts
            await self._pause(job, self._backoff(attempts, attempt.retry_after))

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        # Exponential with "equal jitter": never less than half the step, never in lockstep.
        step = min(self._backoff_cap, self._backoff_base * 2 ** (attempts - 1))
        delay = step / 2 + self._random.uniform(0, step / 2)
        return float(max(delay, retry_after or 0.0))

    @staticmethod
    async def _pause(job: Job, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):  # woken early by a stop
            await asyncio.wait_for(job._stop.wait(), seconds)

    def _settle(self, job: Job, item: Prepared, attempt: Attempt, attempts: int) -> None:
        status = _FINAL_STATUS[attempt.kind]
        error = job.masker(attempt.error) if attempt.error else None
        result = job.masker(attempt.result) if attempt.result else attempt.result
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
            )
        )
        if attempt.kind == outcome.FATAL:
            job.abort(
                f"the API rejected the token (HTTP {attempt.http_status}); "
                "nothing more was sent. Check the token and run again."
            )
        elif status == "sent":
            job.consecutive_failures = 0
        else:
            job.consecutive_failures += 1
            limit = job.campaign.delivery.max_consecutive_failures
            if job.consecutive_failures >= limit:
                job.abort(
                    f"{limit} recipients in a row were not delivered "
                    "(delivery.max_consecutive_failures); the run stopped itself"
                )
