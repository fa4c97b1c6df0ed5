"""Durable run state: who was sent, who failed, who is uncertain; one run at a time.

Two backends keep one promise: a recipient's claim is durable before its request leaves, so
after a crash nobody is sent twice (what was in flight becomes ``uncertain``); one run per
campaign at a time; a dead process never leaves a lock behind.

- `runner.state.sqlite`: a file, by default ``.campaign-state/<name>.sqlite3`` at the root of
  the git repository that holds the campaign (beside the file outside a repository), so that
  the same campaign reached from any folder finds the same state.
- `runner.state.postgres`: a ``postgresql://`` URL, for CI runners and teams; its locks are
  advisory locks that die with the connection, and a per-bot lease keeps a bot's limit across
  processes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from yarl import URL

from runner import repository
from runner.status import Status

ENVIRONMENT = "CAMPAIGN_STATE"
IN_FLIGHT_AT_STOP = "in flight when an earlier run stopped; its outcome is unknown"


@dataclass(frozen=True)
class Prior:
    """What an earlier run left for a recipient."""

    status: Status
    attempts: int
    http_status: int | None
    result: str | None
    error: str | None


@dataclass(frozen=True)
class Location:
    """Where a campaign's state lives: a SQLite file or a PostgreSQL URL."""

    path: Path | None = None
    url: str | None = None

    def __str__(self) -> str:
        if self.url is None:
            return str(self.path)
        url = URL(self.url)
        return str(url.with_password("***")) if url.password else self.url

    @property
    def password(self) -> str | None:
        return URL(self.url).password if self.url else None


def is_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def locate(
    given: str | None, campaign_file: Path, name: str, sandbox: bool, test: bool = False
) -> Location:
    """The state of campaign ``name``: ``--state``, else ``$CAMPAIGN_STATE``, else the file at
    the campaign's repository root. A rehearsal's (``sandbox``) or a test send's (``test``)
    state always stands apart, in a local file, so that neither ever marks a recipient of the
    broadcast as delivered."""
    apart = "sandbox" if sandbox else "test" if test else None
    if given is None:
        given = os.environ.get(ENVIRONMENT) or None
    if given is not None and not is_url(given):
        path = Path(given)
        if apart:
            path = path.with_name(f"{path.stem}.{apart}{path.suffix or '.sqlite3'}")
        return Location(path=path)
    if given is not None and not apart:
        return Location(url=given)
    suffix = f".{apart}.sqlite3" if apart else ".sqlite3"
    return Location(path=repository.root(campaign_file) / ".campaign-state" / f"{name}{suffix}")


class Reader(Protocol):
    """Read-only look-ups of an earlier run's outcomes (for `plan` and `run`)."""

    has_history: bool

    def prior(self, recipient: str) -> Prior | None: ...


class RunState(Reader, Protocol):
    """The state of one campaign during one run, as the engine uses it."""

    location: Location

    def claim(self, recipient: str, row: int) -> Awaitable[None]:
        """Done once ``recipient`` is durably claimed; raises `StateLost` if it cannot be."""
        ...

    def record(
        self,
        recipient: str,
        status: Status,
        attempts: int,
        http_status: int | None,
        result: str | None,
        error: str | None,
    ) -> None:
        """Queue an outcome; it is written with the next batch of claims."""
        ...

    async def close(self) -> None: ...


def open_reader(location: Location, campaign: str) -> Any:
    """A `Reader` with ``close()``; what an earlier run left, never changing it."""
    if location.url is not None:
        from runner.state import postgres

        return postgres.read(location, campaign)
    from runner.state import sqlite

    assert location.path is not None
    return sqlite.Snapshot(location.path, campaign)


async def read_status(location: Location, campaign: str, limit: int = -1) -> dict[str, Any]:
    """Counts per status and the recipients who did not get the message (at most ``limit``
    of them; all when negative)."""
    if location.url is not None:
        from runner.state import postgres

        return await postgres.read_status(location, campaign, limit)
    from runner.state import sqlite

    assert location.path is not None
    return sqlite.status_report(location.path, campaign, limit)


def status_report(location: Location, campaign: str, limit: int = -1) -> dict[str, Any]:
    """`read_status` outside an event loop."""
    return asyncio.run(read_status(location, campaign, limit))
