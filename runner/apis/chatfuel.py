"""Chatfuel's own Broadcasting API: V1's shape under ``chatfuel_``-prefixed names."""

from __future__ import annotations

from typing import Any

from runner.apis import _query
from runner.model import Endpoint, Field, V1Message

NAMES = {
    "token": "chatfuel_token",
    "block_name": "chatfuel_block_name",
    "block_id": "chatfuel_block_id",
    "flow_name": "chatfuel_flow_name",
    "tag": "chatfuel_message_tag",
}


def parse_message(data: dict[str, Any]) -> V1Message:
    return _query.parse(data, with_flow=True)


def template_fields(message: V1Message) -> list[Field]:
    return _query.fields(message)


def check(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    return _query.check(data, ("block_name", "block_id", "flow_name"))


def builder(message: V1Message, endpoint: Endpoint) -> _query.QueryBuilder:
    return _query.QueryBuilder(message, endpoint, names=NAMES, tag=message.messaging_tag)
