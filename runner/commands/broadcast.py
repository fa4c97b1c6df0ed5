"""One pass of `campaign run` over loaded campaigns: open their states, send, settle.

`runner.commands.run` decides what to run (files, `--due`, `--wait`, `--watch`); this module
runs it once: it locks each campaign in its state, checks that nobody paused it, holds the
bots' leases, drives the engine with progress, signals and a pause watch, and settles each
campaign's report and history entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from runner import (
    audience,
    history,
    hosts,
    htmlreport,
    lifecycle,
    pacing,
    pipeline,
    plandigest,
    repository,
    state,
)
from runner.apis import Request
from runner.engine import Engine, Job, JobRun, aiohttp_transport
from runner.errors import CampaignError, LockHeld, StateLost
from runner.mockserver import MockOptions, MockServer
from runner.model import Campaign, Endpoint, api_base
from runner.outcome import Attempt
from runner.progress import Progress
from runner.report import ReportWriter, default_folder, run_id
from runner.secrets import Masker
from runner.state import Location
from runner.state.core import CampaignRun, Stores, new_record, read_status
from runner.status import Status
from runner.tally import Summary
from runner.transport import Transport

if TYPE_CHECKING:
    from runner.commands.run import RunOptions

SANDBOX_TOKEN = "sandbox-token"
SANDBOX_NOTE = "Sandbox: requests went to a local mock server; nothing was sent for real."
LISTED = 10  # recipients not delivered listed after a run (`campaign status` lists all)
PAUSE_POLL = 1.0  # seconds between looks for a pause: a run stops within 2 s of one
PROGRESS_EVERY = 2  # polls between progress notes in the run's history entry
PROGRESS = (Status.SENT, Status.FAILED, Status.UNSENT, Status.UNCERTAIN, Status.DEFERRED)


@dataclass
class CampaignResult:
    campaign: Campaign
    summary: Summary
    not_delivered: list[dict[str, Any]] = field(default_factory=list)  # the first few
    not_delivered_count: int = 0


@dataclass
class Pass:
    """What one pass sent, and the campaigns it passed over (``run --due``: taken by
    another runner meanwhile)."""

    results: list[CampaignResult]
    passed_over: list[str] = field(default_factory=list)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def send(
    loaded: list[Campaign], endpoints: list[Endpoint] | None, options: RunOptions
) -> Pass:
    """Send ``loaded`` once; ``endpoints`` None: to an in-process mock server (sandbox)."""
    mock: MockServer | None = None
    if endpoints is None:
        mock = MockServer(
            MockOptions(rate=max(c.bot.rate_limit for c in loaded), keep_params=False)
        )
        base = await mock.start()
        if not options.quiet:
            say(f"SANDBOX: sending to a local mock server at {base}; nothing is sent for real.")
        endpoints = [
            pipeline.endpoint(
                c, strict=False, token=SANDBOX_TOKEN, base_url=api_base(base, c.bot.api)
            )
            for c in loaded
        ]
    try:
        return await _broadcast(loaded, endpoints, options)
    finally:
        if mock is not None:
            await mock.stop()


def mode_of(options: RunOptions) -> str:
    return "test" if options.to else "sandbox" if options.sandbox else "run"


async def _broadcast(
    loaded: list[Campaign], endpoints: list[Endpoint], options: RunOptions
) -> Pass:
    rid = run_id()
    mode = mode_of(options)
    test = mode == "test"
    locations = [state.locate(options.state, c.path, c.name, options.sandbox, test) for c in loaded]
    # A test send finds its members before anything is locked: an unknown one sends nothing.
    chosen = {
        c.name: pipeline.select(c, e, options.to)
        for c, e in zip(loaded, endpoints, strict=True)
        if test
    }
    masker = Masker([e.token for e in endpoints] + [p for loc in locations for p in loc.passwords])
    stores = Stores(masker)
    passed_over: list[str] = []
    started = time.monotonic()
    try:
        plans = []
        for c, target, location in zip(loaded, endpoints, locations, strict=True):
            store = await stores.get(location)
            if mode == "run":
                await lifecycle.refuse_if_stopped(store, c.name)
            # The inputs as this run starts to read them: a file edited during the run
            # (rows added) makes the campaign due again afterwards.
            facts = {
                **lifecycle.digests(c),
                "source": history.file_key(c),
                "recipient_key": pipeline.key_scheme(c),
            }
            record = replace(new_record(rid, mode), facts=facts)
            try:
                opened = await stores.open_run(location, c.name, record)
            except LockHeld as held:
                if not options.due:
                    raise
                passed_over.append(f"{c.name}: running elsewhere ({held}); passed over")
                continue
            say(f"{c.name}: state {location}")
            plans.append((c, target, location, opened))
        writers = [_writer(c, options, mode, len(loaded), rid) for c, *_ in plans]
        jobs = [
            _job(c, target, opened, writer, options, chosen.get(c.name), masker)
            for (c, target, _, opened), writer in zip(plans, writers, strict=True)
        ]
        pacers = pacing.shared(
            [(hosts.bot_identity(t.base_url, t.bot_id), c.bot.rate_limit) for c, t, _, _ in plans]
        )
        jobs = [replace(job, pacer=pacer) for job, pacer in zip(jobs, pacers, strict=True)]
        await stores.lease_bots(
            [
                (location, "\x00".join(hosts.bot_identity(t.base_url, t.bot_id)))
                for c, t, location, _ in plans
            ],
            say,
        )
        if options.max_duration is not None:
            budget = time.monotonic() + options.max_duration
            jobs = [replace(job, budget=budget) for job in jobs]
        sent: dict[str, list[dict[str, Any]]] = {c.name: [] for c, *_ in plans}

        def sampled(job: Job) -> Transport:
            return _Sampling(aiohttp_transport(job), sent[job.campaign.name], masker)

        engine = Engine(jobs, transport=sampled)
        opened_runs = [opened for *_, opened in plans]
        # Waiting for a bot's lease can take as long as another process sends with it: a
        # pause or cancel given meanwhile holds before the first request, not a poll later.
        for run, campaign_run in zip(engine.runs, opened_runs, strict=True):
            await _honour_control(run, campaign_run)
        await _drive(engine, opened_runs, options.quiet)
        results = []
        for run, writer, (c, target, location, opened) in zip(
            engine.runs, writers, plans, strict=True
        ):
            shown: Summary = {
                "api_host": masker(target.base_url),
                "samples": sent[c.name],
                "sandbox": options.sandbox,  # a test send rehearsed too
            }
            elapsed = time.monotonic() - started
            results.append(await _settle(run, writer, opened, location, rid, elapsed, mode, shown))
    finally:
        await stores.close()
    return Pass(results, passed_over)


def _writer(c: Campaign, options: RunOptions, mode: str, count: int, rid: str) -> ReportWriter:
    given = options.report if count == 1 or options.report is None else options.report / c.name
    kind = "sandbox-test" if mode == "test" and options.sandbox else mode
    folder = given or default_folder(repository.root(c.path), c.name, kind, rid)
    return ReportWriter(folder, audience.header(c.audience))


def _job(
    c: Campaign,
    target: Endpoint,
    opened: CampaignRun,
    writer: ReportWriter,
    options: RunOptions,
    members: list[pipeline.Prepared] | None,
    masker: Masker,
) -> Job:
    if members is not None:  # a test send: only those
        stream: Iterator[pipeline.Item] = iter(members)
    else:
        if options.plan is not None:
            # Each row is checked against the reviewed plan again as it is sent: an audience
            # edited after the check (or during the run) sends nothing the plan does not hold.
            gate = plandigest.Gate(options.plan)
            reviewed = pipeline.reviewed_endpoint(c)
            items = gate.check(pipeline.prepare(c, target, reviewed=reviewed))
        else:
            items = pipeline.prepare(c, target)
        first = next(items, None)  # an unreadable audience fails here, before sending
        stream = items if first is None else itertools.chain([first], items)
    return Job(
        campaign=c,
        items=stream,
        report=writer,
        state=opened,
        pacer=pacing.Pacer(1),  # replaced by the bot's shared pacer
        masker=masker,
        retry_failed=options.retry_failed,
        resend_uncertain=options.resend_uncertain,
        limit=options.limit,
        ignore_history=members is not None,
        deadline=c.schedule.not_after.timestamp() if c.schedule.not_after else None,
    )


async def _watch(engine: Engine, opened: list[CampaignRun], done: asyncio.Event) -> None:
    """Stop a campaign's run within `PAUSE_POLL` of someone pausing it, anywhere; and say
    how far each run has come, every `PROGRESS_EVERY` polls, for `status` elsewhere."""
    for turn in itertools.count():
        if all(run.stopping for run in engine.runs) or done.is_set():
            return  # nothing left to watch (and never wait on a cancellation alone)
        for run, campaign_run in zip(engine.runs, opened, strict=True):
            if run.stopping:
                continue
            with contextlib.suppress(StateLost, TimeoutError, CampaignError):
                if await _honour_control(run, campaign_run):
                    continue
                if turn % PROGRESS_EVERY == 0:
                    counts = run.job.report.tally.counts
                    await campaign_run.progress(
                        progress={str(s): counts.get(s, 0) for s in PROGRESS}
                    )
        await asyncio.sleep(PAUSE_POLL)


async def _honour_control(run: JobRun, campaign_run: CampaignRun) -> bool:
    """Stop ``run`` when someone paused or cancelled its campaign; whether they did."""
    control = await campaign_run.control()
    if control is None:
        return False
    words = lifecycle.stopped_words(campaign_run.campaign, control)
    run.pause(words, final=control.action == "cancelled")
    return True


async def _drive(engine: Engine, opened: list[CampaignRun], quiet: bool) -> None:
    """Run the engine with progress, a pause watch and signal handling (a second signal
    stops at once)."""
    loop = asyncio.get_running_loop()
    main = asyncio.ensure_future(engine.run())
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            say(
                "\nstopping: no new requests; finishing those in flight "
                "(press Ctrl-C again to stop at once)"
            )
            engine.interrupt()
        else:
            main.cancel()

    # Signals reach only the main thread; embedded in another thread, the caller stops us.
    handle_signals = threading.current_thread() is threading.main_thread()
    # Given back after the run: a wait (--wait) or a worker's sleep (--watch) must still end
    # with 130 on SIGTERM, not die of it.
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if handle_signals:
        for sig in before:
            loop.add_signal_handler(sig, on_signal)
    finished = asyncio.Event()
    helpers = [
        asyncio.ensure_future(_watch(engine, opened, finished)),
        asyncio.ensure_future(
            Progress(engine.runs, quiet=quiet).run() if not quiet else asyncio.sleep(0)
        ),
    ]
    try:
        await main
    except asyncio.CancelledError:
        if signals < 2:
            raise
    finally:
        finished.set()
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if handle_signals:
            for sig, handler in before.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)


class _Sampling:
    """A transport that keeps the first few requests it sends, masked, for the report."""

    KEPT = 3

    def __init__(self, inner: Transport, kept: list[dict[str, Any]], masker: Masker) -> None:
        self._inner = inner
        self._kept = kept
        self._masker = masker

    async def send(self, request: Request, written: Callable[[], None]) -> Attempt:
        shown = request.for_report()
        shown["url"] = self._masker(shown["url"])
        self._kept.append({"row": None, "request": shown})
        if len(self._kept) >= self.KEPT:  # enough: later requests go straight through
            self.send = self._inner.send  # type: ignore[method-assign]
        return await self._inner.send(request, written)

    async def close(self) -> None:
        await self._inner.close()


def exit_code(run: JobRun, counts: dict[str, int]) -> int:
    """A campaign's exit code, from what its run went through and counted."""
    if run.interrupted:
        return 130
    if run.aborted:
        return 3
    if (
        counts.get(Status.FAILED)
        or counts.get(Status.UNCERTAIN)
        or counts.get(Status.UNSENT)
        or run.window_closed
    ):
        return 1
    return 0


