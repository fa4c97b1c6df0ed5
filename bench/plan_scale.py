"""`campaign plan` at scale: rows/s and peak RSS over 50k / 200k / 1M-row CSV audiences.

Each size runs in a fresh `campaign plan` process; rows/s comes from the plan's own timing
(summary.json: reading, rendering, building and writing every row, start-up excluded) and the
peak RSS from the kernel's accounting of the child. Goals: at least 75,000 rows/s, at most
150 MB peak, and under 20 MB growth from 50k to 200k rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import median
from make_audience import write

DATA = Path(__file__).parent / "data"


def plan_once(path: Path, report: Path) -> tuple[float, float, float]:
    """(rows/s, peak RSS in MB, wall seconds) of one `campaign plan` process."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "plan",
            str(path),
            "--report",
            str(report),
            "--output",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, _, rusage = os.wait4(process.pid, 0)
    assert process.stdout is not None
    summary = json.loads(process.stdout.read())["summary"]
    rows = summary["rows"]
    return rows / summary["duration_s"], rusage.ru_maxrss / 1024, 0.0


def measure(sizes: list[int], repeats: int) -> list[dict[str, float]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            campaign = write(DATA, size)
            runs = [plan_once(campaign, Path(tmp) / f"r{size}-{i}") for i in range(repeats)]
            out.append(
                {
                    "rows": size,
                    "rows_per_s": round(median([r[0] for r in runs])),
                    "peak_rss_mb": round(max(r[1] for r in runs), 1),
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="50000,200000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = measure([int(s) for s in args.sizes.split(",")], args.repeats)
    for r in results:
        print(
            f"plan: {r['rows']:>9} rows: {r['rows_per_s']:>7} rows/s, peak RSS "
            f"{r['peak_rss_mb']} MB (goals >= 75000 rows/s, <= 150 MB)"
        )
    if len(results) >= 2:
        growth = results[1]["peak_rss_mb"] - results[0]["peak_rss_mb"]
        print(
            f"plan: RSS growth {results[0]['rows']} -> {results[1]['rows']} rows: "
            f"{growth:.1f} MB (goal <= 20 MB)"
        )


if __name__ == "__main__":
    main()
