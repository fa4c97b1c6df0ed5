"""What a state database must do, and the records that cross that border.

A `Store` is a dumb client: it runs its own statements (write a batch of claims and outcomes,
lock a campaign, read counts, keep pauses and run history) and knows nothing of batching,
deadlines or what a status means. `runner.state.core` keeps the promise above it, once for
every store; `tests/state/test_contract.py` is the suite every store passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from runner.errors import LockHeld
from runner.status import Status

IN_FLIGHT_AT_STOP = "in flight when an earlier run stopped; its outcome is unknown"

# The columns of a recipient row, in the order every store reads and writes them.
COLUMNS = (
    "campaign",
    "recipient",
    "row",
    "status",
    "attempts",
    "http_status",
    "result",
    "error",
    "run_id",
    "first_at",
    "updated_at",
)


@dataclass(frozen=True)
class Prior:
    """What an earlier run left for a recipient."""

    status: Status
    attempts: int
    http_status: int | None
    result: str | None
    error: str | None


class Claim(NamedTuple):
    """A recipient about to be sent (a tuple: one is made per request)."""

    recipient: str
    row: int
    at: float


class Outcome(NamedTuple):
    """What became of a claimed recipient (a tuple: one is made per request)."""

    recipient: str
    status: Status
    attempts: int
    http_status: int | None
    result: str | None
    error: str | None
    at: float


@dataclass(frozen=True)
class Recipient:
    """A recipient as the state holds it (`status` lists those not delivered)."""

    recipient: str
    row: int | None
    status: Status
    attempts: int
    http_status: int | None
    result: str | None
    error: str | None
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "row": self.row,
            "status": str(self.status),
            "attempts": self.attempts,
            "http_status": self.http_status,
            "result": self.result,
            "error": self.error,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Control:
    """A person's word on a campaign: paused (until resumed) or cancelled (for good)."""

    action: str  # "paused" | "cancelled"
    actor: str
    at: float  # epoch seconds
    reason: str


@dataclass(frozen=True)
class Holder:
    """Who runs a campaign now."""

    host: str
    pid: int
    since: str


def key_schemes(runs: Iterable[RunRecord]) -> tuple[tuple[str, ...], ...]:
    """Each order of identifiers a campaign's runs keyed V2 recipients by (`recipient_key` in
    their facts; test sends apart, in a state of their own)."""
    return tuple(
        dict.fromkeys(
            tuple(run.facts["recipient_key"])
            for run in runs
            if run.mode != "test" and run.facts.get("recipient_key")
        )
    )


def held(campaign: str, holder: Holder | None, location: object) -> LockHeld:
    """The refusal when another run holds ``campaign``'s lock: one wording for every store
    (what was not done because of it, the caller adds)."""
    who = f"host {holder.host} pid {holder.pid} since {holder.since}" if holder else None
    return LockHeld(
        f"campaign {campaign} is already running ({who or 'another process'}) with state "
        f"{location}; wait for that run to finish"
    )


@dataclass(frozen=True)
class RunRecord:
    """One run of a campaign, as the history keeps it.

    ``facts`` holds what the lifecycle needs from the run's end: counts, how many rows it
    left (``remaining``), deferred recipients and when the next opens (``next_due``, epoch
    seconds), and the digests of the campaign file and its audience when it ran."""

    run_id: str
    started: float
    host: str
    pid: int
    actor: str
    mode: str = "run"
    finished: float | None = None
    exit_code: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)


class Priors(Protocol):
    """Look-ups of what earlier runs left, for one campaign."""

    has_history: bool
    #: V2: each order of identifiers the campaign's runs keyed recipients by
    schemes: tuple[tuple[str, ...], ...]

    def prior(self, recipient: str) -> Prior | None: ...

    def close(self) -> None: ...


