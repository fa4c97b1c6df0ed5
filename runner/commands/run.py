"""`campaign run`: the broadcast. Loads every campaign, checks secrets, locks, then sends."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from runner import campaign as campaigns
from runner import htmlreport, pacing, pipeline, plandigest, repository, schedule, state
from runner.commands.plan import PlanResult, plan
from runner.engine import Engine, Job, JobRun
from runner.errors import CampaignError, InvalidCampaign, UsageError
from runner.mockserver import MockOptions, MockServer
from runner.model import Campaign, Endpoint, api_base
from runner.progress import Progress
from runner.report import ReportWriter, default_folder, run_id
from runner.schedule import Schedule
from runner.secrets import MASK, Masker
from runner.state import Location, RunState
from runner.status import NOT_DELIVERED_IN_STATE, Status

SANDBOX_TOKEN = "sandbox-token"
_LISTED = 10  # recipients not delivered listed after a run (`campaign status` lists all)
SANDBOX_NOTE = "Sandbox: requests went to a local mock server; nothing was sent for real."


@dataclass(frozen=True)
class RunOptions:
    report: Path | None = None
    state: str | None = None
    dry_run: bool = False
    sandbox: bool = False
    plan: Path | None = None
    retry_failed: bool = False
    resend_uncertain: bool = False
    quiet: bool = False
    outside_repo: bool = False  # the audience may lie outside the campaign's repository
    limit: int | None = None  # new recipients to send at most, then stop (a canary batch)
    wait: bool = False  # stay until deferred recipients' quiet hours end, and send them
    to: tuple[str, ...] = ()  # a test send to these audience members only


@dataclass
class CampaignResult:
    campaign: Campaign
    summary: dict[str, Any]
    not_delivered: list[dict[str, Any]] = field(default_factory=list)  # the first few
    not_delivered_count: int = 0


@dataclass
class RunResult:
    results: list[CampaignResult]
    exit_code: int
    sandbox: bool
    plans: list[PlanResult] = field(default_factory=list)


def run(targets: list[str], options: RunOptions) -> RunResult:
    paths = campaigns.expand(targets)
    loaded = _load_all(paths, options.outside_repo)
    if options.to and (len(loaded) != 1 or options.dry_run or options.plan or options.limit):
        raise UsageError(
            "--to sends a test of one campaign file, without --dry-run, --plan or --limit"
        )
    # What an earlier pass over a campaign's audience found of its invalid rows.
    counted: dict[str, pipeline.InvalidRows] = {}
    if options.plan is not None:
        if len(loaded) != 1:
            raise UsageError("--plan checks one campaign file at a time")
        c = loaded[0]
        # One pass renders the audience for the plan's digests and counts its invalid rows.
        invalid = pipeline.InvalidRows(c)
        masked = pipeline.endpoint(c, strict=False, token=MASK)
        plandigest.verify(options.plan, c, invalid.count(pipeline.prepare(c, masked)))
        counted[c.name] = invalid
    if options.dry_run:  # with --plan: "does the reviewed plan still match?", sending nothing
        plans = [
            plan(
                c.path,
                report_dir=_report_dir(options.report, c, len(loaded)),
                sandbox=options.sandbox,
                state=options.state,
                outside_repo=options.outside_repo,
            )
            for c in loaded
        ]
        return RunResult([], 0, options.sandbox, plans)
    if options.to:  # a test send is not the broadcast: no window, no quiet hours
        loaded = [dataclasses.replace(c, schedule=Schedule()) for c in loaded]
    # Every secret is resolved before anything starts: a missing one sends nothing.
    endpoints = None if options.sandbox else [pipeline.endpoint(c, strict=True) for c in loaded]
    while True:
        for c in loaded:  # outside the send window nothing is sent
            c.schedule.check_window(schedule.now())
        # Invalid rows are a decision, not a surprise: too many, and nothing is sent. (A test
        # send renders only the rows it names.)
        for c in loaded if not options.to else ():
            masked = pipeline.endpoint(c, strict=False, token=MASK)
            pipeline.check_invalid(c, masked, counted.pop(c.name, None))
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            result = runner.run(_run(loaded, endpoints, options))
        opens = _next_opening(result, loaded) if options.wait else None
        if opens is None:
            return result
        _wait_until(opens, result)


def _next_opening(result: RunResult, loaded: list[Campaign]) -> datetime | None:
    """When the first deferred recipient of a finished run may be sent, if within the window."""
    if result.exit_code not in (0, 1):
        return None
    found = [
        datetime.fromisoformat(r.summary["deferred_until"])
        for r in result.results
        if r.summary.get("deferred_until")
    ]
    if not found:
        return None
    opens = min(found)
    closes = [c.schedule.not_after for c in loaded if c.schedule.not_after is not None]
    if closes and opens >= min(closes):
        _say(
            f"the send window closes before {opens.isoformat()}: deferred recipients stay deferred"
        )
        return None
    return opens


def _wait_until(opens: datetime, result: RunResult) -> None:
    """Sleep until ``opens``, saying so (Ctrl-C ends the wait with exit 130)."""
    deferred = sum(r.summary["counts"]["deferred"] for r in result.results)
    _say(
        f"waiting until {opens.isoformat()} for {deferred} deferred recipient(s) "
        "(their quiet hours); Ctrl-C stops waiting"
    )
    while (left := (opens - schedule.now()).total_seconds()) > 0:
        schedule.sleep(min(left, 60.0))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it exists (not on Windows): the engine's own overhead drops by a tenth."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _load_all(paths: list[Path], outside_repo: bool) -> list[Campaign]:
    loaded, problems = [], []
    for path in paths:
        try:
            loaded.append(campaigns.load(path, outside_repo=outside_repo))
        except InvalidCampaign as exc:
            problems += exc.problems
    if problems:
        raise InvalidCampaign(problems)
    names = [c.name for c in loaded]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"campaign name {twice[0]!r} appears twice in one run; names must differ")
    return loaded


def _report_dir(given: Path | None, campaign: Campaign, count: int) -> Path | None:
    """Where --report puts this campaign's report (one folder per name when several run)."""
    if given is None:
        return None
    return given if count == 1 else given / campaign.name


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _run(
    loaded: list[Campaign], endpoints: list[Endpoint] | None, options: RunOptions
) -> RunResult:
    mock: MockServer | None = None
    if endpoints is None:
        mock = MockServer(
            MockOptions(rate=max(c.bot.rate_limit for c in loaded), keep_params=False)
        )
        base = await mock.start()
        if not options.quiet:
            _say(f"SANDBOX: sending to a local mock server at {base}; nothing is sent for real.")
        endpoints = [
            pipeline.endpoint(
                c,
                strict=False,
                token=SANDBOX_TOKEN,
                base_url=api_base(base, c.bot.api),
            )
            for c in loaded
        ]
    try:
        return await _broadcast(loaded, endpoints, options)
    finally:
        if mock is not None:
            await mock.stop()


