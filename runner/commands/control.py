"""`campaign pause`, `resume` and `cancel`: the emergency stop, kept in the state.

A pause is a row in the state with who, when and why. Every run of that campaign sharing the
state looks for one every second and stops starting requests when it appears (exit 3); a run
that starts later refuses (exit 2); `run --due` passes it over. `resume` makes it due again;
`cancel` is final for that name.

An emergency stop does as much as it can and says what it could not: every target is acted on
in turn (a cancelled campaign is left as it is, a file that cannot be read is named), and the
command exits 2 at the end when any target failed. It works when the campaign file does not: a
file that no longer validates is paused by the ``name:`` it declares, and a bare campaign name
works too, but only one the state knows (a typo must not "pause" a state nobody reads).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runner import campaign as campaigns
from runner import inert, lifecycle, repository, state
from runner.errors import CampaignError, InvalidCampaign, UsageError
from runner.schema import name_pattern
from runner.secrets import Masker
from runner.state import ENVIRONMENT, Location
from runner.state.copy import MOVED, moved_where
from runner.state.core import actor, open_store
from runner.state.store import Control, Store


@dataclass(frozen=True)
class Target:
    name: str
    location: Location
    named: bool = False  # given as a bare name: the state must know it


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 2 if self.failed else 0


def targets_of(
    given: list[str], state_given: str | None, every: bool
) -> tuple[list[Target], list[str]]:
    """The campaigns named by files, folders, globs or bare names (or every campaign of the
    state, ``every``), each with the state it lives in; and what could not be read."""
    if every:
        return asyncio.run(_every(state_given)), []
    found: list[Target] = []
    problems: list[str] = []
    for text in given:
        if not text.strip():  # "" is the working folder to a path: never a target by accident
            problems.append("an empty target names no campaign")
            continue
        if _looks_like_files(text):
            try:
                paths = campaigns.expand([text])
            except UsageError as exc:  # said, and the other targets still stopped
                problems.append(str(exc))
                continue
            for path in paths:
                try:
                    name = _name_of(path)
                except UsageError as exc:
                    problems.append(str(exc))
                    continue
                found.append(Target(name, state.locate(state_given, path, name, False)))
        elif name_pattern().fullmatch(text):
            found.append(Target(text, _location_for_name(text, state_given), named=True))
        else:
            shown = inert.terminal(text[:60]) + ("…" if len(text) > 60 else "")
            problems.append(
                f"{shown!r}: not a campaign file, folder or name (a name is a slug: "
                "lowercase letters, digits, '-' and '_')"
            )
    return found, problems


def _looks_like_files(text: str) -> bool:
    if any(c in text for c in "*?[/") or text.endswith((".yaml", ".yml")):
        return True
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # a name too long for a path, a NUL
        return False


def _name_of(path: Path) -> str:
    """The campaign's name: from the validated file, else from its ``name:`` alone."""
    try:
        return campaigns.load(path, outside_repo=True).name
    except InvalidCampaign:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            data = None
        name = data.get("name") if isinstance(data, dict) else _name_line(path)
        if not isinstance(name, str) or not name_pattern().fullmatch(name):
            raise UsageError(f"{path}: no campaign name can be read from this file") from None
        return name


