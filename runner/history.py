"""History a run must not ignore, though the state it was given holds none of it.

- elsewhere: another state this repository uses holds the campaign's recipients, runs or a
  pause (a copy not made, `CAMPAIGN_STATE` forgotten);
- under another name: the campaign file last ran under another ``name:``;
- keyed by an identifier since taken out of a V2 ``message.customer``.

Each is a refusal (exit 2) naming what to do; `--fresh-state` starts again on purpose where
that is what was meant.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from runner import pipeline, repository, state
from runner.errors import CampaignError
from runner.lifecycle import Standing, stopped_words
from runner.model import Campaign
from runner.secrets import Masker
from runner.state.copy import MOVED
from runner.state.core import open_store
from runner.state.store import Control, key_schemes
from runner.status import Status


def file_key(campaign: Campaign) -> str | None:
    """The campaign file as its repository names it, the same on every checkout: the
    repository (`repository.identity`) and the file's path in it, since one PostgreSQL
    state may serve several repositories, each with its own ``campaigns/sale.yaml``. None
    where the repository cannot be told apart from others (no git, a shallow clone with no
    remote): no file is recognised there, rather than another's taken for it."""
    path = campaign.path.resolve()
    root = repository.root(path)
    found = repository.identity(root)
    return None if found is None else f"{found}:{path.relative_to(root).as_posix()}"


async def history_elsewhere(campaign: Campaign, given: str | None) -> str | None:
    """Why running ``campaign`` in the state ``given`` (or the default) would ignore its
    history, when that state knows nothing of it while another state this repository uses
    does (recipients, runs, or a pause), or its file ran under another name; None when
    nothing is elsewhere."""
    chosen = state.locate(given, campaign.path, campaign.name, False)
    try:
        if await _known(chosen, campaign.name) is not None:
            return None
    except CampaignError:
        return None  # a state that cannot be read is refused by the run, saying why
    others = state.alternatives(given, campaign.path, campaign.name)
    for other in others:
        try:
            found = await _known(other, campaign.name)
        except CampaignError:
            continue  # nothing can be read there to compare
        if found is None:
            continue
        sent, control = found
        what = f"{sent} recipients sent there"
        if control is not None:
            what += f", and {stopped_words(campaign.name, control)}"
        head = (
            f"{campaign.path}: the state {chosen} has no history of campaign {campaign.name}, "
            f"but {other} has: {what}. Running here would ignore it; nothing was sent."
        )
        if control is not None and control.action == MOVED:
            # Its true history is where it was moved to (the words say where): a copy from
            # here would be refused, and the counts here are stale.
            return f"{head} (or start again on purpose with --fresh-state)"
        return (
            f"{head} Move the history first: campaign state copy {other} {chosen} --campaign "
            f"{campaign.name} (or start again on purpose with --fresh-state)"
        )
    return await _renamed(campaign, chosen, [chosen, *others])


async def identifiers_lost(campaign: Campaign, given: str | None, sandbox: bool) -> str | None:
    """Why running a V2 ``campaign`` would send people again: an identifier earlier runs
    keyed some recipients by is no longer in ``message.customer``, so they cannot be found
    (any other change of order finds them: `pipeline.prior_of`); None when none is lost."""
    current = pipeline.key_scheme(campaign)
    location = state.locate(given, campaign.path, campaign.name, sandbox)
    if current is None or (location.path is not None and not location.path.is_file()):
        return None
    store = await open_store(location, Masker(location.passwords), readonly=True)
    try:
        runs = await store.runs(campaign.name)
    finally:
        await store.close()
    lost = sorted({key for scheme in key_schemes(runs) for key in scheme if key not in current})
    if not lost:
        return None
    fields = ", ".join(f"customer.{key}" for key in lost)
    return (
        f"{campaign.path}: message.customer no longer has {fields}, by which earlier runs "
        "knew some recipients: they would be taken for new ones and sent again; nothing was "
        f"sent. Put {fields} back in message.customer (a row without it renders it empty)"
    )


async def _renamed(campaign: Campaign, chosen: Any, locations: list[Any]) -> str | None:
    """Why running ``campaign`` would send everyone again when its file last ran under
    another name (a `name:` edited: a new campaign to every state); None when it did not."""
    key = file_key(campaign)
    if key is None:
        return None
    for location in locations:
        if location.path is not None and not location.path.is_file():
            continue
        try:
            store = await open_store(location, Masker(location.passwords), readonly=True)
            try:
                named = [n for n in await store.ran_from(key) if n != campaign.name]
                if not named:
                    continue
                sent = (await store.counts(named[0])).get(Status.SENT, 0)
            finally:
                await store.close()
        except CampaignError:
            continue  # nothing can be read there to compare
        return (
            f"{campaign.path}: the state {chosen} has no history of campaign {campaign.name}, "
            f"but this file ran as campaign {named[0]} in {location}: {sent} recipients sent "
            "there. Running here would ignore it; nothing was sent. Put back "
            f"`name: {named[0]}` to go on with it (or start {campaign.name} on purpose, "
            "everyone again, with --fresh-state)"
        )
    return None


async def _known(location: Any, campaign: str) -> tuple[int, Control | None] | None:
    """(how many were sent, the pause or cancel) of ``campaign`` in the state at
    ``location``; None when that state knows nothing of it (a file not made yet knows
    nothing). Raises `CampaignError` when it cannot be read."""
    if location.path is not None and not location.path.is_file():
        return None
    store = await open_store(location, Masker(location.passwords), readonly=True)
    try:
        if not await store.mentions(campaign):
            return None
        return (await store.counts(campaign)).get(Status.SENT, 0), await store.control(campaign)
    finally:
        await store.close()


async def seen_from(found: Standing, campaign: Campaign, given: str | None) -> Standing:
    """``found`` as the repository sees it: a campaign new to the chosen state whose history
    (or pause) is in another state this repository uses stands ``elsewhere``."""
    if found.state != "new":
        return found
    refusal = await history_elsewhere(campaign, given)
    if refusal is None:
        return found
    why = refusal.removeprefix(f"{campaign.path}: ")
    why = why.replace("Running here would ignore it; nothing was sent. ", "")
    return replace(found, state="elsewhere", why=f"elsewhere: {why}", next_due=None)
