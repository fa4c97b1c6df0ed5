"""`campaign status`: where each campaign stands, and for one campaign the detail.

Over many campaigns it reads each one's state (and its audience's digest, to tell whether rows
were added), never the audience's rows, so that a folder of large campaigns answers fast. For
one campaign it also renders the audience, to count who no run attempted yet and who is
deferred, by zone and opening.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from runner import campaign as campaigns
from runner import history, inert, lifecycle, pipeline, schedule, state
from runner.errors import CampaignError, InvalidCampaign
from runner.model import Campaign
from runner.secrets import MASK, Masker
from runner.state.core import open_store, read_priors, status_report
from runner.status import Status

HISTORY = 20  # runs shown in the detail


@dataclass
class Detail:
    report: dict[str, Any]
    runs: list[dict[str, Any]]
    not_attempted: int | None
    deferred_by_reason: dict[str, int] = field(default_factory=dict)
    invalid: int | None = None  #: invalid rows of the audience; None when it cannot be read


@dataclass
class StatusResult:
    standings: list[lifecycle.Standing]
    problems: list[str]
    detail: Detail | None = None

    @property
    def exit_code(self) -> int:
        return 2 if self.problems else 0

    def as_json(self) -> Any:
        found = [s.as_dict() for s in self.standings]
        if self.detail is not None and len(found) == 1:
            d = self.detail
            return {
                **found[0],
                "not_delivered": d.report["not_delivered"],
                "not_attempted": d.not_attempted,
                "invalid": d.invalid,
                "deferred_by_reason": d.deferred_by_reason,
                "runs": d.runs,
            }
        return {"campaigns": found, "problems": self.problems}


def status(
    targets: list[str],
    state_given: str | None,
    sandbox: bool = False,
    *,
    outside_repo: bool = False,
) -> StatusResult:
    loaded: list[Campaign] = []
    problems: list[str] = []
    for path in campaigns.expand(targets):
        try:
            loaded.append(campaigns.load(path, outside_repo=outside_repo))
        except InvalidCampaign as exc:
            problems += [str(p) for p in exc.problems]
    names = [c.name for c in loaded]
    for c in loaded:
        if names.count(c.name) > 1:
            problems.append(
                f"{c.path}: the name {c.name!r} is taken by another file too: they share one "
                "state, and a run refuses them together"
            )
    result = asyncio.run(_read(loaded, state_given, sandbox, problems))
    if result.detail is not None:
        c = loaded[0]
        location = state.locate(state_given, c.path, c.name, sandbox)
        found = _audience(c, location)
        detail = result.detail
        detail.not_attempted, detail.deferred_by_reason, detail.invalid, too_many = found
        standing = result.standings[0]
        if standing.state in ("new", "due"):
            # The overview reads no rows, so only this detail (and a sweep) can tell that a
            # run would refuse: "due now" would be a promise a run does not keep.
            if too_many is not None:
                why = f"{too_many}; a run refuses until they are fixed or allowed"
            elif lost := asyncio.run(history.identifiers_lost(c, state_given, sandbox)):
                why = lost.removeprefix(f"{c.path}: ")
            else:
                return result
            blocked = f"blocked: {why}"
            result.standings[0] = dataclasses.replace(
                standing, state="blocked", why=blocked, next_due=None
            )
    return result


async def _read(
    loaded: list[Campaign], given: str | None, sandbox: bool, problems: list[str]
) -> StatusResult:
    standings = []
    detail = None
    now = schedule.now().timestamp()
    for c in loaded:
        location = state.locate(given, c.path, c.name, sandbox)
        store = await open_store(location, Masker(location.passwords), readonly=True)
        try:
            found = await lifecycle.standing(store, c, now)
            standings.append(await history.seen_from(found, c, None if sandbox else given))
            if len(loaded) == 1 and not problems:
                runs = await store.runs(c.name, HISTORY)
                detail = Detail(
                    await status_report(store, c.name),
                    [lifecycle.run_dict(r) for r in runs],
                    None,
                )
        finally:
            await store.close()
    return StatusResult(standings, problems, detail)


def _audience(
    campaign: Campaign, location: state.Location
) -> tuple[int | None, dict[str, int], int | None, str | None]:
    """Recipients of the audience no run attempted yet, the deferred by reason (zone and
    opening), the invalid rows and why a run would refuse them; Nones when the audience
    cannot be read."""
    target = pipeline.endpoint(campaign, strict=False, token=MASK)
    deferred: Counter[str] = Counter()
    invalid = pipeline.InvalidRows(campaign)
    reader = read_priors(location, campaign.name)
    try:
        fresh = 0
        for item in invalid.count(pipeline.prepare(campaign, target)):
            if isinstance(item, pipeline.Prepared):
                fresh += pipeline.prior_of(item, reader) is None
            elif item.status is Status.DEFERRED and (
                pipeline.earlier(
                    item,
                    reader,
                    retry_failed=False,
                    resend_uncertain=False,
                )
                is None
            ):  # one an earlier run settled is not deferred
                deferred[item.reason] += 1
        return fresh, dict(deferred.most_common()), invalid.invalid, invalid.too_many()
    except (CampaignError, OSError):
        return None, {}, None, None
    finally:
        reader.close()


def text(result: StatusResult) -> str:
    lines = [*result.problems]
    if result.detail is not None and len(result.standings) == 1:
        return "\n".join(lines + _detail(result.standings[0], result.detail))
    width = max((len(s.campaign) for s in result.standings), default=0)
    for s in result.standings:
        lines.append(f"{s.campaign:<{width}}  {s.state:<9} {_line(s)}")
        lines += [f"{'':<{width}}  ! {inert.terminal(note)}" for note in s.attention]
    return "\n".join(lines)


def _line(s: lifecycle.Standing) -> str:
    counts = s.counts
    tally = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("sent", "failed", "unsent", "uncertain"))
    last = s.last_run
    ran = (
        f"; last run {lifecycle.when(last.started)} by {inert.terminal(last.actor)}, "
        f"{_ended(last.exit_code, s.state == 'running')}"
        if last
        else ""
    )
    return f"{inert.terminal(s.told)} ({tally}{ran})"


def _ended(exit_code: int | None, running: bool) -> str:
    """How a run ended: the newest run of a campaign a run holds is that run, under way."""
    if exit_code is not None:
        return f"exit {exit_code}"
    return "under way" if running else "exit none (did not finish)"


def _detail(standing: lifecycle.Standing, detail: Detail) -> list[str]:
    report = detail.report
    counts = report["counts"]
    lines = [f"{inert.terminal(report['campaign'])} ({inert.terminal(report['state'])})"]
    lines += [f"  {name:<10} {counts[name]}" for name in ("sent", "failed", "unsent", "uncertain")]
    if counts.get("sending"):
        lines.append(
            f"  {'sending':<10} {counts['sending']} (a run is going, or died: "
            "the next run reports them as uncertain)"
        )
    if detail.not_attempted is not None:
        lines.append(f"  {'not yet':<10} {detail.not_attempted} audience rows not attempted")
    if detail.invalid:
        lines.append(f"  {'invalid':<10} {detail.invalid} audience rows (campaign plan lists them)")
    told = _line(standing)  # a pause's words name the campaign first: its standing leads
    told = told if told.startswith(standing.state) else f"{standing.state}: {told}"
    lines.append(f"  {'standing':<10} {told}")
    if standing.next_due is not None:
        lines.append(f"  {'next due':<10} {lifecycle.when(standing.next_due)}")
    lines += [f"  ! {inert.terminal(note)}" for note in standing.attention]
    if detail.deferred_by_reason:
        lines.append("  deferred now, by zone and opening:")
        lines += [
            f"    {n} {inert.terminal(reason)}" for reason, n in detail.deferred_by_reason.items()
        ]
    if detail.runs:
        lines += ["", "Runs (newest first):"]
        for i, r in enumerate(detail.runs):
            live = i == 0 and standing.state == "running" and r["finished"] is None
            ended = r["finished"] or ("under way" if live else "did not finish")
            lines.append(
                f"  {r['run_id']}  {r['started']} -> {ended}  "
                f"{r['host']} {inert.terminal(r['actor'])}  {r['mode']}  "
                f"{'exit ' + str(r['exit_code']) if r['exit_code'] is not None else 'no exit'}  "
                + ", ".join(f"{v} {k}" for k, v in r["counts"].items())
            )
    missing = report["not_delivered"]
    if missing:
        lines += ["", "Not delivered:"]
        for e in missing:
            shown = inert.terminal(e["result"] or e["error"] or "")  # the API's words first
            http = f" HTTP {e['http_status']}" if e["http_status"] else ""
            who = inert.terminal(str(e["recipient"]))
            lines.append(f"  {e['status']:<9} row {e['row']:<7} {who}{http} {shown}")
        lines += [
            "",
            "unsent ones are sent by a plain rerun; resend the others with: "
            "campaign run FILE --retry-failed / --resend-uncertain",
        ]
    return lines