def _name_line(path: Path) -> str | None:
    """The ``name:`` of a file that is not YAML any more (a bracket left open below it)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # The value alone; whether it is a name at all is the schema's to say (`_name_of`).
    found = re.search(r"(?m)^name:\s*[\"']?([^\s\"'#]+)[\"']?\s*(#.*)?$", text)
    return found.group(1) if found else None


def _chosen(given: str | None) -> str | None:
    return given or os.environ.get(ENVIRONMENT) or None


def _location_for_name(name: str, given: str | None) -> Location:
    chosen = _chosen(given)
    if chosen is not None:
        return state.location(chosen)
    root = repository.root(Path.cwd() / "campaign.yaml")
    return Location(path=root / ".campaign-state" / f"{name}.sqlite3")


async def _every(given: str | None) -> list[Target]:
    chosen = _chosen(given)
    if chosen is not None:
        locations = [state.location(chosen)]
    else:
        folder = repository.root(Path.cwd() / "campaign.yaml") / ".campaign-state"
        locations = state.state_files(folder)
    found = []
    for location in locations:
        store = await open_store(location, Masker(location.passwords), readonly=True)
        try:
            found += [Target(name, location) for name in await store.campaigns()]
        finally:
            await store.close()
    if not found:
        raise UsageError("pause --all: no campaign in the state; nothing was paused")
    return found


def apply(
    targets: list[Target], action: str | None, reason: str | None, problems: list[str]
) -> Outcome:
    """Pause (``action`` "paused"), cancel ("cancelled") or resume (None) each target."""
    outcome = Outcome(failed=list(problems))
    if not targets and not problems:
        outcome.failed.append("no campaign matched: nothing was changed")
    if reason is not None:  # one line, whatever was typed: it is shown in logs and refusals
        reason = " ".join(inert.terminal(reason).split())
    asyncio.run(_apply(targets, action, reason, outcome))
    return outcome


async def _apply(
    targets: list[Target], action: str | None, reason: str | None, outcome: Outcome
) -> None:
    for target in targets:
        path = target.location.path
        if target.named and path is not None and not path.is_file():
            outcome.failed.append(
                f"{target.name}: no state at {path} knows a campaign of this name; nothing was "
                "changed. Give the campaign file, or the state with --state"
            )
            continue
        try:
            store = await open_store(target.location, Masker(target.location.passwords))
        except CampaignError as exc:
            outcome.failed.append(f"{target.name}: {exc}")
            continue
        try:
            await _one(store, target, action, reason, outcome)
        except CampaignError as exc:
            outcome.failed.append(f"{target.name}: {exc}")
        finally:
            await store.close()


async def _one(
    s: Store, target: Target, action: str | None, reason: str | None, outcome: Outcome
) -> None:
    name, where = target.name, target.location
    before = await s.control(name)
    if target.named and before is None and not await s.runs(name, 1) and not await s.counts(name):
        known = ", ".join(await s.campaigns()) or "none"
        outcome.failed.append(
            f"{name}: the state {where} knows no campaign of this name (it knows: {known}); "
            "nothing was changed. Give the campaign file, or the state with --state"
        )
        return
    if before is not None and before.action == "cancelled":
        words = lifecycle.stopped_words(name, before)
        if action == "cancelled":
            outcome.lines.append(f"{name}: already cancelled; nothing was changed ({words})")
        elif action == "paused":
            outcome.lines.append(f"{name}: cancelled already, which is final: left as it is")
        else:
            outcome.failed.append(f"{words}. Nothing was changed")
        return
    if before is not None and before.action == MOVED:
        words = lifecycle.stopped_words(name, before)
        if action is None:
            outcome.failed.append(
                f"{words}. Resuming it here would send again those the other state reached: "
                "run it with that state, or copy it back with campaign state copy. Nothing "
                "was changed"
            )
        else:  # an emergency stop here would stop nothing: its runs use the other state
            verb = {"paused": "pause", "cancelled": "cancel"}[action]
            there = moved_where(before)
            state_option = shlex.quote(str(there)) if there is not None else "<that state>"
            outcome.failed.append(
                f"{name}: NOT {action.upper()}: its runs use the state it was moved to, not "
                f"{where} ({words}). {verb.capitalize()} it there: campaign {verb} {name} "
                f"--state {state_option} --reason ... Nothing was changed here"
            )
        return
    if action is None:
        if before is None:
            outcome.lines.append(f"{name}: not paused; nothing to resume ({where})")
            return
        await s.set_control(name, None)
        outcome.lines.append(f"{name}: resumed ({where}); it is due again at the next run or sweep")
        return
    if action == "paused" and before is not None:
        words = lifecycle.stopped_words(name, before)
        outcome.lines.append(f"{name}: already paused; kept as it was ({words})")
        return
    assert reason is not None
    control = Control(action, actor(), time.time(), reason)
    await s.set_control(name, control)
    outcome.lines.append(
        f"{name}: {action} by {control.actor} ({where}); every run sharing this state "
        "stops starting requests within 2 s"
    )
