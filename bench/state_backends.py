"""State backends side by side: `campaign run` with the limit lifted, SQLite state vs PostgreSQL.

Both runs send the same audience to the same mock server (in a process of its own); each rate
is measured at the server from the first arrival to the last. They alternate, and the ratio of
medians is printed (goal: PostgreSQL at least 0.8 of the rate of SQLite). Each PostgreSQL run
claims its recipients in a database of the benchmark's own (dropped at the end), batched per
turn of the event loop, so the ratio shows what a round trip per batch costs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import campaign, median, postgres_database, server_process
from make_audience import write

BIG_RATE = 1_000_000


def measure(requests: int, concurrency: int, repeats: int) -> dict[str, object]:
    sqlite: list[float] = []
    postgres: list[float] = []
    with (
        postgres_database("campaign_runner_bench") as url,
        server_process(rate=0) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        rows = requests * 10 // 9 + 1
        path = write(Path(tmp), rows, rate=BIG_RATE, base_url=server.url, concurrency=concurrency)
        text = path.read_text()
        for i in range(repeats):
            for kind, state, rates in (("sqlite", f"s{i}.db", sqlite), ("postgres", url, postgres)):
                # A campaign name per run, so every run starts with an empty history.
                run_file = Path(tmp) / f"{kind}{i}.yaml"
                run_file.write_text(text.replace("name: bench-", f"name: {kind}{i}-"))
                server.reset()
                args = ["run", str(run_file), "--quiet", "--report", f"r-{kind}{i}"]
                done = campaign([*args, "--state", state], Path(tmp))
                assert done.returncode == 0, done.stderr + done.stdout
                rates.append(server.rate())
    return {
        "sqlite": round(median(sqlite)),
        "postgres": round(median(postgres)),
        "ratio": round(median(postgres) / median(sqlite), 3),
        "ratios": [round(p / s, 3) for p, s in zip(postgres, sqlite, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    got = measure(args.requests, args.concurrency, args.repeats)
    print(
        f"state backends: campaign run with SQLite state {got['sqlite']}/s, with PostgreSQL "
        f"state {got['postgres']}/s; ratio {got['ratio']} (goal >= 0.8; per pair "
        f"{got['ratios']})"
    )


if __name__ == "__main__":
    main()
