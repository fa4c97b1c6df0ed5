"""`campaign run`: the broadcast. Loads every campaign, checks secrets, then sends.

What to send is decided here: the files given, only the due ones (``--due``), again when
deferred recipients open (``--wait``), or forever as a worker (``--watch``). One pass of
sending is `runner.commands.broadcast`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from runner import campaign as campaigns
from runner import history, lifecycle, pipeline, plandigest, schedule, state
from runner.commands.broadcast import SANDBOX_NOTE, CampaignResult, Pass, say, send
from runner.commands.plan import PlanResult, plan
from runner.errors import (
    CampaignError,
    InvalidCampaign,
    RunAborted,
    UsageError,
)
from runner.model import Campaign
from runner.schedule import Schedule
from runner.secrets import MASK, Masker
from runner.state.core import open_store, read_priors

if TYPE_CHECKING:
    from runner.commands.watch import Looks


class PausedWhileWaiting(RunAborted):
    """Someone paused or cancelled a campaign while `run --wait` waited for it (exit 3)."""


class Interrupted(CampaignError):
    """Ctrl-C or SIGTERM while a command waited, with what it leaves (exit 130)."""

    exit_code = 130


class HistoryElsewhere(CampaignError):
    """The chosen state has no history of a campaign that another state of this repository
    has: running would send its people again."""


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
    due: bool = False  # only the campaigns with something due now
    max_duration: float | None = None  # seconds: start no request after them (exit 0)
    watch: bool = False  # a worker: run what is due until SIGTERM/SIGINT
    every: float = 60.0  # seconds between a worker's looks at least
    fresh_state: bool = False  # start in a state with no history though another has it


@dataclass
class RunResult:
    results: list[CampaignResult]
    exit_code: int
    sandbox: bool
    plans: list[PlanResult] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # one per campaign `--due` passed over
    next_due: float | None = None  # epoch seconds: when a passed-over campaign is due next
    waits: bool = False  # a pass of `--wait`, which stays to send the deferred itself


def run(
    targets: list[str],
    options: RunOptions,
    on_pass: Callable[[RunResult], None] | None = None,
    looks: Looks | None = None,
) -> RunResult:
    """Run ``targets`` as ``options`` say; ``looks`` is a worker's memory of its earlier
    looks, for a sweep (`runner.commands.watch`)."""
    if options.watch:
        from runner.commands.watch import watch  # a worker is passes of this function

        return watch(targets, options, on_pass or (lambda _: None))
    paths = campaigns.expand(targets)
    broken: list[str] = []  # --due: campaigns that cannot run, each said; the rest still run
    if options.due:
        loaded, broken = _load_each(paths, options.outside_repo)
    else:
        loaded = _load_all(paths, options.outside_repo)
    if options.to and (
        len(loaded) != 1 or options.dry_run or options.plan or options.limit or options.due
    ):
        raise UsageError(
            "--to sends a test of one campaign file, without --dry-run, --plan, --limit or --due"
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
        rendered = pipeline.prepare(c, masked, reviewed=pipeline.reviewed_endpoint(c))
        plandigest.verify(options.plan, c, invalid.count(rendered))
        say(f"{c.name}: the reviewed plan {options.plan} matches the campaign and its audience")
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
        # ... but a cancelled campaign is over, for a test too (a pause is not: testing a fix
        # is what a paused campaign is for).
        words = asyncio.run(_stopped(loaded, options.state, only="cancelled"))
        if words is not None:
            raise lifecycle.CampaignStopped(f"{words}. Nothing was sent")
    lines: list[str] = []
    next_due = None
    if options.due:
        loaded, lines, held, next_due = _run_due(loaded, options)
        loaded, cannot = _prechecked(loaded, options, counted, looks)
        broken += held + cannot
        tell = say if looks is None else looks.say
        for line in lines + broken:
            tell(line)
        if not loaded:
            code = 2 if broken else 0
            return RunResult([], code, options.sandbox, lines=lines + broken, next_due=next_due)
    # Every secret is resolved before anything starts: a missing one sends nothing.
    endpoints = None if options.sandbox else [pipeline.endpoint(c, strict=True) for c in loaded]
    if not options.due:  # a sweep checked each campaign on its own (`_prechecked`)
        if not (options.sandbox or options.to or options.fresh_state):
            asyncio.run(_refuse_history_elsewhere(loaded, options.state))
        if not options.to:
            asyncio.run(_refuse_identifiers_lost(loaded, options))
    sent_so_far = 0
    passes = 0
    while True:
        passes += 1
        for c in loaded:  # outside the send window nothing is sent
            c.schedule.check_window(schedule.now())
        # Invalid rows are a decision, not a surprise: too many, and nothing is sent. (A test
        # send renders only the rows it names.)
        for c in loaded if not options.to else ():
            masked = pipeline.endpoint(c, strict=False, token=MASK)
            rows = pipeline.check_invalid(c, masked, counted.pop(c.name, None))
            if options.max_duration is not None and not options.quiet:
                left = None if options.limit is None else options.limit - sent_so_far
                _say_runs_needed(c, rows.prepared, dataclasses.replace(options, limit=left))
        # `--limit N` counts every wake-up of `--wait`: N in all.
        # Each wake-up of `--wait` is a run of its own with a report of its own: one written
        # over another would show those the first sent as "skipped: already sent".
        this = dataclasses.replace(
            options,
            limit=None if options.limit is None else options.limit - sent_so_far,
            report=(
                options.report / f"pass-{passes}"
                if options.report is not None and passes > 1
                else options.report
            ),
        )
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            done = runner.run(send(loaded, endpoints, this))
        result = _result(done, options.sandbox, lines + broken, next_due)
        if broken and result.exit_code in (0, 1):
            result.exit_code = 2  # the sweep ran the rest; the broken ones need a person
        sent_so_far += sum(r.summary["counts"]["sent"] for r in result.results)
        opens = _next_opening(result, loaded) if options.wait else None
        if opens is None or (options.limit is not None and sent_so_far >= options.limit):
            return result
        if on_pass is not None:
            on_pass(dataclasses.replace(result, waits=True))  # said first: it may be hours
        _wait_until(opens, result, loaded, options.state)


def _load_each(paths: list[Path], outside_repo: bool) -> tuple[list[Campaign], list[str]]:
    """For a sweep: every campaign that loads, and a line for each that does not (or whose
    name another file also takes), so that one broken file never holds the others back."""
    loaded: list[Campaign] = []
    broken: list[str] = []
    for path in paths:
        try:
            loaded.append(campaigns.load(path, outside_repo=outside_repo))
        except InvalidCampaign as exc:
            first = str(exc.problems[0]) if exc.problems else str(exc)
            more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
            broken.append(f"{path}: invalid, passed over: {first}{more}; see campaign validate")
    names = [c.name for c in loaded]
    twice = {n for n in names if names.count(n) > 1}
    for c in loaded:
        if c.name in twice:
            broken.append(
                f"{c.path}: the name {c.name!r} is taken by another file too; passed over"
            )
    return [c for c in loaded if c.name not in twice], broken


def _prechecked(
    loaded: list[Campaign],
    options: RunOptions,
    counted: dict[str, pipeline.InvalidRows],
    looks: Looks | None,
) -> tuple[list[Campaign], list[str]]:
    """For a sweep: the due campaigns that can start, each checked on its own (secrets, the
    history elsewhere, the window, invalid rows), and a line for each that cannot."""
    ready: list[Campaign] = []
    cannot: list[str] = []
    for c in loaded:
        try:
            if not options.sandbox:
                pipeline.endpoint(c, strict=True)
            if not (options.sandbox or options.fresh_state):
                asyncio.run(_refuse_history_elsewhere([c], options.state))
            asyncio.run(_refuse_identifiers_lost([c], options))
            c.schedule.check_window(schedule.now())
            masked = pipeline.endpoint(c, strict=False, token=MASK)
            if looks is None:
                counted[c.name] = pipeline.check_invalid(c, masked)
            else:
                counted[c.name] = looks.check_invalid(c, masked)
        except CampaignError as exc:
            cannot.append(f"{c.name}: passed over: {exc}")
            continue
        ready.append(c)
    return ready, cannot


def _result(done: Pass, sandbox: bool, lines: list[str], next_due: float | None) -> RunResult:
    codes = [r.summary["exit_code"] for r in done.results]
    return RunResult(
        done.results, _overall(codes), sandbox, lines=lines + done.passed_over, next_due=next_due
    )


def _say_runs_needed(c: Campaign, prepared: int, options: RunOptions) -> None:
    """Before sending: how many runs what is left of an audience takes at the bot's rate
    within the time budget."""
    assert options.max_duration is not None
    budget = options.max_duration
    per_run = int(c.bot.rate_limit * 0.98 * budget)
    most = options.limit if options.limit is not None else prepared  # --limit: no more
    if min(prepared, most) <= per_run:
        return  # it fits even before counting those earlier runs settled
    left = min(_still_to_send(c, options), most)
    if left > per_run:
        say(
            f"{c.name}: {left:,} still to send at {c.bot.rate_limit}/s do not fit in "
            f"--max-duration {_span(budget)} (about {per_run:,} a run): about "
            f"{math.ceil(left / max(per_run, 1))} runs; each `campaign run --due` continues"
        )


def _still_to_send(c: Campaign, options: RunOptions) -> int:
    """The rows of ``c`` that make a request and that no earlier run settled (as `run`
    judges them: `pipeline.earlier`)."""
    location = state.locate(options.state, c.path, c.name, options.sandbox)
    priors = read_priors(location, c.name)
    try:
        masked = pipeline.endpoint(c, strict=False, token=MASK)
        return sum(
            1
            for item in pipeline.prepare(c, masked)
            if type(item) is pipeline.Prepared
            and pipeline.earlier(
                item,
                priors,
                retry_failed=options.retry_failed,
                resend_uncertain=options.resend_uncertain,
            )
            is None
        )
    finally:
        priors.close()


def _span(seconds: float) -> str:
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"


MAX_DURATION = 30 * 86400.0  # seconds: past this a duration is a typo, not a plan


def parse_duration(text: str) -> float:
    """``5h30m``, ``90m``, ``45s``, ``1h`` or plain seconds, as seconds."""
    import re

    found = re.fullmatch(
        r"\s*(?:([0-9]+)h)?\s*(?:([0-9]+)m)?\s*(?:([0-9]+(?:\.[0-9]+)?)s?)?\s*", text
    )
    if not text.strip() or found is None or not any(found.groups()):
        raise UsageError(f"{text!r}: a duration is written like 5h30m, 90m, 45s or 3600")
    h, m, s = found.groups()
    seconds = int(h or 0) * 3600 + int(m or 0) * 60 + float(s or 0)
    if seconds <= 0:
        raise UsageError(f"{text!r}: a duration must be longer than nothing")
    if seconds > MAX_DURATION:
        raise UsageError(f"{text!r}: a duration is at most {MAX_DURATION // 86400:.0f} days")
    return seconds


def _run_due(
    loaded: list[Campaign], options: RunOptions
) -> tuple[list[Campaign], list[str], list[str], float | None]:
    """The campaigns with something due now; a line for each of the others (apart, those
    that wait for a person: their history is elsewhere), and when the first is due next."""
    standings = asyncio.run(_standings(loaded, options.state, options.sandbox))
    due = [c for c, s in zip(loaded, standings, strict=True) if s.runs_now]
    upcoming = [s.next_due for s in standings if not s.runs_now and s.next_due is not None]
    # Without a run's progress: a worker says a line once while it stays the same.
    lines, held = [], []
    for s in standings:
        if s.state == "elsewhere":  # cannot run until a person moves it: the sweep exits 2
            held.append(f"{s.campaign}: {s.why}; passed over")
        elif not s.runs_now:
            lines.append(f"{s.campaign}: {s.why}")
    return due, lines, held, min(upcoming) if upcoming else None


async def _standings(
    loaded: list[Campaign], given: str | None, sandbox: bool
) -> list[lifecycle.Standing]:
    found = []
    for c in loaded:
        location = state.locate(given, c.path, c.name, sandbox)
        store = await open_store(location, Masker(location.passwords), readonly=True)
        try:
            standing = await lifecycle.standing(store, c)
        finally:
            await store.close()
        found.append(standing if sandbox else await history.seen_from(standing, c, given))
    return found


async def _refuse_identifiers_lost(loaded: list[Campaign], options: RunOptions) -> None:
    for c in loaded:
        refusal = await history.identifiers_lost(c, options.state, options.sandbox)
        if refusal is not None:
            raise CampaignError(refusal)


async def _refuse_history_elsewhere(loaded: list[Campaign], given: str | None) -> None:
    """A campaign whose chosen state knows nothing of it, while another state this
    repository uses holds its history (or a pause), would send its people again: refuse."""
    for c in loaded:
        refusal = await history.history_elsewhere(c, given)
        if refusal is not None:
            raise HistoryElsewhere(refusal)


def _next_opening(result: RunResult, loaded: list[Campaign]) -> datetime | None:
    """When the first deferred recipient of a finished run may be sent, if within the window."""
    if result.exit_code not in (0, 1):
        return None
    found = [
        datetime.fromisoformat(until)
        for r in result.results
        if (until := r.summary.get("deferred_until"))
    ]
    if not found:
        return None
    opens = min(found)
    closes = [c.schedule.not_after for c in loaded if c.schedule.not_after is not None]
    if closes and opens >= min(closes):
        say(f"the send window closes before {opens.isoformat()}: deferred recipients stay deferred")
        return None
    return opens


WAIT_POLL = 2.0  # seconds between looks for a pause while --wait waits


async def _stopped(
    loaded: list[Campaign], given: str | None, only: str | None = None
) -> str | None:
    """The words of a pause or cancel (``only`` one of them) on any of ``loaded``, if one
    came."""
    for c in loaded:
        location = state.locate(given, c.path, c.name, False)
        try:
            store = await open_store(location, Masker(location.passwords))
        except CampaignError:
            continue  # the run itself will say what is wrong with its state
        try:
            control = await store.control(c.name)
        finally:
            await store.close()
        if control is not None and only in (None, control.action):
            return lifecycle.stopped_words(c.name, control)
    return None


def _wait_until(
    opens: datetime, result: RunResult, loaded: list[Campaign], given: str | None
) -> None:
    """Sleep until ``opens``, saying who opens when (Ctrl-C or SIGTERM ends the wait with
    exit 130, saying who is still deferred)."""
    deferred = sum(r.summary["counts"]["deferred"] for r in result.results)
    by_opening = [
        f"{n} {reason}"
        for r in result.results
        for reason, n in (r.summary.get("deferred_by_reason") or {}).items()
    ]
    try:
        say(
            f"waiting until {opens.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, when the first of "
            f"{deferred} deferred recipient{'s' if deferred != 1 else ''} open "
            f"({'; '.join(by_opening)}); Ctrl-C stops waiting"
        )
        while (left := (opens - schedule.now()).total_seconds()) > 0:
            schedule.sleep(min(left, WAIT_POLL))
            stopped = asyncio.run(_stopped(loaded, given))
            if stopped is not None:  # a pause reaches a waiting run as it does a sending one
                raise PausedWhileWaiting(
                    f"{stopped}; stopped waiting: {deferred} deferred recipient"
                    f"{'s' if deferred != 1 else ''} not sent"
                )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while waiting: {deferred} deferred recipient"
            f"{'s' if deferred != 1 else ''} not sent ({'; '.join(by_opening)}); "
            "`campaign run --due` (or a sweep) sends them when they open"
        ) from None


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


def _overall(codes: list[int]) -> int:
    for code in (130, 3, 1):
        if code in codes:
            return code
    return 0


IN_FLIGHT_NOW = "in flight when this run stopped; its outcome is unknown"


def text(result: RunResult) -> str:
    from runner.inert import terminal

    lines = []
    for r in result.results:
        s = r.summary
        n = s["counts"]
        rate = f", {s['requests_per_s']} requests/s" if s.get("requests_per_s") else ""
        deferred = f", {n['deferred']} deferred" if n["deferred"] else ""
        lines.append(
            f"{r.campaign.name}: {n['sent']} sent, {n['failed']} failed, {n['unsent']} unsent, "
            f"{n['uncertain']} uncertain, {n['invalid']} invalid, {n['skipped']} skipped"
            f"{deferred} in {s['duration_s']} s{rate}"
        )
        if s["skipped_by_reason"]:
            reasons = ", ".join(f"{v} {terminal(k)}" for k, v in s["skipped_by_reason"].items())
            lines.append(f"  skipped: {reasons}")
        for entry in r.not_delivered:
            detail = entry["result"] or entry["error"] or ""  # the API's own words first
            status = entry["status"]
            if status == "sending":  # this run is over: in flight when it stopped, so unknown
                status, detail = "uncertain", IN_FLIGHT_NOW
            lines.append(
                f"  {status}: row {entry['row']} {terminal(str(entry['recipient']))} "
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
        elif s.get("budget_spent"):
            lines.append(
                f"  the time budget ran out: {s['remaining']} remain; the next "
                f"`campaign run --due {r.campaign.path}` continues"
            )
        elif s.get("not_reached"):
            if s.get("cancelled"):
                then = "the campaign is cancelled, so they are never sent"
            elif s.get("window_closed"):
                then = "the send window has closed, so they are not sent"
            elif s.get("paused"):
                then = "`campaign resume`, then run again to continue"
            else:
                then = "run again to continue"
            lines.append(f"  {s['not_reached']} rows not reached: {then}")
        if n["deferred"] and s.get("deferred_until"):
            then = (
                "this command waits and sends them then"
                if result.waits
                else f"`campaign run --due {r.campaign.path}` sends them then (a sweep or a "
                "--watch worker does it for you)"
            )
            lines.append(
                f"  {n['deferred']} deferred (their quiet hours): the first open at "
                f"{s['deferred_until']}; {then}"
            )
        if s.get("unrecorded_sent"):
            lines.append(
                f"  {s['unrecorded_sent']} delivered by this run could not be recorded (the "
                "state was lost): the state shows them in flight and a later run reports them "
                "uncertain, but this report has them sent: never resend them with "
                "--resend-uncertain"
            )
        if n["uncertain"]:
            lines.append(
                f"  {n['uncertain']} uncertain: the API may have acted. `campaign run "
                f"{r.campaign.path} --resend-uncertain` sends them again, and those it did reach "
                "get the message twice"
            )
        aborted = s.get("aborted")
        if aborted:
            lines.append(f"  ABORTED: {terminal(aborted)}")
        if n["unsent"] and not s.get("aborted"):
            lines.append("  unsent recipients are sent by the next run")
        lines.append(f"  state: {s['state']}")
        lines.append(f"  report: {s['report']}")
    for r in result.results:
        note = r.summary.get("note")
        if r.summary.get("mode") == "test" and note:
            lines.append(note)  # "TEST send to …"
    if result.sandbox:
        lines.append(SANDBOX_NOTE)
    return "\n".join(lines)
