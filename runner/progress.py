"""Progress while a run goes: a live bar on a terminal, a plain line every few seconds in CI.

The report writer flushes its own lines; a `--quiet` run starts no progress at all.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import IO, Any

from runner.engine import JobRun
from runner.model import Campaign

TICK = 0.2  # seconds between bar refreshes
LOG_EVERY = 5.0  # seconds between plain lines without a terminal


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

    async def run(self) -> None:
        """Tick until cancelled."""
        if not self._quiet and self._tty:
            from tqdm import tqdm  # only a terminal pays for the bar

            self._bar = tqdm(
                total=self._total, unit="row", file=self._stream, dynamic_ncols=True, smoothing=0.1
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

    def tick(self) -> None:
        if self._quiet:
            return
        rows, counts, requests = self._counts()
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rps = requests / elapsed
        summary = (
            " ".join(f"{name} {n}" for name, n in counts.items() if n or name == "sent")
            + f" {rps:.1f} req/s"
            + "".join(
                f" (rate {job.pacer.rate:.1f}/{job.pacer.limit}: the API pushed back)"
                for job in self._jobs[:1]
                if job.pacer.rate < job.pacer.limit
            )
        )
        if self._bar is not None:
            self._bar.n = rows
            self._bar.set_postfix_str(summary, refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        if now - self._last_log < LOG_EVERY:
            return
        self._last_log = now
        of = f"/{self._total}" if self._total else ""
        eta = ""
        if self._total and rows:
            left = max(self._total - rows, 0) * elapsed / rows
            eta = f", ETA {left:.0f} s"
        print(f"progress: {rows}{of} rows, {summary}{eta}", file=self._stream, flush=True)
