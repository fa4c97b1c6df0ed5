"""Progress for a person: an ETA from the sending rate, and a bar that stays readable."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace
from typing import Any

from runner.progress import Progress
from runner.tally import Tally


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress(total: int, stream: Any = None) -> tuple[Progress, Tally, Any]:
    tally = Tally()
    job = SimpleNamespace(
        report=SimpleNamespace(tally=tally),
        pacer=SimpleNamespace(rate=25.0, limit=25),
        campaign=SimpleNamespace(audience=SimpleNamespace(customers=[{}] * total)),
    )
    runs: Any = [SimpleNamespace(job=job)]
    return Progress(runs, quiet=False, stream=stream or io.StringIO()), tally, job


def test_the_eta_of_a_resumed_run_counts_what_is_left_to_send_not_what_was_skipped() -> None:
    shown, _, _ = progress(1000)
    # A resumed run skipped 900 delivered rows in its first second, then sends 10 a second.
    assert shown.eta(900, 0, 100.0) is None  # nothing sent yet: no rate to tell
    assert shown.eta(910, 10, 101.0) == 90 / 10
    assert shown.eta(920, 20, 102.0) == 80 / 10  # not 80 rows at 460 rows/s


async def test_a_pushed_back_rate_is_said_on_a_line_of_its_own() -> None:
    stream = Terminal()
    shown, tally, job = progress(100, stream)
    job.pacer.rate = 12.4
    tally.counts["sent"] = 5
    ticking = asyncio.ensure_future(shown.run())
    await asyncio.sleep(0.7)  # a few ticks
    ticking.cancel()
    await asyncio.gather(ticking, return_exceptions=True)
    text = stream.getvalue()
    assert text.count("the API pushed back: sending at 12/s of 25/s") == 1
    assert "pushed back" not in text.split("\n")[-1]  # not squeezed into the bar's line
