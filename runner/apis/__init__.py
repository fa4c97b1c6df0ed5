"""One request builder per Broadcasting API, shared by `plan` and `run`.

Each API module knows its message shape (`parse_message`), the templates in it
(`template_fields`), the rules a schema cannot state (`check`), and how rendered values become
an HTTP request (`builder`). The preview and the broadcast call the same builder, so what a
reviewer sees is what is sent.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

if TYPE_CHECKING:
    from runner.model import Endpoint, Field, Message

Problems = list[tuple[tuple[str | int, ...], str]]


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


class Built(NamedTuple):
    """A row made into a request, and the key its recipient is known by (dedupe, state)."""

    recipient: str
    request: Request
    # V2: every identifier the row has, (field, value): an earlier run whose message knew
    # recipients in another order (`priority:` since reordered) keyed them by another one.
    identifiers: tuple[tuple[str, str], ...] = ()


class Refusal(str):
    """Why a row cannot become a request ("no recipient id"). A str subclass, as
    `render.Skip` is: one is made per refused row, and telling it apart is one type check."""

    __slots__ = ()


NO_RECIPIENT = Refusal("no recipient id")


def recipient_key(text: str) -> str:
    """An identifier as recipients are compared (dedupe, state, `run --to`): trimmed, and in
    Unicode NFC, so that the same person typed two ways is one recipient."""
    text = text.strip()
    return text if text.isascii() else unicodedata.normalize("NFC", text)


class Builder(Protocol):
    """Rendered values (in `Api.template_fields` order) -> the request, or a `Refusal`."""

    def build(self, values: Sequence[str]) -> Built | Refusal: ...


class Api(Protocol):
    """What an API module offers; `runner.apis.v1`, `.v2` and `.chatfuel` are each one."""

    def parse_message(self, data: dict[str, Any]) -> Message: ...

    # The message is the module's own kind (V1Message or V2Message), given back to it.
    def template_fields(self, message: Any) -> list[Field]: ...

    def check(self, data: dict[str, Any]) -> Problems: ...

    def builder(self, message: Any, endpoint: Endpoint) -> Builder: ...


def module(api: str) -> Api:
    from runner.apis import chatfuel, v1, v2

    apis: dict[str, Api] = {"v1": v1, "v2": v2, "chatfuel": chatfuel}
    return apis[api]


# Attribute names that would collide with the API's own query parameters.
RESERVED_PARAMETERS = frozenset({"bot_token", "block_name", "block_id", "messaging_tag"})


def check_attributes(attributes: Any) -> Problems:
    problems: Problems = []
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


def decoded(request: dict[str, Any]) -> list[tuple[str, str]]:
    """A request as a person reads it: (name, value) pairs, percent-encoding undone; V1 and
    Chatfuel from the URL's query, V2 from the body (each message's text)."""
    url = urlsplit(request["url"])
    pairs: list[tuple[str, str]] = []
    if "/users/" in url.path:  # V1 and Chatfuel: /bots/{bot}/users/{user}/send
        pairs.append(("to", unquote(url.path.rsplit("/users/", 1)[1].removesuffix("/send"))))
    pairs += parse_qsl(url.query, keep_blank_values=True)
    body = request.get("body")
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "messages" and isinstance(value, list):
                pairs += [(f"message {i}", str(m.get("text", ""))) for i, m in enumerate(value, 1)]
            else:
                pairs.append(
                    (key, value if isinstance(value, str) else orjson.dumps(value).decode())
                )
    return pairs
