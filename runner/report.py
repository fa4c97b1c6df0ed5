"""The results report, one writer for `plan` and `run`: results.jsonl, summary.json, summary.md.

Lines are written as outcomes arrive and flushed often, so that a crash loses at most the last
few; the summary is written once, at the end.
"""

from __future__ import annotations

import os
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from runner.errors import UsageError

STATUSES = ("planned", "sent", "failed", "skipped", "uncertain")
_MAX_REASONS = 20
_MAX_ERRORS = 100  # distinct error texts kept for the summary
_DUPLICATE = re.compile(r"^duplicate of row \d+$")


def line(
    row: int,
    recipient: str | None,
    status: str,
    *,
    reason: str | None = None,
    http_status: int | None = None,
    attempts: int = 0,
    result: str | None = None,
    error: str | None = None,
    latency_ms: float | None = None,
) -> dict[str, Any]:
    """One results.jsonl line: every key, always, so that readers need no defaults."""
    return {
        "row": row,
        "recipient": recipient,
        "status": status,
        "reason": reason,
        "http_status": http_status,
        "attempts": attempts,
        "result": result,
        "error": error,
        "latency_ms": latency_ms,
    }


def reason_group(reason: str) -> str:
    return (
        "duplicate" if _DUPLICATE.match(reason) else str(reason)
    )  # not a str subclass: orjson keys


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")[:-4] + "Z"


def default_folder(campaign: str, kind: str) -> Path:
    """``reports/<name>/<kind>-<run id>``; a real run's is ``reports/<name>/<run id>``."""
    prefix = "" if kind == "run" else f"{kind}-"
    return Path("reports") / campaign / f"{prefix}{run_id()}"


@dataclass
class Tally:
    """Counts that the summary is made of, gathered as lines are written."""

    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    http: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    requests: int = 0  # HTTP attempts, retries included

    def add(self, line: dict[str, Any]) -> None:
        # Every line has every key (engine.line and the plan write them all).
        status = line["status"]
        self.counts[status] += 1
        if status == "skipped":
            group = reason_group(line["reason"])
            if group in self.reasons or len(self.reasons) < _MAX_REASONS:
                self.reasons[group] += 1
            else:
                self.reasons["other reasons"] += 1
        http_status = line["http_status"]
        if http_status is not None:
            self.http[http_status] += 1
        error = line["error"]
        if error and (error in self.errors or len(self.errors) < _MAX_ERRORS):
            self.errors[error] += 1
        latency = line["latency_ms"]
        if latency is not None:
            self.latencies.append(latency)
        self.requests += line["attempts"]

    def percentiles(self) -> dict[str, float] | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

        return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": pick(1.0)}


class ReportWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._results = (directory / "results.jsonl").open("wb", buffering=1 << 16)
        except OSError as exc:
            raise UsageError(f"{directory}: cannot write the report here: {exc.strerror}") from None
        self.tally = Tally()
        self.started = now_iso()

    def write(self, line: dict[str, Any]) -> None:
        self._results.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
        self.tally.add(line)

    def flush(self) -> None:
        self._results.flush()

    def finish(self, summary: dict[str, Any], title: str) -> dict[str, Any]:
        """Close results.jsonl, write summary.json and summary.md; returns the summary."""
        self._results.close()
        t = self.tally
        full: dict[str, Any] = {
            **summary,
            "started": self.started,
            "finished": now_iso(),
            "rows": sum(t.counts.values()),
            "counts": {status: t.counts.get(status, 0) for status in STATUSES},
            "skipped_by_reason": dict(t.reasons.most_common()),
            "requests": t.requests,
            "latency_ms": t.percentiles(),
            "http_status": {str(code): n for code, n in sorted(t.http.items())},
            "errors": sorted(t.errors),
            "report": str(self.directory),
        }
        (self.directory / "summary.json").write_bytes(
            orjson.dumps(full, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )
        markdown = summary_markdown(full, title)
        (self.directory / "summary.md").write_text(markdown, encoding="utf-8")
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(markdown + "\n")
        return full


def summary_markdown(summary: dict[str, Any], title: str) -> str:
    counts = summary["counts"]
    lines = [f"## {title}", "", "| status | count |", "| --- | ---: |"]
    lines += [f"| {status} | {counts[status]} |" for status in STATUSES if counts[status]]
    lines.append(f"| **rows** | **{summary['rows']}** |")
    if summary["skipped_by_reason"]:
        lines += ["", "| skipped because | count |", "| --- | ---: |"]
        lines += [f"| {_md(r)} | {n} |" for r, n in summary["skipped_by_reason"].items()]
    facts = []
    if summary.get("duration_s") is not None:
        facts.append(f"duration {summary['duration_s']} s")
    if summary.get("requests_per_s"):
        facts.append(f"{summary['requests_per_s']} requests/s")
    if summary.get("estimated_duration_s") is not None:
        facts.append(f"estimated duration {summary['estimated_duration_s']} s")
    if summary.get("latency_ms"):
        lat = summary["latency_ms"]
        facts.append(f"latency p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms")
    if summary.get("http_status"):
        facts.append("HTTP " + ", ".join(f"{k}: {v}" for k, v in summary["http_status"].items()))
    if summary.get("exit_code") is not None:
        facts.append(f"exit code {summary['exit_code']}")
    if facts:
        lines += ["", "; ".join(facts) + "."]
    if summary.get("errors"):
        lines += ["", "Errors:", *[f"- `{_md(e)}`" for e in summary["errors"][:20]]]
    if summary.get("note"):
        lines += ["", f"**{summary['note']}**"]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
