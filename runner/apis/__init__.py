"""One request builder per Broadcasting API, shared by `plan` and `run`.

Each API module knows its message shape (`parse_message`), the templates in it
(`template_fields`), the rules a schema cannot state (`check`), and how rendered values become
an HTTP request (`builder`). The preview and the broadcast call the same builder, so what a
reviewer sees is what is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any, NamedTuple

import orjson


class Request(NamedTuple):
    """One HTTP request, exactly as it is sent (a tuple: one is made per recipient)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None

    def for_report(self) -> dict[str, Any]:
        """The request as a report shows it (built with a masked token by the caller)."""
        return {
            "method": self.method,
            "url": self.url,
            "body": orjson.loads(self.body) if self.body else None,
        }


def module(api: str) -> ModuleType:
    from runner.apis import chatfuel, v1, v2

    return {"v1": v1, "v2": v2, "chatfuel": chatfuel}[api]


# Attribute names that would collide with the API's own query parameters.
RESERVED_PARAMETERS = frozenset({"bot_token", "block_name", "block_id", "messaging_tag"})


def check_attributes(attributes: Any) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if not isinstance(attributes, Mapping):
        return problems  # the schema reports the wrong type
    for name in attributes:
        path = ("message", "attributes", name)
        if name.startswith("chatfuel_"):
            problems.append(
                (path, "attribute names starting with 'chatfuel_' are reserved by the API")
            )
        elif name in RESERVED_PARAMETERS:
            problems.append(
                (path, f"'{name}' is a parameter of the API itself, not an attribute name")
            )
    return problems
