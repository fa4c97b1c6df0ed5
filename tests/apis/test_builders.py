"""The request builders: exactly what the API documents say, for the preview and the broadcast."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.apis import Built, Refusal, Request, chatfuel, v1, v2
from runner.apis.v1 import QueryFields
from runner.apis.v2 import V2Fields
from runner.model import Endpoint, V1Message, V2Message

ENDPOINT = Endpoint("https://api.smax.bot", "6123abcd", "t0k&n=")
TRICKY = "Lan & Hoa = 100% 🎉 +x/y?z#w"


def built(result: Built | Refusal) -> Built:
    assert isinstance(result, Built), result
    return result


def query(request: Request) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(request.url).query, keep_blank_values=True, strict_parsing=True)


def test_v1_puts_everything_in_the_query_string_url_encoded() -> None:
    message = V1Message(
        user_id="",
        block_name="{{ customer.block }}",
        messaging_tag="ACCOUNT_UPDATE",
        attributes=(("greeting", "{{ customer.greeting }}"), ("note", "{{ customer.note }}")),
    )
    fields = QueryFields(user_id="u 1/2", block="Spring Sale", attributes=(TRICKY, ""))
    recipient, request, _ = built(v1.builder(message, ENDPOINT).make(fields))
    assert recipient == "u 1/2"
    assert request.method == "POST"
    assert request.body is None
    assert request.headers == {"Content-Type": "application/json"}
    parts = urlsplit(request.url)
    assert parts.path == "/bots/6123abcd/users/u%201%2F2/send"
    assert unquote(parts.path.split("/")[4]) == "u 1/2"
    assert query(request) == [
        ("bot_token", "t0k&n="),
        ("block_name", "Spring Sale"),
        ("greeting", TRICKY),
        ("note", ""),
        ("messaging_tag", '"ACCOUNT_UPDATE"'),  # the documented, quoted form
    ]


def test_v1_block_id_and_no_tag() -> None:
    message = V1Message(user_id="", block_id="42")
    request = built(
        v1.builder(message, ENDPOINT).make(QueryFields(user_id="7", block="42"))
    ).request
    assert query(request)[1:] == [("block_id", "42")]


def test_chatfuel_uses_its_own_names_and_an_unquoted_tag() -> None:
    message = V1Message(
        user_id="",
        flow_name="Welcome",
        messaging_tag="ACCOUNT_UPDATE",
        attributes=(("plan", "{{ customer.plan }}"),),
    )
    fields = QueryFields(user_id="7", block="Welcome", attributes=("PRO",))
    request = built(chatfuel.builder(message, ENDPOINT).make(fields)).request
    assert query(request) == [
        ("chatfuel_token", "t0k&n="),
        ("chatfuel_flow_name", "Welcome"),
        ("plan", "PRO"),
        ("chatfuel_message_tag", "ACCOUNT_UPDATE"),
    ]


def test_fields_that_are_no_templates_are_quoted_once_into_the_url() -> None:
    """A block or attribute written as plain text is the same in every request: it is part of
    the URL made once, exactly as it would be quoted per row."""
    constant = V1Message(
        user_id="{{ customer.id }}",
        block_name=TRICKY,
        attributes=(("a b", TRICKY), ("greeting", "{{ customer.g }}"), ("empty", "")),
        messaging_tag="ACCOUNT_UPDATE",
    )
    request = built(
        v1.builder(constant, ENDPOINT).build(["7", TRICKY, TRICKY, "Hi & bye", ""])
    ).request
    assert query(request) == [
        ("bot_token", "t0k&n="),
        ("block_name", TRICKY),
        ("a b", TRICKY),
        ("greeting", "Hi & bye"),
        ("empty", ""),
        ("messaging_tag", '"ACCOUNT_UPDATE"'),
    ]
    assert request.url.startswith("https://api.smax.bot/bots/6123abcd/users/7/send?")


def test_v1_skips_an_empty_recipient() -> None:
    builder = v1.builder(V1Message(user_id="", block_name="{{ customer.b }}"), ENDPOINT)
    assert builder.make(QueryFields(user_id="  ", block="B")) == "no recipient id"
    assert builder.make(QueryFields(user_id="1", block="")) == "block_name renders empty"
    # The renderer's values come in the order of template_fields: user_id, block, attributes.
    assert builder.build(["  ", "B"]) == "no recipient id"


def test_a_masked_preview_shows_the_mask_plainly() -> None:
    masked = Endpoint("https://api.smax.bot", "1", "***")
    request = built(
        v1.builder(V1Message(user_id="", block_name="B"), masked).build(["1", "B"])
    ).request
    assert "bot_token=***&" in request.url


def v2_builder(**fields: object) -> v2.Builder:
    base: dict[str, object] = {"customer": (("id", ""), ("email", ""), ("phone", ""))}
    base.update(fields)
    return v2.builder(V2Message(**base), ENDPOINT)  # type: ignore[arg-type]


def test_v2_sends_a_json_body_with_a_bearer_token_and_leaves_empty_fields_out() -> None:
    builder = v2_builder(
        messages=("Xin chào", "🎉"),
        notification_messages_token="",
        messaging_tag="POST_PURCHASE_UPDATE",
        priority=("phone", "email"),
    )
    fields = V2Fields(
        identifiers={"id": "", "email": "a@b.c", "phone": "+84 90"},
        tokens={"notification_messages_token": ""},
        texts=("Xin chào An", "🎉"),
    )
    recipient, request, identifiers = built(builder.make(fields))
    # The same, as the renderer gives them: identifiers, tokens, then texts.
    again = builder.build(["", "a@b.c", "+84 90", "", "Xin chào An", "🎉"])
    assert again == (recipient, request, identifiers)
    assert recipient == "+84 90"  # no id: the first identifier in priority order
    # Every identifier it has: a run that keyed recipients in another order finds them.
    assert identifiers == (("email", "a@b.c"), ("phone", "+84 90"))
    assert request.url == "https://api.smax.bot/bots/6123abcd/send"
    assert request.headers["Authorization"] == "Bearer t0k&n="
    assert orjson.loads(request.body or b"") == {
        "customer_email": "a@b.c",
        "customer_phone": "+84 90",
        "messages": [{"text": "Xin chào An"}, {"text": "🎉"}],
        "messaging_tag": "POST_PURCHASE_UPDATE",
        "priority": ["phone", "email"],
    }


@pytest.mark.parametrize(
    ("identifiers", "recipient"),
    [
        ({"id": "c-1", "email": "a@b.c", "phone": "+84"}, "c-1"),  # the id wins
        ({"id": "", "email": "a@b.c", "phone": "+84"}, "+84"),  # then fbid, phone, email
        ({"id": "", "email": "a@b.c", "phone": ""}, "a@b.c"),
    ],
)
def test_v2_recipient_key(identifiers: dict[str, str], recipient: str) -> None:
    got = built(v2_builder(block_id="9").make(V2Fields(identifiers)))
    assert got.recipient == recipient
    assert orjson.loads(got.request.body or b"")["block_id"] == "9"


def test_v2_without_any_identifier_or_with_an_empty_text_is_skipped() -> None:
    nobody = V2Fields({"id": "", "email": "", "phone": " "})
    assert v2_builder(block_id="9").make(nobody) == "no recipient id"
    builder = v2_builder(messages=("x",))
    empty = V2Fields({"id": "1", "email": "", "phone": ""}, texts=(" ",))
    assert builder.make(empty) == "message.messages[0].text renders empty"


def test_a_v2_text_over_messengers_limit_is_a_refused_row() -> None:
    b = v2.builder(V2Message(customer=(("id", "{{ customer.id }}"),), messages=("t",)), ENDPOINT)
    assert isinstance(b.make(V2Fields({"id": "1"}, {}, ["x" * 2000])), Built)
    refused = b.make(V2Fields({"id": "1"}, {}, ["x" * 2001]))
    assert refused == Refusal(
        "message.messages[0].text: 2,001 characters, over Messenger's 2,000 for one text message"
    )
    assert v2.check({"customer": {"id": "1"}, "messages": [{"text": "y" * 2500}]}) == [
        (
            ("message", "messages", 0, "text"),
            "2,500 characters, over Messenger's 2,000 for one text message",
        )
    ]


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    block=_TEXT.filter(bool),
    attributes=st.lists(st.tuples(_TEXT.filter(bool), _TEXT), max_size=4, unique_by=lambda a: a[0]),
    constant=st.lists(st.booleans(), min_size=5, max_size=5),
    api=st.sampled_from([v1, chatfuel]),
)
def test_a_constant_field_makes_the_same_url_as_a_template_rendering_the_same_text(
    block: str, attributes: list[tuple[str, str]], constant: list[bool], api: Any
) -> None:
    """Folding plain-text fields into the URL made once changes no byte of any request."""
    sources = [block, *(value for _, value in attributes)]
    templated = [f"{{{{ customer.f{i} }}}}" for i in range(len(sources))]
    mixed = [
        s if constant[i] else t for i, (s, t) in enumerate(zip(sources, templated, strict=True))
    ]
    names = [name for name, _ in attributes]

    def message(values: list[str]) -> V1Message:
        key = "flow_name" if api is chatfuel else "block_name"
        return V1Message(
            user_id="{{ customer.id }}",
            attributes=tuple(zip(names, values[1:], strict=True)),
            messaging_tag="ACCOUNT_UPDATE",
            **{key: values[0]},
        )

    rendered = ["u 1", *sources]
    every_template = api.builder(message(templated), ENDPOINT).build(rendered)
    some_constant = api.builder(message(mixed), ENDPOINT).build(rendered)
    assert some_constant == every_template