class Store(Protocol):
    """One state database. Every method may raise `StateError` (unusable) or, during a run,
    `StateLost` (it stopped answering)."""

    location: Any  # runner.state.Location

    async def lock(self, campaign: str) -> None:
        """Take the campaign's lock for this process, or raise `LockHeld` saying who has it
        (the caller adds what it did not do)."""
        ...

    async def unlock(self, campaign: str) -> None: ...

    async def holder(self, campaign: str) -> Holder | None:
        """Who holds the campaign's lock now; None when no run holds it."""
        ...

    async def begin(self, campaign: str, run: RunRecord) -> None:
        """Under the lock: recover what a dead run left (its claims become uncertain) and
        enter ``run`` in the history."""
        ...

    async def write(
        self, campaign: str, run_id: str, claims: Sequence[Claim], outcomes: Sequence[Outcome]
    ) -> None:
        """Make a batch durable, all of it or none; outcomes of claims written earlier."""
        ...

    async def end(self, campaign: str, run: RunRecord) -> None:
        """Under the lock, after the last write: settle the run and its history entry."""
        ...

    async def update_run(self, campaign: str, run: RunRecord) -> None:
        """Rewrite a history entry (a run's progress, for `status` while it goes on)."""
        ...

    async def priors(self, campaign: str) -> Priors: ...

    async def counts(self, campaign: str) -> dict[Status, int]: ...

    async def undelivered(self, campaign: str, limit: int | None) -> list[Recipient]:
        """Recipients failed, unsent, uncertain or sending, by status then row."""
        ...

    async def campaigns(self) -> list[str]:
        """Every campaign the state knows: with recipients, runs or a control."""
        ...

    async def ran_from(self, source: str) -> list[str]:
        """The campaigns whose latest run came from the campaign file ``source``
        (`history.file_key`), the most recently run first: a file run under a new name
        is a new campaign to the state."""
        ...

    async def mentions(self, campaign: str) -> bool:
        """Whether the state holds anything of ``campaign`` (recipients, a run, a control):
        one cheap look, for a question asked of many states at once."""
        ...

    async def rows(self, campaign: str) -> list[tuple[Any, ...]]:
        """Every recipient row of ``campaign`` (`COLUMNS`), for a copy."""
        ...

    async def insert(self, rows: Sequence[tuple[Any, ...]], runs: Sequence[Any]) -> None:
        """Load rows (`COLUMNS`) and history (campaign, `RunRecord`) in one transaction."""
        ...

    async def runs(self, campaign: str, limit: int | None = None) -> list[RunRecord]:
        """The campaign's run history, newest first."""
        ...

    async def forget(self, campaign: str) -> None:
        """Drop everything the state holds of ``campaign`` (its history came back from where
        it had been moved: the copy there is the one that is true)."""
        ...

    async def control(self, campaign: str) -> Control | None: ...

    async def set_control(self, campaign: str, control: Control | None) -> None: ...

    async def lease_bots(self, bots: Sequence[str], say: Callable[[str], None]) -> None:
        """Hold each bot's lease while this process sends with it (a no-op where separate
        processes cannot share the state)."""
        ...

    def abandon(self) -> None:
        """Let go of everything as a killed process does: no last write, no fold."""
        ...

    async def close(self) -> None: ...


def run_values(campaign: str, run: RunRecord) -> tuple[Any, ...]:
    """A history entry as the columns every store writes: campaign, run_id, started,
    finished, host, pid, actor, mode, exit_code, facts as JSON text (`run_record` reads them
    back)."""
    import orjson

    return (
        campaign,
        run.run_id,
        run.started,
        run.finished,
        run.host,
        run.pid,
        run.actor,
        run.mode,
        run.exit_code,
        orjson.dumps(run.facts).decode(),
    )


def run_record(row: tuple[Any, ...]) -> RunRecord:
    """A history entry from its columns (run_id, started, finished, host, pid, actor, mode,
    exit_code, facts as JSON text)."""
    import orjson

    run_id, started, finished, host, pid, actor, mode, exit_code, facts = row
    return RunRecord(
        run_id=run_id,
        started=started,
        host=host,
        pid=pid,
        actor=actor,
        mode=mode,
        finished=finished,
        exit_code=exit_code,
        facts=orjson.loads(facts) if isinstance(facts, str | bytes) else dict(facts),
    )
