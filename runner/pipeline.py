"""The flow of one recipient up to the wire: audience row -> render -> request or skip.

`plan` stops here and writes what it got; `run` feeds the same stream to the engine, so the
preview cannot drift from the broadcast.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

from runner import apis, audience, secrets
from runner.apis import Request
from runner.dedupe import SeenIndex
from runner.errors import UsageError
from runner.model import DEFAULT_BASES, Campaign, Endpoint
from runner.render import Renderer, Skip

_HTTP_URL = re.compile(r"https?://[^/\s?#]+")


class Prepared(NamedTuple):
    row: int
    recipient: str
    request: Request


class Skipped(NamedTuple):
    row: int
    reason: str
    recipient: str | None = None


Item = Prepared | Skipped


def endpoint(
    campaign: Campaign,
    *,
    strict: bool,
    token: str | None = None,
    base_url: str | None = None,
) -> Endpoint:
    """The campaign's endpoint. ``strict`` resolves every ``${VAR}`` or raises `UsageError`;
    otherwise unset ones stay as written (previews need no secrets). ``token``/``base_url``
    override the file (the masked preview, the sandbox)."""
    bot = campaign.bot

    def value(text: str, key: str) -> str:
        where = campaign.where(f"bot.{key}")
        return secrets.resolve(text, where) if strict else secrets.resolve_lenient(text)

    if base_url is None:
        base_url = value(bot.base_url, "base_url") if bot.base_url else DEFAULT_BASES[bot.api]
        if strict and not _HTTP_URL.match(base_url):
            raise UsageError(
                f"{campaign.where('bot.base_url')}: {base_url!r} is not an http:// or https:// URL"
            )
    return Endpoint(
        base_url=base_url.rstrip("/"),
        bot_id=value(bot.id, "id"),
        token=token if token is not None else value(bot.token, "token"),
    )


def render_context(campaign: Campaign) -> dict[str, object]:
    return {
        "vars": dict(campaign.vars),
        "campaign": {"name": campaign.name, "description": campaign.description},
    }


def prepare(campaign: Campaign, target: Endpoint) -> Iterator[Item]:
    """Every audience row, in order, as a request to send or a reason to skip it."""
    module = apis.module(campaign.bot.api)
    renderer = Renderer(
        module.template_fields(campaign.message), campaign.audience.where, render_context(campaign)
    )
    builder = module.builder(campaign.message, target)
    seen = SeenIndex()
    render, build, first_row = renderer.render, builder.build, seen.first_row
    for row in audience.rows(campaign.audience):
        n = row.n
        if row.fields is None:
            yield Skipped(n, row.error or "unreadable")
            continue
        values = render(row.fields)
        if type(values) is Skip:
            yield Skipped(n, values)
            continue
        built = build(values)
        if type(built) is str:
            yield Skipped(n, built)
            continue
        recipient, request = built
        earlier = first_row(recipient, n)
        if earlier is not None:
            yield Skipped(n, f"duplicate of row {earlier}", recipient)
            continue
        yield Prepared(n, recipient, request)
