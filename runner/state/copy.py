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
from typing import Any

from runner.errors import StateError
from runner.secrets import Masker
from runner.state import Location, same
from runner.state.core import actor, open_store
from runner.state.store import Control, RunRecord, Store

_APART = (".sandbox.sqlite3", ".test.sqlite3")
MOVED = "moved"


def moved_to(target: Location) -> Control:
    """The mark a copied campaign leaves in its source state."""
    return Control(
        MOVED, actor(), time.time(), f"its history was copied to {target}: run it with that state"
    )


def sources(source: Location) -> list[Location]:
    """The states SRC names: itself, or every campaign state file of a folder."""
    if source.path is None or not source.path.is_dir():
        return [source]
    found = [
        Location(path=p)
        for p in sorted(source.path.iterdir())
        if p.name.endswith(".sqlite3") and not p.name.endswith(_APART) and p.is_file()
    ]
    if not found:
        raise StateError(f"{source.path}: no state files (*.sqlite3) in this folder")
    return found


async def copy(source: Location, target: Location) -> dict[str, int]:
    """Copy every campaign of ``source`` into ``target``; recipients copied per campaign."""
    copied: dict[str, int] = {}
    for one in sources(source):
        copied.update(await _copy_one(one, target))
    return copied


async def _copy_one(source: Location, target: Location) -> dict[str, int]:
    if same(source, target):
        raise StateError(f"{source} and {target} are the same state: nothing to copy")
    if source.path is not None and not source.path.is_file():
        raise StateError(f"{source.path}: no such state file")
    masker = Masker([*source.passwords, *target.passwords])
    src = await open_store(source, masker, readonly=True)
    campaigns: list[str] = []
    try:
        campaigns = await src.campaigns()
        if not campaigns:
            raise StateError(f"{source}: this state holds no campaign; nothing was copied")
        gone = [c for c in campaigns if (held := await src.control(c)) and held.action == MOVED]
        campaigns = [c for c in campaigns if c not in gone]
        if not campaigns:
            raise StateError(
                f"{source}: its campaigns ({', '.join(gone)}) were copied to another state "
                "already, which holds their true history; nothing was copied"
            )
        taken: list[tuple[str, list[tuple[Any, ...]], list[RunRecord], Control | None]] = []
        for campaign in campaigns:
            await src.lock(campaign)  # refuses while a run of it goes on
            taken.append(
                (
                    campaign,
                    await src.rows(campaign),
                    await src.runs(campaign),
                    await src.control(campaign),
                )
            )
        dst = await open_store(target, masker)
        try:
            await _write(dst, taken)
        finally:
            await dst.close()
        # The source now says where the history went: a run there would ignore what is sent
        # from the copy, and send those people again.
        marker = await open_store(source, masker)
        try:
            for campaign, *_ in taken:
                await marker.set_control(campaign, moved_to(target))
        finally:
            await marker.close()
    finally:
        for campaign in campaigns:
            with contextlib.suppress(StateError):
                await src.unlock(campaign)
        await src.close()
    return {campaign: len(rows) for campaign, rows, _, _ in taken}


async def _write(
    dst: Store, taken: list[tuple[str, list[tuple[Any, ...]], list[RunRecord], Control | None]]
) -> None:
    for campaign, _, _, _ in taken:
        await dst.lock(campaign)
    try:
        present = []
        for campaign, _, _, _ in taken:
            held = await dst.control(campaign)
            if held is not None and held.action == MOVED:
                await dst.forget(campaign)  # it comes back to where it had been moved from
            elif await dst.counts(campaign) or await dst.runs(campaign, 1):
                present.append(campaign)
        if present:
            raise StateError(
                f"{dst.location} already holds campaign {', '.join(present)}; nothing was "
                "copied (two histories of one campaign cannot be merged)"
            )
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
