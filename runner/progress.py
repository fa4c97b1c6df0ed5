"""Progress while a run goes: a live bar on a terminal, a plain line every few seconds in CI.

The report writer flushes its own lines; a `--quiet` run starts no progress at all.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from runner.engine import JobRun
from runner.model import Campaign

TICK = 0.2  # seconds between bar refreshes
LOG_EVERY = 5.0  # seconds between plain lines without a terminal
RECENT = 10.0  # seconds of requests the ETA's rate is measured over
# tqdm's own ETA would count rows skipped (a resumed run's "already sent") as speed: ours is
# in the postfix, from the rate requests go out at.
_BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def estimate_rows(campaign: Campaign) -> int | None:
    """About how many rows the audience has (for the ETA); cheap, and never exact for CSV."""
    audience = campaign.audience
    if audience.customers is not None:
        return len(audience.customers)
    path: Path | None = audience.file
    if path is None or audience.format == "json" or not path.is_file():
        return None
    lines = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
    return max(lines - (1 if audience.format == "csv" else 0), 0)


class Progress:
    def __init__(self, runs: list[JobRun], *, quiet: bool, stream: IO[str] | None = None) -> None:
        self._jobs = [run.job for run in runs]
        self._stream = stream or sys.stderr
        self._quiet = quiet
        self._tty = self._stream.isatty()
        self._total = None
        if not quiet:  # the total only feeds the bar and the ETA; counting reads every file
            totals = [estimate_rows(job.campaign) for job in self._jobs]
            if all(t is not None for t in totals):
                self._total = sum(t for t in totals if t is not None)
        self._bar: Any = None
        self._started = time.monotonic()
        self._last_log = self._started
        self._recent: deque[tuple[float, int]] = deque()
        self._said_rate: int | None = None  # the lowered rate last said on its own line

    async def run(self) -> None:
        """Tick until cancelled."""
        if not self._quiet and self._tty:
            from tqdm import tqdm  # only a terminal pays for the bar

            self._bar = tqdm(
                total=self._total,
                unit="row",
                file=self._stream,
                dynamic_ncols=True,
                bar_format=_BAR if self._total else None,
            )
        try:
            while True:
                await asyncio.sleep(TICK)
                self.tick()
        finally:
            self.tick()
            if self._bar is not None:
                self._bar.close()

    def _counts(self) -> tuple[int, dict[str, int], int]:
        rows, requests = 0, 0
        counts = {"sent": 0, "failed": 0, "unsent": 0, "uncertain": 0, "invalid": 0, "skipped": 0}
        for job in self._jobs:
            tally = job.report.tally
            rows += sum(tally.counts.values())
            for key in counts:
                counts[key] += tally.counts.get(key, 0)
            requests += tally.requests
        return rows, counts, requests

    def eta(self, rows: int, requests: int, now: float) -> float | None:
        """Seconds left: the rows not yet handled at the rate requests went out lately (each
        needs one at least), not at the rate rows passed (skipped ones pass in a blink)."""
        self._recent.append((now, requests))
        while len(self._recent) > 2 and now - self._recent[0][0] > RECENT:
            self._recent.popleft()
        if not self._total or rows >= self._total:
            return None
        first_t, first_n = self._recent[0]
        span = now - first_t
        rate = (requests - first_n) / span if span > 0 else 0.0
        if rate <= 0:
            return None
        return (self._total - rows) / rate

    def tick(self) -> None:
        if self._quiet:
            return
        rows, counts, requests = self._counts()
        now = time.monotonic()
        elapsed = max(now - self._started, 1e-9)
        rps = requests / elapsed
        left = self.eta(rows, requests, now)
        eta = "" if left is None else f" ETA {_span(left)}"
        summary = (
            " ".join(f"{name} {n}" for name, n in counts.items() if n or name == "sent")
            + f" {rps:.1f}/s{eta}"
        )
        pushed = [job.pacer for job in self._jobs[:1] if job.pacer.rate < job.pacer.limit]
        note = (
            f"the API pushed back: sending at {pushed[0].rate:.0f}/s of {pushed[0].limit}/s"
            if pushed
            else None
        )
        if self._bar is not None:
            # The note gets a line of its own: in the postfix it would squeeze the bar at 80
            # columns. Said again only when the rate moves by a whole request a second.
            lowered = int(pushed[0].rate) if pushed else None
            if lowered != self._said_rate:
                self._said_rate = lowered
                if note:
                    self._bar.write(note, file=self._stream)
            self._bar.n = rows
            self._bar.set_postfix_str(summary, refresh=False)
            self._bar.refresh()
            return
        if now - self._last_log < LOG_EVERY:
            return
        self._last_log = now
        of = f"/{self._total}" if self._total else ""
        extra = f" ({note})" if note else ""
        print(f"progress: {rows}{of} rows, {summary}{extra}", file=self._stream, flush=True)


def _span(seconds: float) -> str:
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
