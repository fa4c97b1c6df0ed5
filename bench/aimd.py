"""Slowing down when the API pushes back: a campaign asking for more than the API allows.

The mock server (in a process of its own) allows R requests/s per bot and answers 429 with
Retry-After: 1 past that; the campaign asks for 4 x R. The pacer lowers the bot's rate on the
429s and climbs back. Measured at the server: how many 429s, how long from the first 429 until
the accepted rate stays within 10% of R (goal: under 30 s), the accepted rate over the rest of
the run, and that nobody ended unsent or failed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import campaign, server_process
from make_audience import write

WINDOW = 3  # seconds of the rolling accepted rate


def measure(rate: int, requests: int) -> dict[str, float | int | None]:
    with server_process(rate=rate) as server, tempfile.TemporaryDirectory() as tmp:
        rows = requests * 10 // 9 + 1
        path = write(Path(tmp), rows, rate=4 * rate, base_url=server.url, concurrency=4 * rate)
        done = campaign(
            ["run", str(path), "--quiet", "--report", "r", "--state", "s.db"], Path(tmp)
        )
        stats = server.stats(arrivals=True)
        summary = json.loads((Path(tmp) / "r" / "summary.json").read_text())
    assert done.returncode == 0, done.stderr + done.stdout
    arrivals = sorted(stats["arrivals"])
    start = arrivals[0][0]
    first_429 = next((t for t, status in arrivals if status == 429), None)
    accepted = [t - start for t, status in arrivals if status == 200]
    seconds = int(accepted[-1]) + 1
    per_second = [0] * seconds
    for t in accepted:
        per_second[int(t)] += 1
    recovered = None
    if first_429 is not None:
        since = int(first_429 - start)
        for second in range(since, seconds - WINDOW):
            if all(
                sum(per_second[s : s + WINDOW]) >= 0.9 * rate * WINDOW
                for s in range(second, seconds - WINDOW)
            ):
                recovered = second - since
                break
    settled = per_second[WINDOW:-1] or per_second
    return {
        "requests": len(accepted),
        "rejected_429": sum(1 for _, status in arrivals if status == 429),
        "recovered_after_s": recovered,
        "accepted_per_s": round(sum(settled) / len(settled), 1),
        "lowest_rate": summary.get("rate_lowest"),
        "unsent": summary["counts"]["unsent"],
        "failed": summary["counts"]["failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=25, help="what the API allows")
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    got = measure(args.rate, args.requests)
    print(
        f"aimd: API allows {args.rate}/s, campaign asks {4 * args.rate}/s: {got['requests']} "
        f"delivered, {got['rejected_429']} answers of 429, within 10% of the limit "
        f"{got['recovered_after_s']} s after the first 429 (goal < 30), accepted "
        f"{got['accepted_per_s']}/s, lowest rate {got['lowest_rate']}/s, unsent "
        f"{got['unsent']}, failed {got['failed']} (goal 0)"
    )


if __name__ == "__main__":
    main()