async def _broadcast(
    loaded: list[Campaign], endpoints: list[Endpoint], options: RunOptions
) -> RunResult:
    rid = run_id()
    test = bool(options.to)
    locations = [state.locate(options.state, c.path, c.name, options.sandbox, test) for c in loaded]
    chosen = (
        [pipeline.select(c, e, options.to) for c, e in zip(loaded, endpoints, strict=True)]
        if test
        else None
    )
    secrets = [e.token for e in endpoints] + [p for p in (loc.password for loc in locations) if p]
    masker = Masker(secrets)
    bots = [(e.base_url, e.bot_id) for e in endpoints]
    pacers = pacing.shared([(bot, c.bot.rate_limit) for c, bot in zip(loaded, bots, strict=True)])
    states = _States()
    try:
        jobs = []
        for c, target, pacer, location in zip(loaded, endpoints, pacers, locations, strict=True):
            run_state = await states.open(location, c.name, rid, masker)
            _say(f"{c.name}: state {location}")
            if chosen is not None:
                stream: Iterator[pipeline.Item] = iter(chosen[0])
            else:
                items = pipeline.prepare(c, target)
                first = next(items, None)  # an unreadable audience fails here, before sending
                stream = items if first is None else itertools.chain([first], items)
            kind = "sandbox" if options.sandbox else "test" if test else "run"
            folder = _report_dir(options.report, c, len(loaded)) or default_folder(
                repository.root(c.path), c.name, kind
            )
            jobs.append(
                Job(
                    campaign=c,
                    items=stream,
                    report=ReportWriter(folder),
                    state=run_state,
                    pacer=pacer,
                    masker=masker,
                    retry_failed=options.retry_failed,
                    resend_uncertain=options.resend_uncertain,
                    limit=options.limit,
                    ignore_history=test,
                    deadline=c.schedule.not_after.timestamp() if c.schedule.not_after else None,
                )
            )
        await states.lease_bots(list(zip(locations, bots, strict=True)), _say)
        engine = Engine(jobs)
        started = time.monotonic()
        await _drive(engine, options.quiet)
        # What a stopped run left, read while the states are still open.
        rests = [
            _rest(run)
            if run.interrupted or run.aborted or run.limited or run.window_closed
            else None
            for run in engine.runs
        ]
    finally:
        await states.close()
    results = [
        await _finish(run, location, rid, time.monotonic() - started, options.sandbox, rest, test)
        for run, location, rest in zip(engine.runs, locations, rests, strict=True)
    ]
    return RunResult(results, _overall([r.summary["exit_code"] for r in results]), options.sandbox)


