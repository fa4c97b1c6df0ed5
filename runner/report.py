"""The results report, one writer for `plan` and `run`: results.jsonl, summary.json,
summary.md and undelivered.csv.

Lines are written as outcomes arrive and flushed often, so that a crash loses at most the last
few; the summary is written once, at the end. What the summary says of HTTP (status counts,
requests/s) counts every attempt of this run, and only of this run: rows an earlier run
settled are listed, not counted as this run's answers.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from runner import htmlreport, inert
from runner.apis import decoded
from runner.errors import UsageError
from runner.status import REPORTED, UNDELIVERED, Status
from runner.tally import Line, Summary, Tally, by_reason, facts

FLUSH_EVERY = 0.2  # seconds between flushes of results.jsonl while lines arrive


def line(
    row: int,
    recipient: str | None,
    status: Status,
    *,
    reason: str | None = None,
    http_status: int | None = None,
    attempts: int = 0,
    result: str | None = None,
    error: str | None = None,
    latency_ms: float | None = None,
) -> Line:
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


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")[:-4] + "Z"


def default_folder(root: Path, campaign: str, kind: str, rid: str | None = None) -> Path:
    """``ROOT/reports/<name>/<kind>-<run id>``; a real run's is ``.../<name>/<run id>``."""
    prefix = "" if kind == "run" else f"{kind}-"
    return root / "reports" / campaign / f"{prefix}{rid or run_id()}"


