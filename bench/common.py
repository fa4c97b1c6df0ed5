"""Shared pieces of the benchmarks: a mock server in a process of its own, and measurement.

The server runs in its own process (on its own core of a two-core machine) so that the client
under test and its baseline compete for the same resources; arrivals are timed at the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.mockserver import MockOptions, MockServer  # noqa: E402
from runner.pacing import busiest_window  # noqa: E402


def stats_of(server: MockServer) -> dict[str, Any]:
    arrivals = server.arrivals
    per_bot: dict[str, list[float]] = defaultdict(list)
    for a in arrivals:
        per_bot[a.bot].append(a.t)
    times = [a.t for a in arrivals]
    return {
        "count": len(arrivals),
        "first": min(times) if times else None,
        "last": max(times) if times else None,
        "status": dict(Counter(str(a.status) for a in arrivals)),
        "max_window": busiest_window(times) if times else 0,
        "per_bot_max_window": {bot: busiest_window(t) for bot, t in per_bot.items()},
        "per_bot_count": {bot: len(t) for bot, t in per_bot.items()},
    }


def _cores() -> tuple[set[int], set[int]]:
    """(the server's cores, the client's cores): apart when there are two or more."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(), set()
    if len(available) < 2:
        return set(), set()
    return {available[0]}, set(available[1:])


def pin(cores: set[int], pid: int = 0) -> None:
    """Keep a process on the given cores, so that runs compare on the same footing."""
    if cores:
        os.sched_setaffinity(pid, cores)


SERVER_CORES, CLIENT_CORES = _cores()


def serve(port: int, rate: int) -> None:
    """The server process: the mock, plus /_stats and /_reset for the benchmark driver."""

    async def main() -> None:
        server = MockServer(MockOptions(rate=rate, keep_params=False))
        app = server.app()

        async def stats(request: web.Request) -> web.Response:
            found = stats_of(server)
            if request.query.get("arrivals"):
                found["arrivals"] = [[a.t, a.status] for a in server.arrivals]
            return web.json_response(found)

        async def reset(_request: web.Request) -> web.Response:
            server.reset()
            return web.json_response({})

        app.router.add_get("/_stats", stats)
        app.router.add_post("/_reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        print(runner.addresses[-1][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class Server:
    def __init__(self, url: str) -> None:
        self.url = url

    def stats(self, arrivals: bool = False) -> dict[str, Any]:
        query = "?arrivals=1" if arrivals else ""
        with urllib.request.urlopen(f"{self.url}/_stats{query}", timeout=60) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def rate(self) -> float:
        """Requests/s from the first arrival to the last, every one answered 200."""
        stats = self.stats()
        assert stats["status"] == {"200": stats["count"]}, stats["status"]
        return float((stats["count"] - 1) / (stats["last"] - stats["first"]))

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/_reset", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=60).read()


@contextmanager
def server_process(rate: int = 0) -> Iterator[Server]:
    bench = str(ROOT / "bench")
    code = f"import sys; sys.path.insert(0, {bench!r}); import common; common.serve(0, {rate})"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pin(SERVER_CORES, process.pid)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(10)


def campaign(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A `campaign` process, on the client's cores."""
    env = {**os.environ, "BENCH_TOKEN": "bench-token"}
    return subprocess.run(
        [sys.executable, "-m", "runner", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=(lambda: pin(CLIENT_CORES)) if CLIENT_CORES else None,
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


POSTGRES = os.environ.get("CAMPAIGN_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A database of the benchmark's own on the PostgreSQL server, dropped at the end."""
    import asyncpg
    from yarl import URL

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES, timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name}"))
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield str(URL(POSTGRES).with_path(f"/{name}"))
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
