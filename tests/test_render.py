from __future__ import annotations

import time
from typing import Any

import pytest

from runner.model import Field
from runner.render import FILTERED, Renderer, Skip

CONTEXT = {"vars": {"season": "spring"}, "campaign": {"name": "c", "description": ""}}


def renderer(*sources: str | tuple[str, bool], where: str | None = None) -> Renderer:
    fields = []
    for i, source in enumerate(sources):
        text, lenient = source if isinstance(source, tuple) else (source, False)
        fields.append(Field(("message", f"f{i}"), text, lenient))
    return Renderer(fields, where, CONTEXT)


def test_constants_templates_vars_and_campaign() -> None:
    r = renderer("Spring Sale", "Hi {{ customer.name }}", "{{ vars.season }}/{{ campaign.name }}")
    assert r.render({"name": "An"}) == ["Spring Sale", "Hi An", "spring/c"]


def test_a_missing_value_skips_the_row_with_the_field_that_needed_it() -> None:
    r = renderer("{{ customer.id }}", "Hi {{ customer.first_name }}")
    assert r.render({"id": "1"}) == Skip("missing value: customer.first_name in message.f1")


def test_default_is_the_way_to_write_a_fallback() -> None:
    r = renderer("Hi {{ customer.first_name | default('there') }}")
    assert r.render({}) == ["Hi there"]


def test_optional_fields_render_a_missing_value_as_empty() -> None:
    r = renderer(("{{ customer.email }}", True), ("{{ customer.profile.phone }}", True), "x")
    assert r.render({}) == ["", "", "x"]


def test_where_filters_before_anything_else_renders() -> None:
    r = renderer("{{ customer.name }}", where='customer.opted_in == "yes"')
    assert r.render({"opted_in": "no"}) is FILTERED  # no name, yet not an error: filtered first
    assert r.render({"opted_in": "yes", "name": "An"}) == ["An"]
    assert r.render({"name": "An"}) == Skip("missing value: customer.opted_in in audience.where")


def test_filter_errors_name_the_field() -> None:
    r = renderer("{{ customer.n | int // 0 }}")
    assert r.render({"n": "3"}) == Skip(
        "template error: ZeroDivisionError: integer division or modulo by zero in message.f0"
    )


def test_a_value_holding_the_internal_separator_still_renders_exactly() -> None:
    r = renderer("{{ customer.a }}", "{{ customer.b }}")
    assert r.render({"a": "x\x1ey", "b": "z"}) == ["x\x1ey", "z"]


@pytest.mark.parametrize(
    "template",
    [
        "{{ customer.__class__ }}",
        "{{ customer.items }}",
        "{{ customer.keys() }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ vars.__init__.__globals__ }}",
        "{{ campaign.__class__.__subclasses__() }}",
    ],
)
def test_templates_cannot_reach_python_internals(template: str) -> None:
    got = renderer(template).render({"name": "An"})
    assert isinstance(got, Skip)  # the row is skipped: nothing rendered at all
    for leak in ("<class", "<built-in", "<method", "<function", "object at 0x"):
        assert leak not in got


def test_no_environment_variables_or_helpers_are_reachable() -> None:
    for template in ("{{ env }}", "{{ environ }}", "{{ lipsum }}", "{{ cycler }}"):
        assert isinstance(renderer(template).render({}), Skip)


def test_a_field_named_like_a_dict_method_is_the_field() -> None:
    assert renderer("{{ customer.items }}").render({"items": "3 books"}) == ["3 books"]


def test_assignments_never_leak_from_one_customer_to_the_next() -> None:
    r = renderer(
        "{% if customer.vip is defined %}{% set tier = 'VIP' %}{% endif %}"
        "{{ tier | default('standard') }}"
    )
    assert r.render({"vip": "1"}) == ["VIP"]
    assert r.render({}) == ["standard"]


def test_many_customers_in_a_row_each_get_their_own_values() -> None:
    r = renderer("{{ customer.id }}", ("{{ customer.email }}", True), where="customer.ok == 'y'")
    got = [
        r.render({"id": str(i), "ok": "y" if i % 2 else "n", **({"email": "e"} if i % 3 else {})})
        for i in range(6)
    ]
    assert got == [FILTERED, ["1", "e"], FILTERED, ["3", ""], FILTERED, ["5", "e"]]


def test_failing_rows_do_not_recompile_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Audiences where half the rows miss a field are common: diagnosis must stay cheap."""
    from runner import render

    r = renderer("{{ customer.id }}", "Hi {{ customer.first_name }}", where="customer.ok")
    compiled: list[str] = []
    original = render.STRICT.from_string

    def counting(source: str, *args: object, **kwargs: object) -> object:
        compiled.append(source)
        return original(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(render.STRICT, "from_string", counting)
    for i in range(50):
        assert isinstance(r.render({"id": str(i), "ok": "y"}), Skip)
    assert len(compiled) == 3  # the where expression and each field, each once


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (
            "{{ vars['update']({'x': customer.n}) }}",
            "undefined: 'dict object' has no attribute 'update' in message.a",
        ),
        ("{{ customer['keys']() }}", "missing value: customer.keys in message.a"),
        (
            "{{ customer.tags.append(2) }}",
            "unsafe template: access to attribute 'append' of 'list' object is unsafe. in "
            "message.a",
        ),
        ("{{ 'x' * 10**9 }}", "a value longer than 64 KB in the message templates"),
        ("{{ 10 ** 100000 }}", "a power too large in the message templates"),
        (
            "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}",
            "rendering took longer than 100 ms in the message templates",
        ),
        (
            "{% for a in range(3000) %}{{ customer.n * 30 }}{% endfor %}",
            "message.a renders longer than 64 KB",
        ),
    ],
)
def test_templates_see_data_and_stay_within_limits(source: str, reason: str) -> None:
    shared_vars: dict[str, Any] = {"season": "spring"}
    renderer = Renderer(
        [Field(("message", "a"), source)], None, {"vars": shared_vars, "campaign": {}}
    )
    started = time.perf_counter()
    assert renderer.render({"n": "An", "tags": [1]}) == reason
    assert time.perf_counter() - started < 2
    assert shared_vars == {"season": "spring"}  # one row can never change the next one's


def test_recipient_keys_are_compared_after_nfc_and_trimming() -> None:
    from runner.apis import Built, v1
    from runner.model import Endpoint, V1Message

    build = v1.builder(V1Message(user_id="x", block_name="B"), Endpoint("http://h", "b", "t")).build
    composed, decomposed = "Nguy\u1ec5n", "Nguye\u0302\u0303n"
    first = build([f" {composed} ", "B"])
    second = build([decomposed, "B"])
    assert isinstance(first, Built)
    assert isinstance(second, Built)
    assert first.recipient == second.recipient == composed


def test_comparing_csv_text_with_a_number_says_what_to_do() -> None:
    renderer = Renderer([Field(("message", "a"), "x")], "customer.age > 18", {"vars": {}})
    assert renderer.render({"age": "20"}) == (
        "'>' not supported between instances of 'str' and 'int' in audience.where: CSV values "
        "are text; compare numbers with | int"
    )
    assert Renderer([Field(("message", "a"), "x")], "customer.age | int > 18", {"vars": {}}).render(
        {"age": "20"}
    ) == ["x"]
