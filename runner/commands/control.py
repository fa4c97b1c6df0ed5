"""`campaign pause`, `resume` and `cancel`: the emergency stop, kept in the state.

A pause is a row in the state with who, when and why. Every run of that campaign sharing the
state looks for one every second and stops starting requests when it appears (exit 3); a run
that starts later refuses (exit 2); `run --due` passes it over. `resume` makes it due again;
`cancel` is final for that name.

An emergency stop must work when the campaign file does not: a file that no longer validates
is still paused by the ``name:`` it declares, and a bare campaign name works too.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner import campaign as campaigns
from runner import lifecycle, repository, state
from runner.errors import InvalidCampaign, UsageError
from runner.secrets import Masker
from runner.state import ENVIRONMENT, Location
from runner.state.core import actor, open_store
from runner.state.store import Control

_APART = (".sandbox.sqlite3", ".test.sqlite3")


@dataclass(frozen=True)
class Target:
    name: str
    location: Location


def targets_of(given: list[str], state_given: str | None, every: bool) -> list[Target]:
    """The campaigns named by files, folders, globs or bare names (or every campaign of the
    state, ``every``), each with the state it lives in."""
    if every:
        return asyncio.run(_every(state_given))
    found: list[Target] = []
    for text in given:
        if _looks_like_files(text):
            for path in campaigns.expand([text]):
                name = _name_of(path)
                found.append(Target(name, state.locate(state_given, path, name, False)))
        else:
            found.append(Target(text, _location_for_name(text, state_given)))
    return found


def _looks_like_files(text: str) -> bool:
    return any(c in text for c in "*?[") or Path(text).exists() or text.endswith((".yaml", ".yml"))


def _name_of(path: Path) -> str:
    """The campaign's name: from the validated file, else from its ``name:`` alone."""
    try:
        return campaigns.load(path, outside_repo=True).name
    except InvalidCampaign:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            data = None
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            raise UsageError(f"{path}: no campaign name can be read from this file") from None
        return name


def _location_for_name(name: str, given: str | None) -> Location:
    chosen = given or os.environ.get(ENVIRONMENT) or None
    if chosen is not None:
        return state.location(chosen)
    root = repository.root(Path.cwd() / "campaign.yaml")
    return Location(path=root / ".campaign-state" / f"{name}.sqlite3")


async def _every(given: str | None) -> list[Target]:
    chosen = given or os.environ.get(ENVIRONMENT) or None
    if chosen is not None:
        locations = [state.location(chosen)]
    else:
        folder = repository.root(Path.cwd() / "campaign.yaml") / ".campaign-state"
        locations = [
            Location(path=p)
            for p in sorted(folder.glob("*.sqlite3"))
            if not p.name.endswith(_APART)
        ]
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


def apply(targets: list[Target], action: str | None, reason: str | None) -> list[str]:
    """Pause (``action`` "paused"), cancel ("cancelled") or resume (None) each target; one
    line each for people."""
    return asyncio.run(_apply(targets, action, reason))


async def _apply(targets: list[Target], action: str | None, reason: str | None) -> list[str]:
    lines = []
    for target in targets:
        store = await open_store(target.location, Masker(target.location.passwords))
        try:
            before = await store.control(target.name)
            if before is not None and before.action == "cancelled" and action != "cancelled":
                raise UsageError(
                    f"{lifecycle.stopped_words(target.name, before)}. Nothing was changed"
                )
            if action is None:
                if before is None:
                    lines.append(
                        f"{target.name}: not paused; nothing to resume ({target.location})"
                    )
                    continue
                await store.set_control(target.name, None)
                lines.append(
                    f"{target.name}: resumed ({target.location}); it is due again at the next "
                    "run or sweep"
                )
                continue
            assert reason is not None
            control = Control(action, actor(), time.time(), reason)
            await store.set_control(target.name, control)
            lines.append(
                f"{target.name}: {action} by {control.actor} ({target.location}); every run "
                "sharing this state stops starting requests within 2 s"
            )
        finally:
            await store.close()
    return lines
