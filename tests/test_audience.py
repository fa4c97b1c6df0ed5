from __future__ import annotations

import os
import time
from decimal import Decimal
from pathlib import Path

import pytest

from runner.audience import MAX_LINE, Row, columns, rows, rows_hint
from runner.errors import AudienceError
from runner.model import Audience


def read(path: Path, fmt: str) -> list[Row]:
    return list(rows(Audience(file=path, format=fmt, customers=None, where=None)))


def test_csv_with_bom_quotes_and_embedded_newlines(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes('\ufeffid,name,note\n1,"Lan, Hoa","two\nlines"\n2,Bình,\n'.encode())
    assert read(path, "csv") == [
        Row(1, {"id": "1", "name": "Lan, Hoa", "note": "two\nlines"}),
        Row(2, {"id": "2", "name": "Bình"}),  # the empty cell is a missing value
    ]


def test_csv_rows_that_cannot_be_read_are_reported_with_their_number(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"id,name\n1,An\n2\n\n3,B\xffy\n4,Dung,extra\n5,Em\n")
    assert read(path, "csv") == [
        Row(1, {"id": "1", "name": "An"}),
        Row(2, None, "expected 2 fields, found 1"),
        Row(3, None, "not valid UTF-8"),  # the blank line is not a record
        Row(4, None, "expected 2 fields, found 3"),
        Row(5, {"id": "5", "name": "Em"}),
    ]


def test_an_empty_csv_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("")
    assert read(path, "csv") == []


def test_jsonl_lines_nulls_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"id": 1, "name": null, "email": ""}\n\n{"id": 2, "nested": {"a": null, "b": 1}}\n'
        "not json\n[1]\n"
    )
    got = read(path, "jsonl")
    assert got[:2] == [Row(1, {"id": 1}), Row(2, {"id": 2, "nested": {"b": 1}})]
    assert got[2].n == 3
    assert got[2].fields is None
    assert (got[2].error or "").startswith("invalid JSON")
    assert got[3] == Row(4, None, "expected a JSON object, got an array")