def _titled(mode: str, sandbox: bool) -> str:
    if mode == "test":
        return "Sandbox TEST send" if sandbox else "TEST send"
    return "Sandbox run" if mode == "sandbox" else "Run"


def _note(run: JobRun, mode: str, remaining: int | None) -> str | None:
    job = run.job
    c = job.campaign
    if run.aborted:
        return f"Aborted: {run.aborted}"
    if run.interrupted:
        return "Interrupted: rows not reached were not sent; run again to continue."
    if run.window_closed:
        return f"The send window closed at {c.schedule.not_after}; rows not reached were not sent."
    if run.limited:
        return f"Limited to {job.limit} new recipients; {remaining} remain: run again to continue."
    if run.budget_spent:
        return (
            f"The time budget (--max-duration) ran out; {remaining} remain: the next "
            "`campaign run --due` continues."
        )
    if mode == "test":
        members = sum(job.report.tally.counts.values())
        return (
            f"TEST send to {members} audience member(s); recorded apart: nobody was marked "
            "delivered in the broadcast's state."
        )
    return SANDBOX_NOTE if mode == "sandbox" else None


async def _settle(
    run: JobRun,
    writer: ReportWriter,
    opened: CampaignRun,
    location: Location,
    rid: str,
    duration: float,
    mode: str,
    shown: Summary,
) -> CampaignResult:
    """Count what a stopped run left, settle its history entry, then write its report."""
    job = run.job
    c = job.campaign
    remaining = None
    stopped = run.interrupted or run.aborted or run.limited or run.window_closed
    if stopped or run.budget_spent:
        rows, remaining = _rest(run)
        writer.not_reached(rows)
    tally = writer.tally
    counts = dict(tally.counts)
    code = exit_code(run, counts)
    await opened.close(
        exit_code=code,
        counts={str(k): v for k, v in counts.items()},
        remaining=remaining or 0,
        deferred=counts.get(Status.DEFERRED, 0),
        next_due=tally.deferred_until,
    )
    unrecorded = {o.recipient for o in opened.unrecorded if o.status is Status.SENT}
    summary = writer.finish(
        {
            "campaign": c.name,
            "api": c.bot.api,
            **htmlreport.identity(c),
            "mode": mode,
            "sandbox": mode == "sandbox",
            "run_id": rid,
            "state": str(location),
            "duration_s": round(duration, 3),
            "rate_limit": c.bot.rate_limit,
            # The lowest rate the pacer went down to after 429s (None: it never had to).
            "rate_lowest": round(job.pacer.lowest, 1)
            if job.pacer.lowest < job.pacer.limit
            else None,
            "aborted": run.aborted,
            "paused": run.paused,
            "cancelled": run.cancelled,
            "window_closed": run.window_closed,
            "interrupted": run.interrupted,
            "limit": job.limit,
            "budget_spent": run.budget_spent,
            "remaining": remaining,
            "unrecorded_sent": len(unrecorded),
            "exit_code": code,
            "note": _note(run, mode, remaining),
            **shown,  # where the requests went, and the first of them decoded
        },
        title=f"{_titled(mode, shown.get('sandbox', False))}: {c.name}",
    )
    try:
        report = await read_status(location, c.name, limit=LISTED)
    except CampaignError:  # the state went away: the report says what this run knows
        return CampaignResult(c, summary)
    # Delivered, as this run knows: not among those not delivered, whatever the state says.
    missing = [e for e in report["not_delivered"] if e["recipient"] not in unrecorded]
    count = max(0, report["not_delivered_count"] - len(unrecorded))
    return CampaignResult(c, summary, missing, count)


def _rest(run: JobRun) -> tuple[int, int]:
    """(rows a stopped run never reached, recipients among them a run would still send)."""
    job = run.job
    rows = remaining = 0
    for item in run.rest():
        rows += 1
        if isinstance(item, pipeline.Prepared) and (
            job.ignore_history
            or pipeline.earlier(
                item,
                job.state,
                retry_failed=job.retry_failed,
                resend_uncertain=job.resend_uncertain,
            )
            is None
        ):
            remaining += 1
    return rows, remaining
