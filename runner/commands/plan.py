"""`campaign plan`: the dry run. Renders every request, sends nothing, writes the report."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import campaign as campaigns
from runner import pipeline
from runner.errors import UsageError
from runner.model import Campaign, api_base
from runner.plandigest import DigestWriter
from runner.report import ReportWriter, default_folder, line
from runner.secrets import MASK

SAMPLES = 5
SANDBOX_BASE = "http://127.0.0.1:8025"


@dataclass
class PlanResult:
    campaign: Campaign
    summary: dict[str, Any]
    samples: list[dict[str, Any]]
    exit_code: int = 0


def plan(
    path: Path,
    *,
    report_dir: Path | None = None,
    limit: int | None = None,
    out: Path | None = None,
    sandbox: bool = False,
) -> PlanResult:
    campaign = campaigns.load(path)
    base = api_base(SANDBOX_BASE, campaign.bot.api) if sandbox else None
    target = pipeline.endpoint(campaign, strict=False, token=MASK, base_url=base)
    directory = report_dir or default_folder(campaign.name, "sandbox-plan" if sandbox else "plan")
    digest = DigestWriter(out, campaign, limit) if out else None
    try:
        writer = ReportWriter(directory)
    except UsageError:
        if digest:
            digest.discard()
        raise
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()
    items = pipeline.prepare(campaign, target)
    if limit is not None:
        items = itertools.islice(items, limit)
    write = writer.write
    for item in items:
        if isinstance(item, pipeline.Prepared):
            request = item.request.for_report()
            entry = line(item.row, item.recipient, "planned")
            entry["request"] = request
            write(entry)
            if len(samples) < SAMPLES:
                samples.append({"row": item.row, "recipient": item.recipient, "request": request})
            if digest:
                digest.add(item)
        else:
            write(line(item.row, item.recipient, "skipped", reason=item.reason))
    if digest:
        digest.close()
    planned = writer.tally.counts["planned"]
    rate = campaign.bot.rate_limit
    summary = writer.finish(
        {
            "campaign": campaign.name,
            "api": campaign.bot.api,
            "mode": "plan",
            "sandbox": sandbox,
            "limit": limit,
            "duration_s": round(time.perf_counter() - started, 3),
            "rate_limit": rate,
            "estimated_duration_s": round(planned / rate, 1),
            "exit_code": 0,
            "note": "Dry run: nothing was sent.",
            "plan_file": str(out) if out else None,
        },
        title=f"Plan: {campaign.name}",
    )
    return PlanResult(campaign, summary, samples)


def text(result: PlanResult) -> str:
    c, s = result.campaign, result.summary
    counts = s["counts"]
    lines = [
        f"Plan for {c.name} ({c.bot.api}, bot {c.bot.id}, {c.bot.rate_limit} requests/s)"
        + (" [sandbox]" if s["sandbox"] else ""),
        "",
        f"  rows read      {s['rows']}" + (f" (first {s['limit']} only)" if s["limit"] else ""),
        f"  to send        {counts['planned']}",
        f"  skipped        {counts['skipped']}",
    ]
    for reason, n in s["skipped_by_reason"].items():
        lines.append(f"    {n:>6}  {reason}")
    lines.append(
        f"  estimated duration  {_duration(s['estimated_duration_s'])} at "
        f"{c.bot.rate_limit} requests/s"
    )
    if result.samples:
        lines += ["", f"First {len(result.samples)} requests (token masked):"]
        for sample in result.samples:
            request = sample["request"]
            lines.append(f"  row {sample['row']} -> {sample['recipient']}")
            lines.append(f"    {request['method']} {request['url']}")
            if request["body"] is not None:
                import orjson

                lines.append(f"    {orjson.dumps(request['body']).decode()}")
    lines += ["", f"Report: {s['report']}"]
    if s.get("plan_file"):
        lines.append(f"Plan file: {s['plan_file']}")
    lines.append("Dry run: nothing was sent.")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
