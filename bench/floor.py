"""The per-request work `campaign run` cannot skip, each piece timed alone in this process.

`cpu.py` measures the whole of a request against a bare aiohttp loop; this says how much of
the difference is work the contract asks for (read the row, render and build it, check it
before anything is locked, claim it durably, classify the answer, record it, write its report
line) and so how close to the bare loop a run can come. Medians of several repeats, in µs per
request.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import common  # noqa: F401 - puts the project on sys.path
from make_audience import write

from runner import campaign as campaigns
from runner import outcome, pipeline
from runner.report import ReportWriter, line
from runner.secrets import MASK
from runner.state import journal
from runner.state.sqlite import connect, fold
from runner.status import Status

ANSWER = b'{"success": true, "result": "Message has been sent"}'


def median_of(work: Callable[[], float], repeats: int) -> float:
    """The median of what ``work`` measured (µs per request) over ``repeats`` runs."""
    return statistics.median(work() for _ in range(repeats))


def timed(work: Callable[[], None], n: int) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) / n * 1e6


def measure(rows: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        campaign = campaigns.load(write(folder, rows))
        target = pipeline.endpoint(campaign, strict=False, token=MASK)
        items = [i for i in pipeline.prepare(campaign, target) if isinstance(i, pipeline.Prepared)]
        n = len(items)

        def prepare() -> float:
            return timed(lambda: collections.deque(pipeline.prepare(campaign, target), 0), n)

        def claims_and_outcomes() -> float:
            writer = journal.Writer(folder / f"j{time.monotonic_ns()}", "run")
            now = time.time()

            def work() -> None:
                for start in range(0, n, 10):  # a batch a turn of the loop, as a run makes
                    for item in items[start : start + 10]:
                        writer.add([journal.CLAIM, item.recipient, item.row, now])
                        writer.add([journal.OUTCOME, item.recipient, "sent", 1, 200, "", None, now])
                    writer.write()

            spent = timed(work, n)
            writer.close()
            return spent

        def folding() -> float:
            state = folder / f"s{time.monotonic_ns()}.sqlite3"
            db = connect(state)
            writer = journal.Writer(journal.path_for(state, "c"), "run")
            now = time.time()
            for item in items:
                writer.add([journal.CLAIM, item.recipient, item.row, now])
                writer.add([journal.OUTCOME, item.recipient, "sent", 1, 200, "ok", None, now])
            writer.close()
            spent = timed(lambda: fold(db, "c", journal.path_for(state, "c")), n)
            db.close()
            return spent

        def classify() -> float:
            return timed(lambda: [outcome.from_response(200, ANSWER) for _ in range(n)], n)

        def report() -> float:
            writer = ReportWriter(folder / f"r{time.monotonic_ns()}")

            def work() -> None:
                for item in items:
                    writer.write(
                        line(item.row, item.recipient, Status.SENT, http_status=200, attempts=1),
                        record=item.record,
                    )
                    writer.attempted(200, 0.0, "sent", 25.0)

            spent = timed(work, n)
            writer.close()
            return spent

        got = {
            "read, render and build (the sending pass)": median_of(prepare, repeats),
            "the same again (the check before anything is locked)": median_of(prepare, repeats),
            "claim and outcome in the journal": median_of(claims_and_outcomes, repeats),
            "fold the journal into the state": median_of(folding, repeats),
            "classify the answer": median_of(classify, repeats),
            "report line and tally": median_of(report, repeats),
        }
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    got = measure(args.rows, args.repeats)
    for what, us in got.items():
        print(f"floor: {what}: {us:.2f} µs")
    print(f"floor: in all {sum(got.values()):.1f} µs of work a request needs besides its HTTP")


if __name__ == "__main__":
    main()
