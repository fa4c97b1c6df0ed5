"""Broadcasting API V2: a JSON body, the token as a Bearer header."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import orjson

from runner.apis import NO_RECIPIENT, Built, Refusal, Request, recipient_key
from runner.model import Endpoint, Field, V2Message

IDENTIFIERS = ("id", "email", "phone", "fbid")
DEFAULT_PRIORITY = ("fbid", "phone", "email")
_TOKENS = ("notification_messages_token", "one_time_notif_token")


def parse_message(data: dict[str, Any]) -> V2Message:
    customer = data.get("customer") or {}
    return V2Message(
        customer=tuple((key, str(customer[key])) for key in IDENTIFIERS if key in customer),
        block_id=None if data.get("block_id") is None else str(data["block_id"]),
        messages=tuple(str(m["text"]) for m in data.get("messages") or ()),
        notification_messages_token=_opt(data, "notification_messages_token"),
        one_time_notif_token=_opt(data, "one_time_notif_token"),
        messaging_tag=_opt(data, "messaging_tag"),
        priority=tuple(data.get("priority") or ()),
    )


# Messenger refuses a text message longer than this, for that person alone: better an invalid
# row said before sending than a failure for each of them after.
MAX_TEXT = 2000


def _too_long(length: int) -> str:
    return f"{length:,} characters, over Messenger's {MAX_TEXT:,} for one text message"


def _opt(data: dict[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else str(data[key])


def template_fields(message: V2Message) -> list[Field]:
    """Identifiers and tokens (lenient: a missing value is left out), then message texts."""
    out = [
        Field(("message", "customer", key), source, lenient=True)
        for key, source in message.customer
    ]
    for key in _TOKENS:
        source = getattr(message, key)
        if source is not None:
            out.append(Field(("message", key), source, lenient=True))
    out += [
        Field(("message", "messages", i, "text"), text) for i, text in enumerate(message.messages)
    ]
    return out


def check(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    customer = data.get("customer")
    if (
        isinstance(customer, dict)
        and customer
        and not any(str(v).strip() for v in customer.values())
    ):
        problems.append(
            (
                ("message", "customer"),
                "no customer identifier template: give id, email, phone or fbid",
            )
        )
    messages = data.get("messages")
    if isinstance(messages, list):
        for i, item in enumerate(messages):
            text = item.get("text") if isinstance(item, dict) else None
            if isinstance(text, str) and "{" not in text and len(text) > MAX_TEXT:
                problems.append((("message", "messages", i, "text"), _too_long(len(text))))
    if "block_id" in data and "messages" in data:
        problems.append((("message", "messages"), "give block_id or messages, not both"))
    elif "block_id" not in data and "messages" not in data:
        problems.append((("message",), "expected block_id or messages (one is required)"))
    return problems


class V2Fields(NamedTuple):
    """V2's rendered values, by name."""

    identifiers: Mapping[str, str]  # id, email, phone, fbid: those the message names
    tokens: Mapping[str, str] = {}
    texts: Sequence[str] = ()  # the messages' texts, in order


class Builder:
    def __init__(self, message: V2Message, endpoint: Endpoint) -> None:
        self._url = f"{endpoint.base_url}/bots/{quote(endpoint.bot_id, safe='')}/send"
        self._headers = {
            "Authorization": f"Bearer {endpoint.token}",
            "Content-Type": "application/json",
        }
        self._ids = [key for key, _ in message.customer]
        self._tokens = [key for key in _TOKENS if getattr(message, key) is not None]
        constant: dict[str, Any] = {}
        if message.block_id is not None:
            constant["block_id"] = message.block_id
        if message.messaging_tag is not None:
            constant["messaging_tag"] = message.messaging_tag
        if message.priority:
            constant["priority"] = list(message.priority)
        self._constant = constant
        self._texts = len(message.messages)
        self._key_order = key_order(message)

    def build(self, values: Sequence[str]) -> Built | Refusal:
        """The request of the values the renderer made, in `template_fields` order."""
        n_ids, n_tokens = len(self._ids), len(self._tokens)
        return self.make(
            V2Fields(
                dict(zip(self._ids, values[:n_ids], strict=True)),
                dict(zip(self._tokens, values[n_ids : n_ids + n_tokens], strict=True)),
                values[n_ids + n_tokens :],
            )
        )

    def make(self, fields: V2Fields) -> Built | Refusal:
        ids = {key: recipient_key(value) for key, value in fields.identifiers.items()}
        recipient = next((ids[k] for k in self._key_order if ids.get(k)), "")
        if not recipient:
            return NO_RECIPIENT
        body: dict[str, Any] = {f"customer_{k}": v for k, v in ids.items() if v}
        if self._texts:
            for i, text in enumerate(fields.texts):
                if not text.strip():
                    return Refusal(f"message.messages[{i}].text renders empty")
                if len(text) > MAX_TEXT:
                    return Refusal(f"message.messages[{i}].text: {_too_long(len(text))}")
            body["messages"] = [{"text": text} for text in fields.texts]
        for key, value in fields.tokens.items():
            if value:
                body[key] = value
        body.update(self._constant)
        request = Request("POST", self._url, self._headers, orjson.dumps(body))
        return Built(recipient, request, tuple((k, v) for k, v in ids.items() if v))


def key_order(message: V2Message) -> list[str]:
    """The identifiers a recipient is known by, first found first: ``id``, then in
    ``priority`` order; identifiers absent from priority still identify the customer, last."""
    order = message.priority or DEFAULT_PRIORITY
    found = ["id", *(k for k in order if k != "id")]
    return found + [k for k in IDENTIFIERS if k not in found]


def recipient_key_scheme(message: V2Message) -> list[str]:
    """The identifiers of ``message.customer`` in the order a recipient's key is taken: runs
    record it, so that a later run whose order differs finds whom they knew by another."""
    # A blank template is no identifier: `phone: ""` takes phone out as surely as deleting it.
    present = {key for key, template in message.customer if template.strip()}
    return [key for key in key_order(message) if key in present]


def builder(message: V2Message, endpoint: Endpoint) -> Builder:
    return Builder(message, endpoint)
