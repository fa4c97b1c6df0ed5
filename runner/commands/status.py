"""`campaign status`: what the state says of a campaign, and who did not get the message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner import campaign as campaigns
from runner import inert, pipeline, state
from runner.errors import CampaignError
from runner.model import Campaign
from runner.secrets import MASK


def status(
    path: Path, state_given: str | None, sandbox: bool = False, *, outside_repo: bool = False
) -> dict[str, Any]:
    campaign = campaigns.load(path, outside_repo=outside_repo)
    location = state.locate(state_given, campaign.path, campaign.name, sandbox)
    report = state.status_report(location, campaign.name)
    report["not_attempted"] = _not_attempted(campaign, location)
    return report


def _not_attempted(campaign: Campaign, location: state.Location) -> int | None:
    """Recipients of the audience that no run has attempted yet; None when the audience
    cannot be read."""
    target = pipeline.endpoint(campaign, strict=False, token=MASK)
    reader = state.open_reader(location, campaign.name)
    try:
        return sum(
            1
            for item in pipeline.prepare(campaign, target)
            if isinstance(item, pipeline.Prepared) and reader.prior(item.recipient) is None
        )
    except (CampaignError, OSError):
        return None
    finally:
        reader.close()


def text(report: dict[str, Any]) -> str:
    counts = report["counts"]
    lines = [f"{report['campaign']} ({report['state']})"]
    lines += [f"  {name:<10} {counts[name]}" for name in ("sent", "failed", "unsent", "uncertain")]
    if counts.get("sending"):
        lines.append(
            f"  {'sending':<10} {counts['sending']} (a run is going, or died: "
            "the next run reports them as uncertain)"
        )
    if report.get("not_attempted") is not None:
        lines.append(f"  {'not yet':<10} {report['not_attempted']} audience rows not attempted")
    missing = report["not_delivered"]
    if missing:
        lines += ["", "Not delivered:"]
        for e in missing:
            detail = inert.terminal(e["result"] or e["error"] or "")  # the API's words first
            http = f" HTTP {e['http_status']}" if e["http_status"] else ""
            who = inert.terminal(str(e["recipient"]))
            lines.append(f"  {e['status']:<9} row {e['row']:<7} {who}{http} {detail}")
        lines += [
            "",
            "unsent ones are sent by a plain rerun; resend the others with: "
            "campaign run FILE --retry-failed / --resend-uncertain",
        ]
    return "\n".join(lines)
