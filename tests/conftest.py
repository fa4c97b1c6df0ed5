from __future__ import annotations

import asyncio
import json
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from runner.cli import cli
from runner.mockserver import MockOptions, MockServer

V1_CAMPAIGN = """\
version: 1
name: {name}
bot:
  api: v1
  id: "6123abcd"
  token: ${{TEST_TOKEN}}
  base_url: {base_url}
  rate_limit: {rate}
audience:
  file: customers.csv
message:
  user_id: "{{{{ customer.id }}}}"
  block_name: Spring Sale
  attributes:
    greeting: "Hi {{{{ customer.first_name | default('there') }}}}"
delivery:
  concurrency: {concurrency}
  timeout: {timeout}
  retries: {retries}
  max_consecutive_failures: {max_failures}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test works in its own folder (reports/ and .campaign-state/ land there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setenv("TEST_TOKEN", "s3cr3t-T0KEN")


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write("name.yaml", text) -> path, with the text dedented."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


def customers_csv(n: int, start: int = 1) -> str:
    lines = ["id,first_name"]
    lines += [f"{i},Name{i}" for i in range(start, start + n)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def v1_campaign(tmp_path: Path) -> Callable[..., Path]:
    """A V1 campaign with an N-row audience, pointed at ``base_url``."""

    def _make(
        base_url: str,
        rows: int = 5,
        *,
        name: str = "test-campaign",
        rate: int = 1000,
        concurrency: int = 5,
        timeout: float = 5,
        retries: int = 2,
        max_failures: int = 50,
    ) -> Path:
        (tmp_path / "customers.csv").write_text(customers_csv(rows), encoding="utf-8")
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            V1_CAMPAIGN.format(
                name=name,
                base_url=base_url,
                rate=rate,
                concurrency=concurrency,
                timeout=timeout,
                retries=retries,
                max_failures=max_failures,
            )
        )
        return path

    return _make


@pytest.fixture
def invoke() -> Callable[..., Result]:
    def _invoke(*args: str | Path) -> Result:
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return _invoke


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


@pytest.fixture
def mock() -> Iterator[Callable[..., ThreadedMock]]:
    servers: list[ThreadedMock] = []

    def _start(**options: Any) -> ThreadedMock:
        options.setdefault("rate", 0)
        server = ThreadedMock(MockOptions(**options))
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


def results(report_dir: Path) -> list[dict[str, Any]]:
    lines = (report_dir / "results.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: r["row"])


def summary(report_dir: Path) -> dict[str, Any]:
    return json.loads((report_dir / "summary.json").read_text())