class _States:
    """The run states of one run, opened and closed together; one connection per database."""

    def __init__(self) -> None:
        self.opened: list[RunState] = []
        self._sessions: dict[str, Any] = {}

    async def open(self, location: Location, name: str, rid: str, masker: Masker) -> RunState:
        opened: RunState
        if location.url is None:
            from runner.state.sqlite import SqliteRunState

            assert location.path is not None
            opened = SqliteRunState(location.path, name, rid)
        else:
            from runner.state import postgres

            session = self._sessions.get(location.url)
            if session is None:
                session = await postgres.Session.connect(location, masker)
                self._sessions[location.url] = session
            opened = await session.open_run(name, rid)
        self.opened.append(opened)
        return opened

    async def lease_bots(
        self, bots: list[tuple[Location, tuple[str, str]]], say: Callable[[str], None]
    ) -> None:
        """Processes sharing a PostgreSQL state take turns with a bot (see postgres.py)."""
        for location, bot in dict.fromkeys(bots):
            session = self._sessions.get(location.url or "")
            if session is not None:
                await session.lease_bot(bot, say)

    async def close(self) -> None:
        for opened in self.opened:
            await opened.close()
        for session in self._sessions.values():
            await session.close()


async def _drive(engine: Engine, quiet: bool) -> None:
    """Run the engine with progress and signal handling (a second signal stops at once)."""
    loop = asyncio.get_running_loop()
    main = asyncio.ensure_future(engine.run())
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            _say(
                "\nstopping: no new requests; finishing those in flight "
                "(press Ctrl-C again to stop at once)"
            )
            engine.interrupt()
        else:
            main.cancel()

    # Signals reach only the main thread; embedded in another thread, the caller stops us.
    handle_signals = threading.current_thread() is threading.main_thread()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
    progress = asyncio.ensure_future(
        Progress(engine.runs, quiet=quiet).run() if not quiet else asyncio.sleep(0)
    )
    try:
        await main
    except asyncio.CancelledError:
        if signals < 2:
            raise
    finally:
        progress.cancel()
        await asyncio.gather(progress, return_exceptions=True)
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def _finish(
    run: JobRun,
    location: Location,
    rid: str,
    duration: float,
    sandbox: bool,
    rest: tuple[int, int] | None,
    test: bool = False,
) -> CampaignResult:
    job = run.job
    c = job.campaign
    remaining = None
    if rest is not None:
        rows, remaining = rest
        job.report.not_reached(rows)
    counts = job.report.tally.counts
    if run.interrupted:
        code = 130
    elif run.aborted:
        code = 3
    elif (
        counts.get(Status.FAILED)
        or counts.get(Status.UNCERTAIN)
        or counts.get(Status.UNSENT)
        or run.window_closed
    ):
        code = 1
    else:
        code = 0
    note = SANDBOX_NOTE if sandbox else None
    if test:
        members = sum(job.report.tally.counts.values())
        note = (
            f"TEST send to {members} audience member(s); recorded apart: nobody was marked "
            "delivered in the broadcast's state."
        )
    if run.aborted:
        note = f"Aborted: {run.aborted}"
    elif run.interrupted:
        note = "Interrupted: rows not reached were not sent; run again to continue."
    elif run.window_closed:
        note = f"The send window closed at {c.schedule.not_after}; rows not reached were not sent."
    elif run.limited:
        note = f"Limited to {job.limit} new recipients; {remaining} remain: run again to continue."
    summary = job.report.finish(
        {
            "campaign": c.name,
            "api": c.bot.api,
            **htmlreport.identity(c),
            "mode": "sandbox" if sandbox else "test" if test else "run",
            "sandbox": sandbox,
            "run_id": rid,
            "state": str(location),
            "duration_s": round(duration, 3),
            "rate_limit": c.bot.rate_limit,
            # The lowest rate the pacer went down to after 429s (None: it never had to).
            "rate_lowest": round(job.pacer.lowest, 1)
            if job.pacer.lowest < job.pacer.limit
            else None,
            "aborted": run.aborted,
            "interrupted": run.interrupted,
            "limit": job.limit,
            "remaining": remaining,
            "exit_code": code,
            "note": note,
        },
        title=f"{'Sandbox run' if sandbox else 'TEST send' if test else 'Run'}: {c.name}",
    )
    try:
        report = await state.read_status(location, c.name, limit=_LISTED)
    except CampaignError:  # the state went away: the report says what this run knows
        return CampaignResult(c, summary)
    counts = report["counts"]
    missing = sum(counts[s] for s in NOT_DELIVERED_IN_STATE)
    return CampaignResult(c, summary, report["not_delivered"], missing)


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
                job.state.prior(item.recipient),
                retry_failed=job.retry_failed,
                resend_uncertain=job.resend_uncertain,
            )
            is None
        ):
            remaining += 1
    return rows, remaining


