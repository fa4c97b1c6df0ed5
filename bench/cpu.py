"""Client CPU per request: `campaign run` (limit lifted, state and reports on) against a bare
aiohttp loop of the same concurrency on the same event loop (uvloop).

Each side runs as a process of its own, and its CPU (user + system, from the kernel's
accounting of the child) is taken at two sizes; the difference divided by the extra requests
is the marginal CPU of one request, free of start-up (imports, reading the campaign). Pairs
alternate; the ratio of medians is printed (goal: at most 1.15).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CLIENT_CORES, campaign, median, pin, server_process
from make_audience import write

BIG_RATE = 1_000_000
BARE = """
import asyncio, sys, uvloop, aiohttp, orjson
from urllib.parse import quote
from yarl import URL
base, n, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
urls = [URL(f"{base}/bots/6123abcd/users/{10**15 + i}/send?bot_token=bench-token"
            f"&block_name=Spring%20Sale&coupon=SPRING-{str(10**15 + i)[-4:]}"
            f"&greeting={quote('Hi An')}", encoded=True) for i in range(n)]
async def main():
    queue = iter(urls)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            for url in queue:
                async with session.post(url, headers={"Content-Type": "application/json"}) as r:
                    orjson.loads(await r.read())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(main())
"""


def cpu_of(run: object) -> float:
    """CPU seconds the children spent in ``run()``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run()  # type: ignore[operator]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(requests: int, concurrency: int, repeats: int) -> dict[str, object]:
    bare: list[float] = []
    engine: list[float] = []
    with server_process(rate=0) as server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sizes = (requests, 2 * requests)
        paths = {}
        for n in sizes:
            (folder / str(n)).mkdir()
            # make_audience skips one row in ten (a where:), so ask for 10/9 as many.
            paths[n] = write(
                folder / str(n),
                n * 10 // 9 + 1,
                rate=BIG_RATE,
                base_url=server.url,
                concurrency=concurrency,
            )
        for i in range(repeats):
            spent = {}
            for n in sizes:
                sent = sum(1 for k in range(n * 10 // 9 + 1) if k % 10)

                def bare_run(sent: int = sent) -> None:
                    subprocess.run(
                        [sys.executable, "-c", BARE, server.url, str(sent), str(concurrency)],
                        check=True,
                        preexec_fn=(lambda: pin(CLIENT_CORES)) if CLIENT_CORES else None,
                    )

                def engine_run(n: int = n, i: int = i) -> None:
                    done = campaign(
                        [
                            "run",
                            str(paths[n]),
                            "--quiet",
                            "--report",
                            f"r{i}-{n}",
                            "--state",
                            f"s{i}-{n}.db",
                        ],
                        folder,
                    )
                    assert done.returncode == 0, done.stderr

                spent[("bare", n)] = (cpu_of(bare_run), sent)
                spent[("engine", n)] = (cpu_of(engine_run), sent)
            for side, into in (("bare", bare), ("engine", engine)):
                (small, n1), (large, n2) = spent[(side, sizes[0])], spent[(side, sizes[1])]
                into.append((large - small) / (n2 - n1) * 1e6)
    return {
        "bare_us": round(median(bare), 1),
        "engine_us": round(median(engine), 1),
        "ratio": round(median(engine) / median(bare), 2),
        "ratios": [round(e / b, 2) for e, b in zip(engine, bare, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    got = measure(args.requests, args.concurrency, args.repeats)
    print(
        f"cpu per request: campaign run {got['engine_us']} µs, bare aiohttp loop on uvloop "
        f"{got['bare_us']} µs; ratio {got['ratio']} (goal <= 1.15; per pair {got['ratios']})"
    )


if __name__ == "__main__":
    main()
