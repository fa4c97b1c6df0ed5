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
