"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from runner.mockserver import MockOptions, MockServer


def customers_csv(n: int, start: int = 1) -> str:
    lines = ["id,first_name"]
    lines += [f"{i},Name{i}" for i in range(start, start + n)]
    return "\n".join(lines) + "\n"


class ThreadedMock:
    """The mock server on a loop of its own, for tests that drive the synchronous CLI."""

    def __init__(self, options: MockOptions) -> None:
        self.server = MockServer(options)
        self.loop = asyncio.new_event_loop()
        self.url = ""
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.url = self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        started.wait(10)

    @property
    def arrivals(self) -> list[Any]:
        return self.server.arrivals

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def results(report_dir: Path) -> list[dict[str, Any]]:
    lines = (report_dir / "results.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: r["row"])


def summary(report_dir: Path) -> dict[str, Any]:
    return json.loads((report_dir / "summary.json").read_text())


def wait_for_arrivals(server: ThreadedMock, count: int, limit: float = 20) -> None:
    """Until the server has seen ``count`` requests (a run is under way)."""
    deadline = time.monotonic() + limit
    while len(server.arrivals) < count:
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.01)


def delivered(server: ThreadedMock) -> Counter[str]:
    """How many times each recipient got the message, as the server counted."""
    return Counter(a.recipient for a in server.arrivals if a.status == 200)


# The mock server stamps arrivals in a thread of the test process: on a machine busy with the
# whole suite a stamp can run late by more than the pacer's margin (pacing.WINDOW - 1 s), and a
# correctly paced request then seems to share a second with the one a window before it.
ARRIVAL_SLACK = 0.03  # seconds


def busiest_shared_second(times: list[float]) -> int:
    """The most arrivals within any second, less `ARRIVAL_SLACK`, for campaigns or processes
    that share a bot: the stamps' lateness is allowed for, while two of them sending at once
    still show as about twice the limit. (The handover between processes is tested exactly,
    at the store.)"""
    from runner.pacing import busiest_window

    return busiest_window(times, 1.0 - ARRIVAL_SLACK)


POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


async def open_run(location: Any, campaign: str, run_id: str) -> Any:
    """A run of either store, as `campaign run` opens one, with a store of its own."""
    from runner.secrets import Masker
    from runner.state.core import new_record, open_store
    from runner.state.core import open_run as open_campaign

    store = await open_store(location, Masker(location.passwords))
    try:
        return await open_campaign(store, campaign, new_record(run_id, "run"), owns=True)
    except BaseException:
        await store.close()
        raise
