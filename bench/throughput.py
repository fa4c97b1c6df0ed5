"""Engine throughput: `campaign run` with the limit lifted vs a bare aiohttp loop.

Both send the same V1 requests at the same concurrency to the same mock server (in a process
of its own); each rate is measured at the server from the first arrival to the last. The engine
runs as users run it: a `campaign run` process with its state and reports on (on uvloop, as
`campaign run` uses it where it is installed). They alternate, and the ratio of medians is
printed (goal: at least 0.8) against the bare loop on asyncio's own event loop, and, for
fairness, against the same bare loop on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson
import uvloop
from common import CLIENT_CORES, campaign, median, pin, server_process
from make_audience import write
from yarl import URL

BIG_RATE = 1_000_000


async def bare_loop(base: str, n: int, concurrency: int) -> None:
    urls = [
        URL(
            f"{base}/bots/6123abcd/users/{10**15 + i}/send?bot_token=bench-token"
            f"&block_name=Spring%20Sale&coupon=SPRING-{str(10**15 + i)[-4:]}"
            f"&greeting={quote('Hi An')}",
            encoded=True,
        )
        for i in range(n)
    ]
    headers = {"Content-Type": "application/json"}
    queue = iter(urls)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for url in queue:
                async with session.post(url, headers=headers) as response:
                    orjson.loads(await response.read())

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def measure(requests: int, concurrency: int, repeats: int) -> dict[str, float]:
    bare, bare_uv, engine = [], [], []
    with server_process(rate=0) as server, tempfile.TemporaryDirectory() as tmp:
        rows = requests * 10 // 9 + 1
        path = write(Path(tmp), rows, rate=BIG_RATE, base_url=server.url, concurrency=concurrency)
        sent = sum(1 for i in range(rows) if i % 10)
        for i in range(repeats):
            server.reset()
            pin(CLIENT_CORES)  # the bare loop runs here, where `campaign` runs
            asyncio.run(bare_loop(server.url, sent, concurrency))
            bare.append(server.rate())
            server.reset()
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(bare_loop(server.url, sent, concurrency))
            bare_uv.append(server.rate())
            server.reset()
            done = campaign(
                ["run", str(path), "--quiet", "--report", f"r{i}", "--state", f"s{i}.db"], Path(tmp)
            )
            assert done.returncode == 0, done.stderr + done.stdout
            engine.append(server.rate())
    return {
        "bare": round(median(bare)),
        "bare_uvloop": round(median(bare_uv)),
        "engine": round(median(engine)),
        "ratio": round(median(engine) / median(bare), 3),
        "ratio_uvloop": round(median(engine) / median(bare_uv), 3),
        "ratios": [round(e / b, 3) for e, b in zip(engine, bare, strict=True)],
    }  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    got = measure(args.requests, args.concurrency, args.repeats)
    print(
        f"throughput: campaign run {got['engine']}/s; bare aiohttp loop {got['bare']}/s on "
        f"asyncio's loop, {got['bare_uvloop']}/s on uvloop; ratio {got['ratio']} against the "
        f"bare loop (goal >= 0.8; per pair {got['ratios']}), {got['ratio_uvloop']} against "
        "the bare loop on uvloop"
    )


if __name__ == "__main__":
    main()
