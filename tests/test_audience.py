from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.audience import Row, rows
from runner.errors import UsageError
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
    assert got[2].n == 3 and got[2].fields is None and got[2].error.startswith("invalid JSON")
    assert got[3] == Row(4, None, "expected a JSON object, got an array")


def test_json_array_is_read_incrementally(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"id": "1", "x": None}, 5, {"id": "3", "score": 1.5}]))
    assert read(path, "json") == [
        Row(1, {"id": "1"}),
        Row(2, None, "expected a JSON object, got a number"),
        Row(3, {"id": "3", "score": 1.5}),
    ]


def test_a_broken_json_array_stops_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[{"id": "1"}, {"id": ')
    got = read(path, "json")
    assert got[0] == Row(1, {"id": "1"})
    assert got[1].n == 2 and got[1].error is not None
    assert got[1].error.startswith("invalid JSON (the rest of the file is unreadable)")


def test_a_json_file_that_is_not_an_array(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"id": 1}')
    with pytest.raises(UsageError, match="expected a JSON array of customer objects"):
        read(path, "json")


def test_inline_customers() -> None:
    audience = Audience(file=None, format=None, customers=({"id": 1, "n": None},), where=None)
    assert list(rows(audience)) == [Row(1, {"id": 1})]


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="audience file not found"):
        read(tmp_path / "gone.csv", "csv")


def test_reading_is_streamed(tmp_path: Path) -> None:
    """The reader yields the first row before the rest of the file is touched."""
    path = tmp_path / "a.csv"
    path.write_text("id\n1\n2\n")
    stream = rows(Audience(file=path, format="csv", customers=None, where=None))
    assert next(stream) == Row(1, {"id": "1"})
    path.unlink()  # an open handle keeps reading what is left
    assert next(stream) == Row(2, {"id": "2"})
