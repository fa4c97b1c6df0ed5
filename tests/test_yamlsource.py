"""YAML read as written, with every position kept; hostile YAML refused with a line."""

from __future__ import annotations

import time

import pytest

from runner.yamlsource import Mark, YamlSyntaxError, format_path, parse


def test_keys_and_values_keep_their_positions() -> None:
    doc = parse("a: 1\nb:\n  c: [1, {x: y}]\n  d: |\n    hi\n")
    assert doc.data == {"a": 1, "b": {"c": [1, {"x": "y"}], "d": "hi\n"}}
    assert doc.keys[("b", "c")] == Mark(3, 3)
    assert doc.values[("b", "c", 1, "x")] == Mark(3, 14)
    assert ("b", "d") in doc.block_scalars


def test_duplicate_keys_are_remembered() -> None:
    doc = parse("a: 1\na: 2\n")
    assert doc.duplicates == [(("a",), Mark(2, 1))]


def test_a_missing_path_falls_back_to_its_nearest_ancestor() -> None:
    doc = parse("bot:\n  id: x\n")
    assert doc.key_mark(("bot", "token")) == Mark(1, 1)


def test_syntax_errors_carry_the_position() -> None:
    with pytest.raises(YamlSyntaxError) as info:
        parse("a: 1\n  b: [\n")
    assert info.value.mark.line == 2


def test_merge_keys_are_resolved() -> None:
    doc = parse("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert doc.data["other"] == {"x": 1, "y": 2}


def test_paths_print_like_the_campaign_reads() -> None:
    assert format_path(("message", "messages", 0, "text")) == "message.messages[0].text"
    assert format_path(()) == ""


def test_values_keep_what_was_written() -> None:
    doc = parse(
        "id: 0123456\ncountry: NO\nanswer: yes\nat: 12:30\nhex: 0x1F\nflag: true\n"
        "n: 42\nbig: 123456789012345678901\nprice: 1.50\n"
    )
    assert doc.data == {
        "id": "0123456",  # not the octal number 42798
        "country": "NO",  # not false
        "answer": "yes",
        "at": "12:30",  # not 750
        "hex": "0x1F",
        "flag": True,
        "n": 42,
        "big": 123456789012345678901,
        "price": 1.5,
    }
    assert doc.as_written(("price",), ("n",)) == {**doc.data, "price": "1.50", "n": "42"}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "a:\n\tb: 1\n",
            2,
            "invalid YAML: a tab in the indentation; YAML indents with spaces, not tabs",
        ),
        (
            "a:\tb\n",
            1,
            "invalid YAML: a tab between values, which this reader does not take as a separator "
            "(after ':' or inside [ ] and { }): write a space",
        ),
        (
            "a: {b:\t1}\n",
            1,
            "invalid YAML: a tab between values, which this reader does not take as a separator "
            "(after ':' or inside [ ] and { }): write a space",
        ),
        (
            "a: [1, 2\nb: 3\n",
            1,
            "invalid YAML: the [ opened here is never closed with ] "
            "(expected ',' or ']', but got ':' on line 2)",
        ),
        (
            "a: !!python/name:os.system x\n",
            1,
            "invalid YAML: the tag !!python/name:os.system is not allowed here (only plain YAML "
            "values: text, numbers, true/false, lists, mappings)",
        ),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", 1, None),
    ],
)
def test_hostile_or_broken_yaml_is_a_clear_error(text: str, line: int, message: str | None) -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        parse(text)
    assert caught.value.mark.line == line
    if message is not None:
        assert caught.value.message == message
    else:
        assert "nested" in caught.value.message


def test_an_alias_bomb_is_refused_at_once() -> None:
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    bomb = "\n".join(lines) + "\n"
    assert len(bomb) < 700
    started = time.perf_counter()
    with pytest.raises(YamlSyntaxError, match="expands to more than 100,000 values"):
        parse(bomb)
    assert time.perf_counter() - started < 1