def test_json_array_is_read_incrementally(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(
        '[{"id": "1", "x": null}, 5, {"id": "3", "score": 1.50, "tags": [{"a": 1}]},'
        ' {"id": 123456789012345678901}]'
    )
    assert read(path, "json") == [
        Row(1, {"id": "1"}),
        Row(2, None, "expected a JSON object, got a number"),
        Row(3, {"id": "3", "score": Decimal("1.50"), "tags": [{"a": 1}]}),
        Row(4, {"id": 123456789012345678901}),  # digits kept, never through a float
    ]


def test_a_broken_json_array_stops_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[{"id": "1"}, {"id": ')
    got = read(path, "json")
    assert got[0] == Row(1, {"id": "1"})
    assert got[1].n == 2
    assert got[1].error is not None
    assert got[1].error.startswith("invalid JSON (the rest of the file is unreadable)")


def test_a_json_file_that_is_not_an_array(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"id": 1}')
    with pytest.raises(AudienceError, match="expected a JSON array of customer objects"):
        read(path, "json")


def test_inline_customers() -> None:
    audience = Audience(file=None, format=None, customers=({"id": 1, "n": None},), where=None)
    assert list(rows(audience)) == [Row(1, {"id": 1})]


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(AudienceError, match="audience file not found"):
        read(tmp_path / "gone.csv", "csv")


def test_reading_is_streamed(tmp_path: Path) -> None:
    """The reader yields the first row before the rest of the file is touched."""
    path = tmp_path / "a.csv"
    path.write_text("id\n1\n2\n")
    stream = rows(Audience(file=path, format="csv", customers=None, where=None))
    assert next(stream) == Row(1, {"id": "1"})
    path.unlink()  # an open handle keeps reading what is left
    assert next(stream) == Row(2, {"id": "2"})


def test_json_lines_numbers_keep_their_digits(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 123456789012345678901}\n{"id": 123456789012345678902, "p": 0.10}\n')
    assert read(path, "jsonl") == [
        Row(1, {"id": 123456789012345678901}),
        Row(2, {"id": 123456789012345678902, "p": Decimal("0.10")}),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'id,name\n1,An\n2,"Bi\n3,Chi\n4,Dung\n',
            "a.csv:3: a quote opened on this line never closes, so every line after it would be "
            "read as one field; close or remove the quote",
        ),
        (
            'id,name\n1,"An"na\n2,B\n',
            "a.csv:2: a stray quote: a field that starts with a quote must end with one right "
            "before the next comma (',' expected after '\"')",
        ),
        (
            "id,name,id\n1,An,2\n",
            "a.csv:1: the column 'id' appears twice in the header (columns 1 and 3); one would "
            "silently win: rename one",
        ),
        ("id,,x\n1,2,3\n", "a.csv:1: column 2 of the header has no name"),
    ],
)
def test_a_malformed_csv_is_refused_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "a.csv"
    path.write_text(text)
    with pytest.raises(AudienceError) as caught:
        read(path, "csv")
    assert str(caught.value) == f"{tmp_path}/{message}"


def test_a_line_past_the_limit_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    for name, fmt in (("a.csv", "csv"), ("a.jsonl", "jsonl")):
        path = tmp_path / name
        with path.open("w") as handle:
            handle.write("id\n" if fmt == "csv" else '{"id": 1}\n')
            handle.write("x" * (MAX_LINE * 8))  # no newline at all
        with pytest.raises(AudienceError, match=r":2: a line longer than 1,048,576"):
            read(path, fmt)


def test_json_nested_past_the_limit_is_refused_quickly(tmp_path: Path) -> None:
    deep = "[" + '{"a":' * 100_000 + "1" + "}" * 100_000 + "]"
    (tmp_path / "a.json").write_text(deep)
    (tmp_path / "a.jsonl").write_text('{"id": 1}\n' + deep[1:-1] + "\n")
    started = time.perf_counter()
    with pytest.raises(AudienceError, match="nested deeper than 32 levels"):
        read(tmp_path / "a.json", "json")
    with pytest.raises(AudienceError, match=r"a.jsonl:2: JSON nested deeper than 32 levels"):
        read(tmp_path / "a.jsonl", "jsonl")
    assert time.perf_counter() - started < 5


def test_columns_are_the_header_or_the_first_records_keys(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,city\n1,Hue\n")
    (tmp_path / "a.jsonl").write_text('{"id": 1, "city": "Hue"}\n{"id": 2, "tz": null}\n')
    assert columns(Audience(tmp_path / "a.csv", "csv", None, None)) == {"id", "city"}
    # A key is a column even where its first values are null.
    assert columns(Audience(tmp_path / "a.jsonl", "jsonl", None, None)) == {"id", "city", "tz"}
    inline = Audience(None, None, ({"id": 1}, {"id": 2, "vip": "y"}), None)
    assert columns(inline) == {"id", "vip"}


def test_the_rows_hint_is_near_the_count_and_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,name\n" + "".join(f"{10**15 + i},Name {i % 7}\n" for i in range(20000)))
    hint = rows_hint(Audience(file=path, format="csv", customers=None, where=None))
    assert 19000 <= hint <= 21000
    inline = Audience(file=None, format=None, customers=({"id": "1"}, {"id": "2"}), where=None)
    assert rows_hint(inline) == 2
    missing = Audience(file=tmp_path / "none.csv", format="csv", customers=None, where=None)
    assert rows_hint(missing) == 0
    (tmp_path / "one-line.csv").write_text("id")
    assert rows_hint(Audience(tmp_path / "one-line.csv", "csv", None, None)) == 0
    os.mkfifo(tmp_path / "pipe.csv")  # opening it to read would wait for a writer
    assert rows_hint(Audience(tmp_path / "pipe.csv", "csv", None, None)) == 0


def test_a_lone_half_of_a_utf16_pair_in_a_json_array_is_an_invalid_row(tmp_path: Path) -> None:
    """The fast JSON parser would read "12\\ud800" as "12?" and send to another recipient;
    the row is refused, as JSON Lines refuses it, and escaped pairs still read whole."""
    path = tmp_path / "a.json"
    path.write_text(
        '[{"id": "12\\ud800"}, {"id": "13", "name": "\\ud83d\\ude00 Hi", "score": 1.5},'
        ' {"id": "14", "note": "\\udc00"}]'
    )
    found = list(rows(Audience(file=path, format="json", customers=None, where=None)))
    assert found == [
        Row(1, None, "invalid JSON: a \\u escape holds half of a UTF-16 pair"),
        Row(2, {"id": "13", "name": "\U0001f600 Hi", "score": Decimal("1.5")}),
        Row(3, None, "invalid JSON: a \\u escape holds half of a UTF-16 pair"),
    ]
