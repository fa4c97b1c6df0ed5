"""Pacing: N requests at rate_limit R against a strict server (429 past R in any second).

Prints the largest number of arrivals in any one-second window at the server (goal: R, never
more) and the sustained rate from first to last arrival (goal: at least 97% of R).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import campaign, server_process
from make_audience import write


def measure(requests: int, rate: int) -> dict[str, float]:
    with server_process(rate=rate) as server, tempfile.TemporaryDirectory() as tmp:
        path = write(
            Path(tmp), requests * 10 // 9 + 1, rate=rate, base_url=server.url, concurrency=rate
        )
        done = campaign(
            ["run", str(path), "--quiet", "--report", "report", "--state", "s.db"], Path(tmp)
        )
        assert done.returncode == 0, done.stderr
        stats = server.stats()
    sustained = (stats["count"] - 1) / (stats["last"] - stats["first"])
    return {
        "requests": stats["count"],
        "max_in_1s": stats["max_window"],
        "sustained": round(sustained, 2),
        "rejected_429": stats["status"].get("429", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=25)
    args = parser.parse_args()
    got = measure(args.requests, args.rate)
    print(
        f"pacing: {got['requests']} requests at rate_limit {args.rate}: "
        f"max {got['max_in_1s']} in any 1 s window (goal <= {args.rate}), "
        f"sustained {got['sustained']}/s (goal >= {args.rate * 0.97:.2f}), "
        f"429s {got['rejected_429']}"
    )


if __name__ == "__main__":
    main()
