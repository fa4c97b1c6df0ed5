"""Many bots in one process: B campaigns, each on its own bot at R requests/s, in one `run`.

The server counts arrivals per bot and answers 429 past R in any one-second window. Goals:
every bot within its limit in every window (no 429), and the aggregate near B x R.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from common import campaign, postgres_database, server_process
from make_audience import write


def measure(bots: int, rate: int, per_bot: int, state: str) -> dict[str, float]:
    with contextlib.ExitStack() as stack:
        if state == "postgres":
            state = stack.enter_context(postgres_database("campaign_runner_multibot"))
        return _measure(bots, rate, per_bot, state)


def _measure(bots: int, rate: int, per_bot: int, state: str) -> dict[str, float]:
    with server_process(rate=rate) as server, tempfile.TemporaryDirectory() as tmp:
        base = write(
            Path(tmp), per_bot * 10 // 9 + 1, rate=rate, base_url=server.url, concurrency=rate
        )
        text = base.read_text()
        files = []
        for b in range(bots):
            path = Path(tmp) / f"bot{b:02d}.yaml"
            name = f"name: bench-{per_bot * 10 // 9 + 1}"
            path.write_text(
                text.replace(name, f"name: bot{b:02d}").replace(
                    'id: "6123abcd"', f'id: "bot{b:02d}"'
                )
            )
            files.append(str(path))
        done = campaign(
            ["run", *files, "--quiet", "--report", "reports", "--state", state], Path(tmp)
        )
        stats = server.stats()
        assert done.returncode in (0, 1), done.stderr + done.stdout
    span = stats["last"] - stats["first"]
    return {
        "bots": len(stats["per_bot_count"]),
        "requests": stats["count"],
        "aggregate": round((stats["count"] - 1) / span, 1),
        "worst_bot_window": max(stats["per_bot_max_window"].values()),
        "rejected_429": stats["status"].get("429", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bots", type=int, default=40)
    parser.add_argument("--rate", type=int, default=25)
    parser.add_argument("--per-bot", type=int, default=250)
    parser.add_argument(
        "--state",
        default="s.db",
        help="a SQLite file (default), a postgresql:// URL, or 'postgres' for a database of "
        "the benchmark's own on $CAMPAIGN_BENCH_POSTGRES",
    )
    args = parser.parse_args()
    got = measure(args.bots, args.rate, args.per_bot, args.state)
    backend = "PostgreSQL" if args.state.startswith("postgres") else "SQLite"
    print(
        f"multi-bot ({backend} state): {got['bots']} bots x {args.rate}/s: "
        f"{got['requests']} requests, aggregate "
        f"{got['aggregate']}/s (goal ~{args.bots * args.rate}), busiest bot window "
        f"{got['worst_bot_window']} (goal <= {args.rate}), 429s {got['rejected_429']}"
    )


if __name__ == "__main__":
    main()