class ReportWriter:
    def __init__(self, directory: Path, columns: Sequence[str] = ()) -> None:
        self.directory = directory
        self._columns = list(columns)  # the audience's own, for undelivered.csv's header
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._results = (directory / "results.jsonl").open("wb", buffering=1 << 16)
        except OSError as exc:
            raise UsageError(f"{directory}: cannot write the report here: {exc.strerror}") from None
        self._undelivered: IO[bytes] | None = None
        self._flushed = time.monotonic()
        self.tally = Tally()
        self._put, self._count = self._results.write, self.tally.add  # once a line, bound once
        self.started = now_iso()

    def write(
        self, line: Line, record: Mapping[str, Any] | None = None, *, this_run: bool = True
    ) -> None:
        """A row settled (or skipped) by this run; ``this_run=False``: a row an earlier run
        settled, listed and counted by status but not as this run's answers."""
        self._put(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
        self._count(line, this_run)
        now = time.monotonic()
        if now - self._flushed >= FLUSH_EVERY:  # a crash loses at most this long's lines
            self._results.flush()
            self._flushed = now
        if record is not None and line["status"] in UNDELIVERED:
            self._keep_undelivered(line, record)

    def attempted(
        self, http_status: int | None, released: float, kind: str = "sent", rate: float = 0.0
    ) -> None:
        """One HTTP attempt of this run, let go by the bot's pacer at ``released`` (monotonic
        seconds) while it allowed ``rate`` requests/s, answered with ``http_status`` (None: no
        answer), of outcome ``kind``."""
        self.tally.attempted(http_status, released, kind, rate)

    def deferred(self, opens: float | None) -> None:
        """A deferred recipient, whose quiet hours end at ``opens`` (epoch seconds)."""
        t = self.tally
        if opens is not None and (t.deferred_until is None or opens < t.deferred_until):
            t.deferred_until = opens

    def not_reached(self, rows: int) -> None:
        """Rows a stopped run never reached."""
        self.tally.not_reached += rows

    def _keep_undelivered(self, line: Line, record: Mapping[str, Any]) -> None:
        if self._undelivered is None:
            self._undelivered = (self.directory / ".undelivered.jsonl").open("wb")
        reason = line["result"] or line["error"] or line["reason"] or ""
        entry = {"record": record, "status": line["status"], "reason": reason}
        self._undelivered.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE, default=str))

    def flush(self) -> None:
        self._results.flush()

    def close(self) -> None:
        """Close the files without a summary (the command failed before its end)."""
        self._results.close()
        if self._undelivered is not None:
            self._undelivered.close()

    def finish(self, summary: Summary, title: str) -> Summary:
        """Close the files, write summary.json, summary.md, undelivered.csv; the summary."""
        self._results.close()
        t = self.tally
        full: Summary = {
            **summary,
            "started": self.started,
            "finished": now_iso(),
            "rows": sum(t.counts.values()),
            "counts": {str(status): t.counts.get(status, 0) for status in REPORTED},
            "skipped_by_reason": dict(t.reasons["skipped"].most_common()),
            "invalid_by_reason": dict(t.reasons["invalid"].most_common()),
            "deferred_by_reason": dict(t.reasons["deferred"].most_common()),
            "deferred_until": datetime.fromtimestamp(t.deferred_until, UTC).isoformat()
            if t.deferred_until is not None
            else None,
            "first_invalid_rows": t.first_invalid,
            "not_reached": t.not_reached,
            "requests": t.requests,
            "requests_per_s": t.requests_per_s(),
            "latency_ms": t.percentiles(),
            "http_status": {str(code): n for code, n in sorted(t.http.items())},
            "errors": t.error_groups(),
            "report": str(self.directory),
        }
        if summary.get("mode") != "plan":
            full["undelivered"] = self._write_undelivered()
        (self.directory / "summary.json").write_bytes(
            orjson.dumps(full, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )
        markdown = summary_markdown(full, title, t)
        (self.directory / "summary.md").write_text(markdown, encoding="utf-8")
        # The page for people, beside the files for machines.
        (self.directory / "report.html").write_text(
            htmlreport.render(full, t, title), encoding="utf-8"
        )
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(markdown + "\n")
        return full

    def _write_undelivered(self) -> str:
        """undelivered.csv: each recipient not delivered, with its audience record's own
        columns, then status and reason; ready to re-target."""
        target = self.directory / "undelivered.csv"
        entries = self.directory / ".undelivered.jsonl"
        columns: dict[str, None] = dict.fromkeys(self._columns)
        if self._undelivered is not None:
            self._undelivered.close()
            with entries.open("rb") as handle:
                for raw in handle:
                    columns.update(dict.fromkeys(orjson.loads(raw)["record"]))
        extra = [name for name in ("status", "reason") if name not in columns]
        with target.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow([*columns, *extra])
            if self._undelivered is not None:
                with entries.open("rb") as handle:
                    for raw in handle:
                        entry = orjson.loads(raw)
                        record = entry["record"]
                        cells = [_cell(record.get(name)) for name in columns]
                        # The API's words never run as a formula; the audience's own columns
                        # stay exactly as read (a phone +84… must round-trip).
                        reason = inert.spreadsheet(inert.terminal(entry["reason"] or ""))
                        tail = {"status": entry["status"], "reason": reason}
                        writer.writerow([*cells, *(tail[name] for name in extra)])
                entries.unlink()
        return str(target)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _mermaid(tally: Tally, limit: float) -> list[str]:
    """The timeline as a Mermaid xychart (GitHub renders it in job summaries): requests per
    second over the run, at most 60 bars, with the rate limit as a line."""
    seconds = tally.seconds
    if seconds < 2:
        return []
    per, by_kind = tally.bars(60)
    bars = [sum(bar.values()) for bar in by_kind]
    top = max([*bars, limit]) * 1.1
    return [
        "",
        "```mermaid",
        "xychart-beta",
        f'  title "Requests per second ({per} s a bar)"',
        f'  x-axis "seconds" 0 --> {seconds}',
        f'  y-axis "requests/s" 0 --> {top:.0f}',
        f"  bar [{', '.join(f'{b:.1f}' for b in bars)}]",
        f"  line [{', '.join(f'{limit:g}' for _ in bars)}]",
        "```",
    ]


def summary_markdown(summary: Summary, title: str, tally: Tally | None = None) -> str:
    counts = summary["counts"]
    lines = [f"## {inert.markdown(title)}", "", "| status | count |", "| --- | ---: |"]
    lines += [f"| {status} | {counts[status]} |" for status in counts if counts[status]]
    lines.append(f"| **rows** | **{summary['rows']}** |")
    for status, reasons in by_reason(summary).items():
        if reasons:
            lines += ["", f"| {status} because | count |", "| --- | ---: |"]
            lines += [f"| {inert.markdown(r)} | {n} |" for r, n in reasons.items()]
    found = facts(summary)
    lat = summary.get("latency_ms")
    if lat:
        found.append(f"latency p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms")
    if summary.get("http_status"):
        found.append("HTTP " + ", ".join(f"{k}: {v}" for k, v in summary["http_status"].items()))
    if summary.get("exit_code") is not None:
        found.append(f"exit code {summary['exit_code']}")
    if found:
        lines += ["", "; ".join(found) + "."]
    if tally is not None:
        lines += _mermaid(tally, float(summary.get("rate_limit") or 0))
    if summary.get("errors"):
        lines += [
            "",
            "| not delivered | HTTP | what was said | count |",
            "| --- | --- | --- | ---: |",
        ]
        for group in summary["errors"][:20]:
            http = group["http_status"] or ""
            words = inert.markdown(group["error"])
            lines.append(f"| {group['status']} | {http} | {words} | {group['count']} |")
    for sample in summary.get("samples") or []:
        heading = f"Row {sample['row']}:" if sample.get("row") else "A request sent:"
        lines += ["", heading, "", "| | |", "| --- | --- |"]
        lines += [
            f"| {inert.markdown(name)} | {inert.markdown(_shown(value))} |"
            for name, value in decoded(sample["request"])
        ]
    note = summary.get("note")
    if note:
        lines += ["", f"**{inert.markdown(note)}**"]
    return "\n".join(lines) + "\n"


def _shown(value: str, limit: int = 300) -> str:
    return value if len(value) <= limit else value[:limit] + "…"
