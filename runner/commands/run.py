"""`campaign run`: the broadcast. Loads every campaign, checks secrets, locks, then sends."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import campaign as campaigns
from runner import lock, pacing, pipeline, plandigest, state
from runner.commands.plan import PlanResult, plan
from runner.engine import Engine, Job
from runner.errors import InvalidCampaign, UsageError
from runner.mockserver import MockOptions, MockServer
from runner.model import Campaign, Endpoint, api_base
from runner.progress import Progress
from runner.report import ReportWriter, default_folder, run_id
from runner.secrets import Masker

SANDBOX_TOKEN = "sandbox-token"
_LISTED = 10  # recipients not delivered listed after a run (`campaign status` lists all)
SANDBOX_NOTE = "Sandbox: requests went to a local mock server; nothing was sent for real."


@dataclass
class RunOptions:
    report: Path | None = None
    state: Path | None = None
    dry_run: bool = False
    sandbox: bool = False
    plan: Path | None = None
    retry_failed: bool = False
    resend_uncertain: bool = False
    quiet: bool = False


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
    loaded = _load_all(paths)
    if options.plan is not None:
        if len(loaded) != 1:
            raise UsageError("--plan checks one campaign file at a time")
        plandigest.verify(options.plan, loaded[0])
    if options.dry_run:  # with --plan: "does the reviewed plan still match?", sending nothing
        plans = [
            plan(
                c.path,
                report_dir=_report_dir(options.report, c, len(loaded)),
                sandbox=options.sandbox,
            )
            for c in loaded
        ]
        return RunResult([], 0, options.sandbox, plans)
    # Every secret is resolved before anything starts: a missing one sends nothing.
    endpoints = None if options.sandbox else [pipeline.endpoint(c, strict=True) for c in loaded]
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_run(loaded, endpoints, options))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it exists (not on Windows): the engine's own overhead drops by a tenth."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _load_all(paths: list[Path]) -> list[Campaign]:
    loaded, problems = [], []
    for path in paths:
        try:
            loaded.append(campaigns.load(path))
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
            print(
                f"SANDBOX: sending to a local mock server at {base}; nothing is sent for real.",
                file=sys.stderr,
            )
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
        with ExitStack() as locks:
            return await _broadcast(loaded, endpoints, options, locks)
    finally:
        if mock is not None:
            await mock.stop()


async def _broadcast(
    loaded: list[Campaign], endpoints: list[Endpoint], options: RunOptions, locks: ExitStack
) -> RunResult:
    rid = run_id()
    masker = Masker(e.token for e in endpoints)
    pacers = pacing.shared(
        [((e.base_url, e.bot_id), c.bot.rate_limit) for c, e in zip(loaded, endpoints, strict=True)]
    )
    jobs: list[Job] = []
    kind = "sandbox" if options.sandbox else "run"
    for c, target, pacer in zip(loaded, endpoints, pacers, strict=True):
        state_path = state.path_for(options.state, c.name, options.sandbox)
        locks.enter_context(lock.campaign_lock(state_path, c.name))
        items = pipeline.prepare(c, target)
        first = next(items, None)  # an unreadable audience fails here, before any request
        stream = items if first is None else itertools.chain([first], items)
        jobs.append(
            Job(
                campaign=c,
                items=stream,
                report=ReportWriter(
                    _report_dir(options.report, c, len(loaded)) or default_folder(c.name, kind)
                ),
                state=state.CampaignState(state_path, c.name, rid),
                pacer=pacer,
                masker=masker,
                retry_failed=options.retry_failed,
                resend_uncertain=options.resend_uncertain,
            )
        )
    engine = Engine(jobs)
    started = time.monotonic()
    await _drive(engine, jobs, options.quiet)
    results = []
    for job in jobs:
        job.state.close()
        results.append(_finish(job, rid, time.monotonic() - started, options.sandbox))
    return RunResult(results, _overall([r.summary["exit_code"] for r in results]), options.sandbox)


async def _drive(engine: Engine, jobs: list[Job], quiet: bool) -> None:
    """Run the engine with progress and signal handling (a second signal stops at once)."""
    loop = asyncio.get_running_loop()
    main = asyncio.ensure_future(engine.run())
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            print(
                "\nstopping: no new requests; finishing those in flight "
                "(press Ctrl-C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            engine.interrupt()
        else:
            main.cancel()

    # Signals reach only the main thread; embedded in another thread, the caller stops us.
    handle_signals = threading.current_thread() is threading.main_thread()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
    progress = asyncio.ensure_future(Progress(jobs, quiet=quiet).run())
    try:
        await main
    except asyncio.CancelledError:
        if signals < 2:
            raise
        for job in jobs:
            job.interrupted = True
    finally:
        progress.cancel()
        await asyncio.gather(progress, return_exceptions=True)
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def _finish(job: Job, rid: str, duration: float, sandbox: bool) -> CampaignResult:
    c = job.campaign
    counts = job.report.tally.counts
    if job.interrupted:
        code = 130
    elif job.aborted:
        code = 3
    elif counts.get("failed") or counts.get("uncertain"):
        code = 1
    else:
        code = 0
    span = (job.last_start or 0) - (job.first_start or 0)
    requests = job.report.tally.requests
    note = SANDBOX_NOTE if sandbox else None
    if job.aborted:
        note = f"Aborted: {job.aborted}"
    elif job.interrupted:
        note = "Interrupted: rows not reached were not sent; run again to continue."
    summary = job.report.finish(
        {
            "campaign": c.name,
            "api": c.bot.api,
            "mode": "sandbox" if sandbox else "run",
            "sandbox": sandbox,
            "run_id": rid,
            "state": str(job.state.path),
            "duration_s": round(duration, 3),
            "requests_per_s": round(requests / span, 2) if span > 0 and requests > 1 else None,
            "rate_limit": c.bot.rate_limit,
            "aborted": job.aborted,
            "interrupted": job.interrupted,
            "exit_code": code,
            "note": note,
        },
        title=f"{'Sandbox run' if sandbox else 'Run'}: {c.name}",
    )
    report = state.status_report(job.state.path, c.name, limit=_LISTED)
    counts = report["counts"]
    missing = counts["failed"] + counts["uncertain"] + counts["sending"]
    return CampaignResult(c, summary, report["not_delivered"], missing)


def _overall(codes: list[int]) -> int:
    for code in (130, 3, 1):
        if code in codes:
            return code
    return 0


def text(result: RunResult) -> str:
    lines = []
    for r in result.results:
        s = r.summary
        n = s["counts"]
        rate = f", {s['requests_per_s']} requests/s" if s.get("requests_per_s") else ""
        lines.append(
            f"{r.campaign.name}: {n['sent']} sent, {n['failed']} failed, "
            f"{n['skipped']} skipped, {n['uncertain']} uncertain "
            f"in {s['duration_s']} s{rate}"
        )
        if s["skipped_by_reason"]:
            reasons = ", ".join(f"{v} {k}" for k, v in s["skipped_by_reason"].items())
            lines.append(f"  skipped: {reasons}")
        for entry in r.not_delivered:
            detail = entry["result"] or entry["error"] or ""  # the API's own words first
            lines.append(f"  {entry['status']}: row {entry['row']} {entry['recipient']} {detail}")
        if r.not_delivered_count > len(r.not_delivered):
            more = r.not_delivered_count - len(r.not_delivered)
            lines.append(f"  ... {more} more: campaign status {r.campaign.path}")
        if s.get("aborted"):
            lines.append(f"  ABORTED: {s['aborted']}")
        lines.append(f"  report: {s['report']}")
    if result.sandbox:
        lines.append(SANDBOX_NOTE)
    return "\n".join(lines)
