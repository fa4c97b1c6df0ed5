"""`campaign plan`: the dry run. Renders every request, sends nothing, writes the report.

It reads the state as `run` would (read-only), so its counts are what a run would now send.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from runner import campaign as campaigns
from runner import (
    history,
    htmlreport,
    inert,
    lifecycle,
    pipeline,
    plandigest,
    repository,
    schedule,
    secrets,
)
from runner import state as states
from runner.errors import CampaignError
from runner.model import Campaign, api_base
from runner.report import ReportWriter, default_folder, line
from runner.secrets import MASK, Masker
from runner.state.core import open_store, read_priors
from runner.status import Status
from runner.tally import Summary, by_reason

SAMPLES = 5
SANDBOX_BASE = "http://127.0.0.1:8025"
_SHOWN = 120  # characters of a value shown in the preview


@dataclass
class PlanResult:
    campaign: Campaign
    summary: Summary
    samples: list[dict[str, Any]]

    @property
    def exit_code(self) -> int:
        """2 when `run` would refuse to start (too many invalid rows), else 0."""
        return 2 if self.summary.get("run_refuses") else 0


def plan(
    path: Path,
    *,
    report_dir: Path | None = None,
    limit: int | None = None,
    out: Path | None = None,
    sandbox: bool = False,
    state: str | None = None,
    retry_failed: bool = False,
    resend_uncertain: bool = False,
    outside_repo: bool = False,
) -> PlanResult:
    campaign = campaigns.load(path, outside_repo=outside_repo)
    base = api_base(SANDBOX_BASE, campaign.bot.api) if sandbox else None
    target = pipeline.endpoint(campaign, strict=False, token=MASK, base_url=base)
    masker = Masker()  # every value this process read from the environment
    location = states.locate(state, campaign.path, campaign.name, sandbox)
    reader = read_priors(location, campaign.name)
    try:
        directory = report_dir or default_folder(
            repository.root(campaign.path),
            campaign.name,
            "sandbox-plan" if sandbox else "plan",
        )
        if out is not None:
            plandigest.refuse_target(out, campaign)
        digest = plandigest.new_digest() if out else None
        writer = ReportWriter(directory)
        samples: list[dict[str, Any]] = []
        started = time.perf_counter()
        # A plan's digests are of the requests as written (every ${VAR} by its name), so that
        # a preview without secrets matches the run that has them.
        reviewed = pipeline.reviewed_endpoint(campaign) if out else None
        items = pipeline.prepare(campaign, target, reviewed=reviewed)
        if limit is not None:
            items = itertools.islice(items, limit)
        write = writer.write
        history = reader.has_history
        masking = masker.active  # a bot id or base URL read from the environment
        for item in items:
            if isinstance(item, pipeline.Prepared):
                if digest:  # every request the campaign renders, whatever the state says
                    digest.add(item)
                judged = history
            else:  # one deferred now that an earlier run settled is reported as settled
                judged = history and item.opens is not None
            if judged:
                found = pipeline.earlier(
                    item, reader, retry_failed=retry_failed, resend_uncertain=resend_uncertain
                )
                if found is not None:
                    writer.write(found, this_run=False)
                    continue
            if isinstance(item, pipeline.Skipped):
                write(line(item.row, item.recipient, item.status, reason=item.reason))
                if item.opens is not None:
                    writer.deferred(item.opens)
                continue
            request = item.request.for_report()
            if masking:
                request["url"] = masker(request["url"])
            entry = line(item.row, item.recipient, Status.PLANNED)
            entry["request"] = request
            write(entry)
            if len(samples) < SAMPLES:
                samples.append({"row": item.row, "recipient": item.recipient, "request": request})
    finally:
        reader.close()
    if out is not None and digest is not None:
        try:
            shape = plandigest.template(campaign, pipeline.reviewed_endpoint(campaign))
            if "url" in shape:
                shape["url"] = masker(shape["url"])
            plandigest.write(out, campaign, limit, digest, shape)
        except BaseException:
            writer.close()
            raise
    planned = writer.tally.counts[Status.PLANNED]
    rate = campaign.bot.rate_limit
    tally = writer.tally
    refusal = (
        None
        if limit is not None
        else pipeline.refuse_invalid(
            campaign,
            sum(tally.counts.values()),
            [(r["row"], r["reason"]) for r in tally.first_invalid],
            tally.counts[Status.INVALID],
        )
    )
    summary = writer.finish(
        {
            "campaign": campaign.name,
            "api": campaign.bot.api,
            **htmlreport.identity(campaign),
            "mode": "plan",
            "sandbox": sandbox,
            "limit": limit,
            "state": str(location),
            "duration_s": round(time.perf_counter() - started, 3),
            "rate_limit": rate,
            "estimated_duration_s": round(planned / rate, 1),
            "exit_code": 2 if refusal else 0,
            "run_refuses": refusal,
            "outside_repository": str(campaign.audience.file.resolve())
            if campaign.audience.file and campaign.audience.outside_repository
            else None,
            "note": "Dry run: nothing was sent.",
            "plan_file": str(out) if out else None,
            "samples": samples[:3],  # for the job summary: messages a reviewer can read
            "window": _window(campaign),
            "run_blockers": [] if sandbox else _blockers(campaign, location, state),
        },
        title=f"Plan: {campaign.name}",
    )
    return PlanResult(campaign, summary, samples)


def text(result: PlanResult) -> str:
    c, s = result.campaign, result.summary
    counts = s["counts"]
    lines = [
        f"Plan for {c.name} ({c.bot.api}, {c.bot.rate_limit} requests/s)"
        + (" [sandbox]" if s["sandbox"] else ""),
        "",
        f"  rows read      {s['rows']}" + (f" (first {s['limit']} only)" if s["limit"] else ""),
        f"  to send        {counts['planned']}",
    ]
    for status in ("failed", "uncertain", "invalid", "deferred", "skipped"):
        if counts[status] or status == "skipped":
            lines.append(f"  {status:<14} {counts[status]}")
        for reason, n in by_reason(s).get(status, {}).items():
            lines.append(f"    {n:>6}  {inert.terminal(reason)}")
    lines.append(
        f"  estimated duration  {_duration(s['estimated_duration_s'])} at "
        f"{c.bot.rate_limit} requests/s"
    )
    if s.get("deferred_until"):
        lines.append(f"  deferred until {s['deferred_until']} at the earliest (quiet hours)")
    if s.get("window"):
        lines.append(f"  send window    {s['window']}")
    if s.get("outside_repository"):
        lines.append(
            f"  audience outside the repository, on purpose: {s['outside_repository']} "
            "(--audience-outside-repo)"
        )
    refuses = s.get("run_refuses")
    if refuses:
        lines += ["", "RUN WOULD REFUSE TO START:", *refuses.splitlines()]
    elif s.get("run_blockers"):
        lines.append("  run would start: no, not here and now:")
        lines += [f"    - {inert.terminal(b)}" for b in s["run_blockers"]]
    elif not s["limit"]:
        lines.append("  run would start: yes")
    if result.samples:
        n = len(result.samples)
        lines += ["", f"First {n} request{'s' if n != 1 else ''} (token masked):"]
        for sample in result.samples:
            request = sample["request"]
            lines.append(f"  row {sample['row']} -> {inert.terminal(sample['recipient'])}")
            lines.append(f"    {request['method']} {_short(request['url'])}")
            if request["body"] is not None:
                lines.append(f"    {_short(orjson.dumps(request['body']).decode())}")
    lines += ["", f"State: {s['state']}", f"Report: {s['report']}"]
    if s.get("plan_file"):
        lines.append(f"Plan file: {s['plan_file']}")
    lines.append("Dry run: nothing was sent.")
    return "\n".join(lines)


def _blockers(campaign: Campaign, location: states.Location, given: str | None) -> list[str]:
    """What would make `run` refuse here and now, besides invalid rows: the window, a secret
    this machine lacks, the state (unreachable, a run holding it, a pause)."""
    found = []
    try:
        campaign.schedule.check_window(schedule.now())
    except CampaignError as exc:
        found.append(str(exc).split("; nothing was sent")[0].split(" (in ")[0])
    bot = campaign.bot
    for text in (bot.token, bot.id, bot.base_url or ""):
        for name in secrets.references(text):
            if not os.environ.get(name):
                found.append(f"{name} is not set here (run reads it from the environment)")
    found += asyncio.run(_state_blockers(campaign.name, location))
    for refusal in (
        asyncio.run(history.history_elsewhere(campaign, given)),
        asyncio.run(history.identifiers_lost(campaign, given, False)),
    ):
        if refusal is not None:
            found.append(refusal.removeprefix(f"{campaign.path}: "))
    return found


async def _state_blockers(name: str, location: states.Location) -> list[str]:
    try:
        store = await open_store(location, Masker(location.passwords), readonly=True)
    except CampaignError as exc:
        return [f"the state cannot be used: {exc}"]
    try:
        holder = await store.holder(name)
        control = await store.control(name)
    except CampaignError as exc:
        return [f"the state cannot be used: {exc}"]
    finally:
        await store.close()
    found = []
    if holder is not None:
        found.append(f"a run holds it now (host {holder.host}, pid {holder.pid})")
    if control is not None:
        found.append(lifecycle.stopped_words(name, control))
    return found


def _window(campaign: Campaign) -> str | None:
    """The send window and where now stands in it, for the preview."""
    first, last = campaign.schedule.not_before, campaign.schedule.not_after
    if first is None and last is None:
        return None
    now = schedule.now()
    span = f"{first.isoformat() if first else '...'} to {last.isoformat() if last else '...'}"
    if first is not None and now < first:
        return f"{span} (not open yet: run refuses until it opens)"
    if last is not None and now >= last:
        return f"{span} (closed: run refuses)"
    return f"{span} (open now)"


def _short(text: str) -> str:
    text = inert.terminal(text)
    return text if len(text) <= _SHOWN * 4 else text[: _SHOWN * 4] + "…"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