def _overall(codes: list[int]) -> int:
    for code in (130, 3, 1):
        if code in codes:
            return code
    return 0


def text(result: RunResult) -> str:
    from runner.inert import terminal

    lines = []
    for r in result.results:
        s = r.summary
        n = s["counts"]
        rate = f", {s['requests_per_s']} requests/s" if s.get("requests_per_s") else ""
        lines.append(
            f"{r.campaign.name}: {n['sent']} sent, {n['failed']} failed, {n['unsent']} unsent, "
            f"{n['uncertain']} uncertain, {n['invalid']} invalid, {n['skipped']} skipped "
            f"in {s['duration_s']} s{rate}"
        )
        if s["skipped_by_reason"]:
            reasons = ", ".join(f"{v} {terminal(k)}" for k, v in s["skipped_by_reason"].items())
            lines.append(f"  skipped: {reasons}")
        for entry in r.not_delivered:
            detail = entry["result"] or entry["error"] or ""  # the API's own words first
            lines.append(
                f"  {entry['status']}: row {entry['row']} {terminal(str(entry['recipient']))} "
                f"{terminal(detail)}"
            )
        if r.not_delivered_count > len(r.not_delivered):
            more = r.not_delivered_count - len(r.not_delivered)
            lines.append(f"  ... {more} more: campaign status {r.campaign.path}")
        if s.get("limit") and s.get("remaining") is not None:
            lines.append(
                f"  limited to {s['limit']} new recipients: {s['remaining']} remain; "
                "run again to continue"
            )
        elif s.get("not_reached"):
            lines.append(f"  {s['not_reached']} rows not reached: run again to continue")
        if s.get("aborted"):
            lines.append(f"  ABORTED: {terminal(s['aborted'])}")
        if n["unsent"] and not s.get("aborted"):
            lines.append("  unsent recipients are sent by the next run")
        lines.append(f"  state: {s['state']}")
        lines.append(f"  report: {s['report']}")
    for r in result.results:
        if r.summary.get("mode") == "test":
            lines.append(f"TEST: {r.summary['note']}")
    if result.sandbox:
        lines.append(SANDBOX_NOTE)
    return "\n".join(lines)
