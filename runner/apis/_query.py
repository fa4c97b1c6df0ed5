"""The query-string shape shared by V1 and Chatfuel: everything travels URL-encoded."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

from runner.apis import NO_RECIPIENT, Built, Refusal, Request, check_attributes, recipient_key
from runner.model import Endpoint, Field, V1Message
from runner.render import is_template

_JSON = {"Content-Type": "application/json"}
_tuple = tuple.__new__


_SAFE = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch  # needs no escaping


_MEMO: dict[str, str] = {}
_MEMO_SIZE = 4096


def _q(value: str) -> str:
    # Most values (ids, coupons) need no escaping, and the rest repeat (greetings of common
    # first names): both paths are many times cheaper than quote().
    if _SAFE(value):
        return value
    quoted = _MEMO.get(value)
    if quoted is None:
        quoted = quote(value, safe="")
        if len(_MEMO) < _MEMO_SIZE:
            _MEMO[value] = quoted
    return quoted


def parse(data: dict[str, Any], with_flow: bool) -> V1Message:
    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    return V1Message(
        user_id=str(data["user_id"]),
        block_name=text("block_name"),
        block_id=text("block_id"),
        flow_name=text("flow_name") if with_flow else None,
        messaging_tag=text("messaging_tag"),
        attributes=tuple(
            (str(k), _attribute_text(v)) for k, v in (data.get("attributes") or {}).items()
        ),
    )


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check(data: dict[str, Any], blocks: tuple[str, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    """Reserved attribute names, and exactly one of the API's ways to name the block."""
    problems = check_attributes(data.get("attributes") or {})
    has = [key for key in blocks if key in data]
    options = " or ".join(blocks) if len(blocks) == 2 else "one of " + ", ".join(blocks)
    if len(has) > 1:
        which = "both" if len(blocks) == 2 else " and ".join(has)
        problems.append((("message", has[1]), f"give {options}, not {which}"))
    elif not has:
        problems.append((("message",), f"expected {options} (one is required)"))
    return problems


def fields(message: V1Message) -> list[Field]:
    """user_id, the block (name, id or flow), then the attributes, in that order."""
    out = [Field(("message", "user_id"), message.user_id, recipient=True)]
    block = _block(message)
    if block is not None:  # only an invalid message has none; validation says so
        out.append(Field(("message", block[0]), block[1]))
    out += [Field(("message", "attributes", name), source) for name, source in message.attributes]
    return out


def _block(message: V1Message) -> tuple[str, str] | None:
    for key in ("block_name", "block_id", "flow_name"):
        value = getattr(message, key)
        if value is not None:
            return key, value
    return None


class QueryFields(NamedTuple):
    """V1's and Chatfuel's rendered values, by name."""

    user_id: str
    block: str  # the block's name or id, or Chatfuel's flow name
    attributes: Sequence[str] = ()  # in the order of message.attributes


class QueryBuilder:
    """Builds ``POST {base}/bots/{bot}/users/{user}/send?...`` with every constant part made
    once: the base, the token, and each field that is not a template, quoted already."""

    def __init__(
        self,
        message: V1Message,
        endpoint: Endpoint,
        *,
        names: dict[str, str],
        tag: str | None,
    ) -> None:
        block = _block(message)
        if block is None:
            raise ValueError("a message without a block cannot be built")
        self._block_param = names[block[0]]
        self._head = f"{endpoint.base_url}/bots/{_q(endpoint.bot_id)}/users/"
        # "*" stays readable so a masked preview shows bot_token=***
        token = quote(endpoint.token, safe="*")
        # The query after the user id: (text before a rendered value, its index in the
        # values); a field that is no template is the same in every request, so it joins the
        # text around it.
        texts = [f"/send?{names['token']}={token}&{self._block_param}="]
        self._block_varies = is_template(block[1])
        sources = [block[1], *(source for _, source in message.attributes)]
        prefixes = [f"&{_q(name)}=" for name, _ in message.attributes]
        segments: list[tuple[str, int]] = []
        for i, source in enumerate(sources, 1):
            if is_template(source):
                segments.append(("".join(texts), i))
                texts = []
            else:
                texts.append(_q(source))
            if i - 1 < len(prefixes):
                texts.append(prefixes[i - 1])
        if tag is not None:
            texts.append(f"&{names['tag']}={_q(tag)}")
        self._segments = segments
        self._tail = "".join(texts)
        self._empty_block = Refusal(f"{self._block_param} renders empty")
        if not block[1]:
            self._block_varies = True  # validation refuses it; say so here too

    def build(self, values: Sequence[str]) -> Built | Refusal:
        """The request of the values the renderer made, in `fields` order."""
        user_id = values[0].strip()
        if not user_id.isascii():
            user_id = recipient_key(user_id)
        if not user_id:
            return NO_RECIPIENT
        if self._block_varies and not values[1]:
            return self._empty_block
        q = _q
        parts = [self._head, q(user_id)]
        for text, i in self._segments:
            parts.append(text)
            parts.append(q(values[i]))
        parts.append(self._tail)
        # Tuples made in C: these constructors run once a row (see audience._tuple).
        request = _tuple(Request, ("POST", "".join(parts), _JSON, None))
        return _tuple(Built, (user_id, request, ()))

    def make(self, fields: QueryFields) -> Built | Refusal:
        """`build` of values given by name."""
        return self.build([fields.user_id, fields.block, *fields.attributes])
