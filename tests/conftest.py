from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from yarl import URL

from runner.cli import main
from runner.mockserver import MockOptions
from runner.state import Location
from tests.helpers import POSTGRES, ThreadedMock, customers_csv

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


def _server() -> str:
    return os.environ.get("CAMPAIGN_TEST_POSTGRES", POSTGRES)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of the tests' own on the PostgreSQL server, dropped at the end. Without a
    server the tests that need it skip, saying why; under CI (``CI`` set) they fail."""
    import asyncpg

    server = _server()
    name = f"campaign_runner_test_{os.getpid()}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(server, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    try:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name}"))
        asyncio.run(admin(f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"no PostgreSQL server answers at {server} ({exc}); set CAMPAIGN_TEST_POSTGRES"
        if os.environ.get("CI"):
            pytest.fail(message + ": PostgreSQL tests are required in CI")
        pytest.skip(message)
    yield str(URL(server).with_path(f"/{name}"))
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The tests' database, emptied before each test."""
    import asyncpg

    async def empty() -> None:
        connection = await asyncpg.connect(postgres_database, timeout=5)
        try:
            await connection.execute(
                "DROP TABLE IF EXISTS campaign_runner_recipients, campaign_runner_locks, "
                "campaign_runner_bots, campaign_runner_schema, campaign_runner_runs, "
                "campaign_runner_controls"
            )
        finally:
            await connection.close()

    asyncio.run(empty())
    return postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def state_args(request: pytest.FixtureRequest) -> list[str]:
    """The command line's state of each backend: the default file, or ``--state`` a
    PostgreSQL database."""
    if request.param == "sqlite":
        return []
    return ["--state", request.getfixturevalue("postgres_url")]


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """A state location of each backend."""
    if request.param == "sqlite":
        return Location(path=tmp_path / "s.sqlite3")
    return Location(url=request.getfixturevalue("postgres_url"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test works in its own folder (reports/ and .campaign-state/ land there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    # Values an earlier test read from the environment are masked in every later one's
    # output otherwise (the registry lives as long as the process).
    monkeypatch.setattr("runner.secrets._RESOLVED", set())
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
    """The command line as a user runs it: through `runner.cli.main`, the one exit boundary."""

    def _invoke(*args: str | Path) -> Result:
        runner = CliRunner()
        with runner.isolation() as (out, err, combined):
            code = main([str(a) for a in args])
        return Result(
            runner=runner,
            stdout_bytes=out.getvalue(),
            stderr_bytes=err.getvalue(),
            output_bytes=combined.getvalue(),
            return_value=code,
            exit_code=code,
            exception=None,
        )

    return _invoke


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
