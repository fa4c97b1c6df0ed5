"""Broadcasting API V1: block and attributes in the query string, token as ``bot_token``."""

from __future__ import annotations

from typing import Any

from runner.apis import _query
from runner.model import Endpoint, Field, V1Message

QueryFields = _query.QueryFields  # V1's rendered values, by name (Chatfuel's too)

NAMES = {
    "token": "bot_token",
    "block_name": "block_name",
    "block_id": "block_id",
    "tag": "messaging_tag",
}


def parse_message(data: dict[str, Any]) -> V1Message:
    return _query.parse(data, with_flow=False)


def template_fields(message: V1Message) -> list[Field]:
    return _query.fields(message)


def check(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    return _query.check(data, ("block_name", "block_id"))


def builder(message: V1Message, endpoint: Endpoint) -> _query.QueryBuilder:
    # The documented form, and the clients known to work, quote the tag: messaging_tag="X".
    tag = None if message.messaging_tag is None else f'"{message.messaging_tag}"'
    return _query.QueryBuilder(message, endpoint, names=NAMES, tag=tag)
