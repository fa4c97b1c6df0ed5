"""Where a campaign stands, computed from its state, its file and the clock.

A campaign outlives any one process: windows, quiet hours, canaries and large audiences spread
it over several runs. Its standing is never stored; it is read off what is:

- ``cancelled`` / ``paused``: a person said so (kept in the state with who, when and why);
- ``moved``: `campaign state copy` copied its history to another state, which is the true one;
- ``running``: a run holds the campaign's lock (host, pid, since);
- ``closed``: ``schedule.not_after`` has passed;
- ``scheduled``: ``schedule.not_before`` is still ahead;
- ``new``: no run yet (a sweep runs it: everything in it is due);
- ``elsewhere``: new to this state, but another state this repository uses holds its history
  (or a pause): a run here refuses until it is moved;
- ``due``: something can be sent now: the campaign file or its audience changed since the
  last run (rows added), recipients are unsent, the last run left rows (a limit, a budget, a
  stop, a crash), or deferred recipients' hour has come;
- ``waiting``: nothing due now; deferred recipients open at a known time;
- ``done``: every row settled.
- ``blocked`` (told by `campaign status` of one campaign, which renders the audience; the
  standing here reads no rows): new or due, but too many rows are invalid, so a run refuses.

Failed and uncertain recipients are shown beside any standing: they wait for a person's
decision (`--retry-failed`, `--resend-uncertain`), never for a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner import inert
from runner import schedule as schedule_clock
from runner.campaign import file_digest
from runner.errors import CampaignError
from runner.model import Campaign
from runner.state.core import SHOWN
from runner.state.store import Control, Holder, RunRecord, Store
from runner.status import Status

RUNS_NOW = ("new", "due")  # the standings `run --due` runs


class CampaignStopped(CampaignError):
    """The campaign is paused or cancelled: a run refuses (exit 2)."""


def stopped_words(campaign: str, control: Control) -> str:
    when = datetime.fromtimestamp(control.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    then = {
        "paused": "; `campaign resume` makes it due again",
        "moved": "",  # its reason says where to run it
    }.get(control.action, "; a cancelled campaign never sends again under this name")
    # One line, whatever was stored: the words reach CI logs, where a newline could forge a
    # line of its own (a workflow command).
    who, why = (" ".join(inert.terminal(t).split()) for t in (control.actor, control.reason))
    return f"campaign {campaign} was {control.action} by {who} at {when}: {why}{then}"


async def refuse_if_stopped(store: Store, campaign: str) -> None:
    control = await store.control(campaign)
    if control is not None:
        raise CampaignStopped(f"{stopped_words(campaign, control)}. Nothing was sent")


def digests(campaign: Campaign) -> dict[str, str | None]:
    """What a run remembers of its inputs, to tell later whether rows were added."""
    audience = campaign.audience.file
    return {
        "campaign_sha256": file_digest(campaign.path),
        "audience_sha256": file_digest(audience) if audience and audience.is_file() else None,
    }


@dataclass(frozen=True)
class Standing:
    campaign: str
    file: str
    state: str  # the standing's word (module docstring)
    why: str  # one line for people
    location: str
    next_due: float | None = None  # epoch seconds: when something is due next
    counts: dict[str, int] = field(default_factory=dict)
    deferred: int = 0
    last_run: RunRecord | None = None
    control: Control | None = None
    holder: Holder | None = None
    attention: list[str] = field(default_factory=list)
    progress: str = ""  # how far the run under way has come ("40 sent so far")

    @property
    def runs_now(self) -> bool:
        return self.state in RUNS_NOW

    @property
    def told(self) -> str:
        """``why`` with the progress of the run under way, for `status`."""
        return f"{self.why}: {self.progress}" if self.progress else self.why

    def as_dict(self) -> dict[str, Any]:
        last = self.last_run
        return {
            "campaign": self.campaign,
            "file": self.file,
            "standing": self.state,
            "why": self.told,
            "state": self.location,
            "next_due": _iso(self.next_due),
            "counts": self.counts,
            "deferred": self.deferred,
            "last_run": None
            if last is None
            else {
                "run_id": last.run_id,
                "started": _iso(last.started),
                "finished": _iso(last.finished),
                "host": last.host,
                "actor": last.actor,
                "exit_code": last.exit_code,
            },
            "control": None
            if self.control is None
            else {
                "action": self.control.action,
                "actor": self.control.actor,
                "at": _iso(self.control.at),
                "reason": self.control.reason,
            },
            "running": None
            if self.holder is None
            else {"host": self.holder.host, "pid": self.holder.pid, "since": self.holder.since},
            "attention": self.attention,
        }


def run_dict(run: RunRecord) -> dict[str, Any]:
    """A history entry for people and JSON."""
    return {
        "run_id": run.run_id,
        "started": _iso(run.started),
        "finished": _iso(run.finished),
        "host": run.host,
        "pid": run.pid,
        "actor": run.actor,
        "mode": run.mode,
        "exit_code": run.exit_code,
        "counts": {k: v for k, v in (run.facts.get("counts") or {}).items() if v},
        "remaining": run.facts.get("remaining"),
        "deferred": run.facts.get("deferred"),
    }


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def when(t: float, zone: str | None = None) -> str:
    """A moment in UTC, and in ``zone`` too where the campaign has one time zone."""
    shown = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if zone and zone not in ("UTC", "Etc/UTC"):
        try:
            local = datetime.fromtimestamp(t, ZoneInfo(zone))
        except (ValueError, KeyError, ZoneInfoNotFoundError):
            return shown
        shown += f" ({local:%Y-%m-%d %H:%M} {zone})"
    return shown


def campaign_zone(campaign: Campaign) -> str | None:
    """The campaign's own time zone: ``schedule.timezone`` when it names one zone (not a
    template over the customer)."""
    zone = campaign.schedule.timezone
    return zone if zone and "{" not in zone else None


async def standing(store: Store, campaign: Campaign, now: float | None = None) -> Standing:
    """Where ``campaign`` stands in ``store`` at ``now`` (epoch seconds)."""
    now = schedule_clock.now().timestamp() if now is None else now
    name = campaign.name
    zone = campaign_zone(campaign)
    control = await store.control(name)
    holder = await store.holder(name)
    found = await store.counts(name)
    counts = {str(k): found.get(k, 0) for k in SHOWN}
    runs = [
        r for r in await store.runs(name, 20) if r.mode != "test"
    ]  # a rehearsal counts in its own state
    last = runs[0] if runs else None
    facts = last.facts if last else {}
    deferred = int(facts.get("deferred") or 0)
    next_due = facts.get("next_due")
    base = Standing(
        campaign=name,
        file=str(campaign.path),
        state="",
        why="",
        location=str(store.location),
        counts=counts,
        deferred=deferred,
        last_run=last,
        control=control,
        holder=holder,
        attention=_attention(counts, str(campaign.path)),
    )

    def made(state: str, why: str, next_due: float | None = None) -> Standing:
        return replace(base, state=state, why=why, next_due=next_due)

    schedule = campaign.schedule
    if control is not None:
        return made(control.action, stopped_words(name, control))
    if holder is not None:
        why = f"running on host {holder.host} (pid {holder.pid}) since {holder.since}"
        going = await store.runs(name, 1)
        progress = going[0].facts.get("progress") if going and going[0].finished is None else None
        shown = ", ".join(f"{n} {status}" for status, n in (progress or {}).items() if n)
        return replace(made("running", why), progress=f"{shown} so far" if shown else "")
    if schedule.not_after is not None and now >= schedule.not_after.timestamp():
        left = counts.get("unsent", 0) + deferred + int(facts.get("remaining") or 0)
        if last is None:
            why = f"the send window closed at {schedule.not_after.isoformat()} before any run"
        else:
            why = f"the send window closed at {schedule.not_after.isoformat()}; {left} never sent"
        return made("closed", why)
    if schedule.not_before is not None and now < schedule.not_before.timestamp():
        opens = schedule.not_before.timestamp()
        return made("scheduled", f"scheduled: opens at {when(opens, zone)}", opens)
    if last is None and not any(counts.values()):
        return made("new", "new: never run; due now", now)
    due = _due_because(campaign, last, counts, now)
    if due:
        return made("due", f"due: {due}", now)
    if deferred and next_due is not None:
        return made(
            "waiting", f"waiting: {deferred} deferred, next at {when(next_due, zone)}", next_due
        )
    return made("done", "done: every row settled")


def _due_because(
    campaign: Campaign, last: RunRecord | None, counts: dict[str, int], now: float
) -> str | None:
    if last is None:
        return "no run of it finished yet"
    facts = last.facts
    if last.finished is None:
        return "the last run did not finish (it was killed); the next run continues"
    if counts.get(str(Status.SENDING)):
        return "recipients were in flight when a run stopped"
    if digests(campaign) != {k: facts.get(k) for k in ("campaign_sha256", "audience_sha256")}:
        return "the campaign file or its audience changed since the last run"
    if counts.get(str(Status.UNSENT)):
        return f"{counts[str(Status.UNSENT)]} unsent"
    if facts.get("remaining"):
        return f"{facts['remaining']} left by the last run"
    next_due = facts.get("next_due")
    if facts.get("deferred") and next_due is not None and next_due <= now:
        return f"{facts['deferred']} deferred, whose hour has come"
    return None


def _attention(counts: dict[str, int], path: str) -> list[str]:
    notes = []
    failed = counts.get(str(Status.FAILED), 0)
    uncertain = counts.get(str(Status.UNCERTAIN), 0)
    if failed:
        notes.append(
            f"{failed} failed (the API said no): `campaign run {path} --retry-failed` sends "
            "them again; it helps only once what made them fail is fixed"
        )
    if uncertain:
        notes.append(
            f"{uncertain} uncertain (the API may have acted): `campaign run {path} "
            "--resend-uncertain` sends them again, and those the API did reach get the "
            "message twice"
        )
    return notes
