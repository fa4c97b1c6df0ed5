"""`campaign state copy SRC DST`: move a state between SQLite files and PostgreSQL.

Every campaign of the source is copied whole (recipients, run history and any pause), so that
a team can start with local files and move to a shared database without resending anyone.
SRC may be a folder of state files (``.campaign-state/``): each of them is copied, rehearsal
and test-send states left out. Both sides are locked per campaign while copying (a run going
on is refused), and a destination that already holds one of the campaigns is refused rather
than merged: two histories of one campaign cannot both be true.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from runner.errors import CampaignError, LockHeld, StateError
from runner.secrets import Masker
from runner.state import Location, location, same, state_files
from runner.state.core import actor, open_store
from runner.state.store import Control, RunRecord, Store

MOVED = "moved"


_MOVED_TO = "its history was copied to "


def moved_where(control: Control) -> Location | None:
    """Where a moved campaign's history went, as its mark says."""
    text = control.reason
    if not text.startswith(_MOVED_TO) or ": run it with that state" not in text:
        return None
    try:
        return location(text[len(_MOVED_TO) : text.rindex(": run it with that state")])
    except CampaignError:
        return None


def moved_to(target: Location) -> Control:
    """The mark a copied campaign leaves in its source state."""
    return Control(MOVED, actor(), time.time(), f"{_MOVED_TO}{target}: run it with that state")


def sources(source: Location) -> list[Location]:
    """The states SRC names: itself, or every campaign state file of a folder."""
    if source.path is None or not source.path.is_dir():
        return [source]
    found = state_files(source.path)
    if not found:
        raise StateError(f"{source.path}: no state files (*.sqlite3) in this folder")
    return found


Taken = tuple[str, list[tuple[Any, ...]], list[RunRecord], Control | None]


async def copy(
    source: Location, target: Location, only: Sequence[str] = ()
) -> tuple[dict[str, int], list[str]]:
    """Copy every campaign of ``source`` (a state, or a folder of them), or ``only`` those
    named, into ``target``, all of them or none: recipients copied per campaign, and notes on
    what was passed over (a file of the folder that holds nothing)."""
    if target.path is not None and (target.path.is_dir() or str(target.path).endswith("/")):
        raise StateError(
            f"{target.path}: a folder is a source only; name a state file (such as "
            ".campaign-state/all.sqlite3) or a postgresql:// URL. Nothing was copied"
        )
    masker = Masker([*source.passwords, *target.passwords])
    opened: list[tuple[Location, Store, list[str]]] = []
    notes: list[str] = []
    taken: list[tuple[Location, Taken]] = []
    folder = source.path is not None and source.path.is_dir()
    try:
        for one in sources(source):
            if same(one, target):
                raise StateError(f"{one} and {target} are the same state: nothing to copy")
            if one.path is not None and not one.path.is_file():
                raise StateError(f"{one.path}: no such state file")
            src = await open_store(one, masker, readonly=True)
            locked: list[str] = []
            opened.append((one, src, locked))
            found = await _take(one, src, locked, only)
            if isinstance(found, str):
                if not folder:
                    raise StateError(f"{found}; nothing was copied")
                notes.append(f"{found}: passed over")
                continue
            taken += [(one, t) for t in found]
        missing = sorted(set(only) - {t[0] for _, t in taken})
        if missing:
            raise StateError(
                f"{source}: holds no campaign {', '.join(missing)} to copy; nothing was copied"
            )
        if not taken:
            raise StateError(f"{source}: no campaign to copy; nothing was copied")
        dst = await open_store(target, masker)
        try:
            await _write(dst, taken)
        finally:
            await dst.close()
        # Each source now says where the history went: a run there would ignore what is
        # sent from the copy, and send those people again.
        for one, _, _ in opened:
            mine = [t[0] for where, t in taken if where == one]
            if mine:
                marker = await open_store(one, masker)
                try:
                    for campaign in mine:
                        await marker.set_control(campaign, moved_to(target))
                finally:
                    await marker.close()
    finally:
        for _, src, locked in opened:
            for campaign in locked:
                with contextlib.suppress(StateError):
                    await src.unlock(campaign)
            await src.close()
    return {t[0]: len(t[1]) for _, t in taken}, notes


async def _take(
    source: Location, src: Store, locked: list[str], only: Sequence[str]
) -> list[Taken] | str:
    """Every campaign of one state (or ``only`` those), locked (a run going on is refused);
    or why there is none."""
    every = await src.campaigns()
    if not every:
        return f"{source}: this state holds no campaign"
    campaigns = [c for c in every if not only or c in only]
    if not campaigns:
        return f"{source}: holds no campaign {', '.join(sorted(set(only)))} to copy"
    gone = [c for c in campaigns if (held := await src.control(c)) and held.action == MOVED]
    campaigns = [c for c in campaigns if c not in gone]
    if not campaigns:
        return (
            f"{source}: its campaigns ({', '.join(gone)}) were copied to another state already, "
            "which holds their true history"
        )
    found: list[Taken] = []
    for campaign in campaigns:
        await _lock(src, campaign)  # refuses while a run of it goes on
        locked.append(campaign)
        found.append(
            (
                campaign,
                await src.rows(campaign),
                await src.runs(campaign),
                await src.control(campaign),
            )
        )
    return found


async def _lock(store: Store, campaign: str) -> None:
    try:
        await store.lock(campaign)
    except LockHeld as exc:
        raise LockHeld(f"{exc}: nothing was copied") from None


async def _write(dst: Store, sourced: list[tuple[Location, Taken]]) -> None:
    taken = [t for _, t in sourced]
    origin = {t[0]: where for where, t in sourced}
    for campaign, _, _, _ in taken:
        await _lock(dst, campaign)
    try:
        present, returning = [], []
        for campaign, _, _, _ in taken:
            held = await dst.control(campaign)
            if held is not None and held.action == MOVED:
                went = moved_where(held)
                if went is None or not same(went, origin[campaign]):
                    raise StateError(
                        f"{dst.location} marks campaign {campaign} as moved to "
                        f"{went or 'another state'}, not to {origin[campaign]}: only that "
                        "state's history can come back; nothing was copied"
                    )
                returning.append(campaign)  # back to where it had been moved from
            elif await dst.counts(campaign) or await dst.runs(campaign, 1):
                present.append(campaign)
        if present:
            raise StateError(
                f"{dst.location} already holds campaign {', '.join(present)}; nothing was "
                "copied (two histories of one campaign cannot be merged)"
            )
        for campaign in returning:
            await dst.forget(campaign)
        await dst.insert(
            [r for _, rows, _, _ in taken for r in rows],
            [(campaign, run) for campaign, _, runs, _ in taken for run in runs],
        )
        for campaign, _, _, control in taken:
            if control is not None:
                await dst.set_control(campaign, control)
    finally:
        for campaign, _, _, _ in taken:
            with contextlib.suppress(StateError):
                await dst.unlock(campaign)
