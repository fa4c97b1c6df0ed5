"""`campaign status`: what the state says of a campaign, and who did not get the message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner import campaign as campaigns
from runner import state


def status(path: Path, state_file: Path | None, sandbox: bool = False) -> dict[str, Any]:
    campaign = campaigns.load(path)
    return state.status_report(state.path_for(state_file, campaign.name, sandbox), campaign.name)


def text(report: dict[str, Any]) -> str:
    counts = report["counts"]
    lines = [f"{report['campaign']} ({report['state']})"]
    lines += [f"  {name:<10} {counts[name]}" for name in ("sent", "failed", "uncertain")]
    if counts.get("sending"):
        lines.append(
            f"  {'sending':<10} {counts['sending']} (a run is going, or died: "
            "the next run reports them as uncertain)"
        )
    missing = report["not_delivered"]
    if missing:
        lines += ["", "Not delivered:"]
        for e in missing:
            detail = e["result"] or e["error"] or ""  # the API's own words first
            http = f" HTTP {e['http_status']}" if e["http_status"] else ""
            lines.append(f"  {e['status']:<9} row {e['row']:<7} {e['recipient']}{http} {detail}")
        lines += ["", "Resend with: campaign run FILE --retry-failed / --resend-uncertain"]
    return "\n".join(lines)
