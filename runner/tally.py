"""What a report is made of, counted as lines arrive: statuses, reasons, HTTP answers, errors
in the API's words, latencies and the per-second timeline; and the facts a summary states.

`runner.report` writes the files from it, `runner.htmlreport` draws the page.
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from typing import Any, TypedDict

from runner.status import UNDELIVERED, Status

Line = dict[str, Any]
_MAX_REASONS = 20
_MAX_ERRORS = 100  # distinct error groups kept for the summary
_FIRST_INVALID = 10  # invalid rows listed by number in the summary
_DUPLICATE = re.compile(r"^duplicate of row \d+$")


def by_reason(summary: Summary) -> dict[str, dict[str, int]]:
    """The rows skipped, invalid and deferred, each by reason."""
    return {
        "skipped": summary.get("skipped_by_reason") or {},
        "invalid": summary.get("invalid_by_reason") or {},
        "deferred": summary.get("deferred_by_reason") or {},
    }


class Summary(TypedDict, total=False):
    """A run's or a plan's summary: summary.json, and what the text, summary.md, report.html
    and the history read from it. One declaration, so that a key misspelled by any of them is
    a type error, not a silent None."""

    # who and what (htmlreport.identity and the command)
    campaign: str
    api: str
    bot: str
    campaign_file: str
    campaign_sha256: str
    git_commit: str | None
    campaign_file_state: str | None
    run_by: str | None
    api_host: str
    mode: str  # run | sandbox | test | plan
    sandbox: bool
    run_id: str
    state: str
    note: str | None
    samples: list[dict[str, Any]]
    # how the run went
    duration_s: float
    rate_limit: int
    rate_lowest: float | None
    aborted: str | None
    paused: str | None
    cancelled: bool
    window_closed: bool
    interrupted: bool
    limit: int | None
    budget_spent: bool
    remaining: int | None
    unrecorded_sent: int  # delivered, but the state was lost before it could say so
    exit_code: int
    # a plan's
    estimated_duration_s: float
    run_refuses: str | None
    run_blockers: list[str]
    outside_repository: str | None
    plan_file: str | None
    window: str | None
    # counted by the report writer
    started: str
    finished: str
    rows: int
    counts: dict[str, int]
    skipped_by_reason: dict[str, int]
    invalid_by_reason: dict[str, int]
    deferred_by_reason: dict[str, int]
    deferred_until: str | None
    first_invalid_rows: list[dict[str, Any]]
    not_reached: int
    requests: int
    requests_per_s: float | None
    latency_ms: dict[str, float] | None
    http_status: dict[str, int]
    errors: list[dict[str, Any]]
    report: str
    undelivered: str


def reason_group(reason: str) -> str:
    return "duplicate" if _DUPLICATE.match(reason) else str(reason)


class Tally:
    """Counts that the summary is made of, gathered as lines are written."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.reasons: dict[str, Counter[str]] = {
            "skipped": Counter(),
            "invalid": Counter(),
            "deferred": Counter(),
        }
        self.deferred_until: float | None = None  # when the first deferred recipient opens
        self.http: Counter[int] = Counter()
        self.errors: Counter[tuple[str, int | None, str]] = Counter()
        self.latencies: array[float] = array("d")
        self.first_invalid: list[dict[str, Any]] = []
        self.requests = 0  # HTTP attempts of this run, retries included
        self.first_request: float | None = None  #: the earliest release of an attempt
        self.last_request: float | None = None  #: the latest
        self.origin: float | None = None  #: the timeline's second 0
        self.not_reached = 0
        self.timeline: dict[str, array[int]] = {}
        self.rates: array[float] = array("d")

    def add(self, line: Line, this_run: bool = True) -> None:
        status = line["status"]
        self.counts[status] += 1
        reasons = self.reasons.get(status)
        if reasons is not None:
            group = reason_group(line["reason"] or "")
            if group in reasons or len(reasons) < _MAX_REASONS:
                reasons[group] += 1
            else:
                reasons["other reasons"] += 1
            if status == Status.INVALID and len(self.first_invalid) < _FIRST_INVALID:
                self.first_invalid.append({"row": line["row"], "reason": line["reason"]})
        if not this_run:
            return
        if status in UNDELIVERED:
            # The API's own words first: "User blocked the bot x 10".
            words = line["result"] or line["error"] or line["reason"] or ""
            key = (str(status), line["http_status"], words)
            if key in self.errors or len(self.errors) < _MAX_ERRORS:
                self.errors[key] += 1
        latency = line["latency_ms"]
        if latency is not None:
            self.latencies.append(latency)

    def attempted(
        self, http_status: int | None, released: float, kind: str = "sent", rate: float = 0.0
    ) -> None:
        self.requests += 1
        if http_status is not None:
            self.http[http_status] += 1
        # Attempts arrive as they finish, not in the order they were let go.
        first, last = self.first_request, self.last_request
        if first is None or released < first:
            self.first_request = released
        if last is None or released > last:
            self.last_request = released
        # Per second of the run: requests by outcome, and the pacer's rate (a small array per
        # outcome, not a timestamp per request: a million-request run stays small). Seconds
        # count from the first attempt to finish; one let go before it counts in second 0.
        origin = self.origin = released if self.origin is None else self.origin
        second = max(0, int(released - origin))
        counts = self.timeline.get(kind)
        if counts is None:
            counts = self.timeline[kind] = array("I")
        while len(counts) <= second:
            counts.append(0)
        counts[second] += 1
        rates = self.rates
        while len(rates) <= second:
            rates.append(rate)
        rates[second] = min(rates[second], rate) if rates[second] else rate

    @property
    def seconds(self) -> int:
        """How many seconds of the run the timeline covers."""
        return max((len(counts) for counts in self.timeline.values()), default=0)

    def bars(self, most: int) -> tuple[int, list[dict[str, float]]]:
        """The timeline in at most ``most`` bars: (seconds a bar, requests/s by outcome kind
        in each bar, the kinds that made none left out)."""
        per = max(1, math.ceil(self.seconds / most))
        found = []
        for start in range(0, self.seconds, per):
            bar = {}
            for kind, counts in self.timeline.items():
                total = sum(counts[start : start + per])
                if total:
                    bar[kind] = total / per
            found.append(bar)
        return per, found

    def requests_per_s(self) -> float | None:
        """Intervals over the span between the first and the last release: a paced run never
        shows more than its limit (the pacer lets n requests go over at least (n - 1) / r
        seconds)."""
        if self.requests < 2 or self.first_request is None or self.last_request is None:
            return None
        span = self.last_request - self.first_request
        return round((self.requests - 1) / span, 2) if span > 0 else None

    def percentiles(self) -> dict[str, float] | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

        return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": pick(1.0)}

    def error_groups(self) -> list[dict[str, Any]]:
        return [
            {"status": status, "http_status": http, "error": words, "count": n}
            for (status, http, words), n in self.errors.most_common()
        ]


def facts(summary: Summary) -> list[str]:
    """The run's figures in words, for summary.md and report.html alike."""
    found = []
    if summary.get("duration_s") is not None:
        found.append(f"duration {summary['duration_s']} s")
    if summary.get("requests"):
        n = summary["requests"]
        found.append(f"{n} request{'s' if n != 1 else ''}")
    if summary.get("requests_per_s"):
        found.append(f"{summary['requests_per_s']} requests/s (limit {summary.get('rate_limit')})")
    if summary.get("rate_lowest"):
        found.append(f"rate lowered to {summary['rate_lowest']}/s after 429s")
    if summary.get("estimated_duration_s") is not None:
        found.append(f"estimated duration {summary['estimated_duration_s']} s")
    if summary.get("not_reached"):
        found.append(f"{summary['not_reached']} rows not reached")
    if summary.get("deferred_until"):
        found.append(f"deferred until {summary['deferred_until']} at the earliest")
    return found
