"""Audience sources, streamed one record at a time: CSV, JSON Lines, JSON array, inline.

A record is a plain dict of its fields with missing values (an empty CSV cell, a JSON null or
empty string) left out, so that a template reading one fails instead of rendering "Hi ,".
A record that cannot be read is yielded as a `Row` with an error instead of fields.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from runner.errors import UsageError
from runner.model import Audience

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
_SURROGATES = re.compile("[\udc80-\udcff]")  # undecodable bytes, kept by surrogateescape

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class Row(NamedTuple):
    n: int  # 1-based position in the audience
    fields: dict[str, Any] | None
    error: str | None = None


def format_of(path: Path, declared: str | None) -> str | None:
    return declared or FORMATS.get(path.suffix.lower())


def rows(audience: Audience) -> Iterator[Row]:
    if audience.customers is not None:
        return _inline(audience.customers)
    assert audience.file is not None and audience.format is not None
    if not audience.file.is_file():
        raise UsageError(f"{audience.file}: audience file not found")
    reader = {"csv": _csv, "jsonl": _jsonl, "json": _json_array}[audience.format]
    return reader(audience.file)


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (_clean(v) if type(v) is dict else v)
        for k, v in record.items()
        if v is not None and v != ""
    }


def _inline(customers: Any) -> Iterator[Row]:
    for n, record in enumerate(customers, 1):
        yield Row(n, _clean(dict(record)))


def _csv(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise UsageError(f"{path}: cannot read the CSV header: {exc}") from None
        if not header:
            return
        if _SURROGATES.search("".join(header)):
            raise UsageError(f"{path}: the CSV header is not valid UTF-8")
        width = len(header)
        n = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                n += 1
                yield Row(n, None, f"unreadable CSV: {exc}")
                continue
            if not values:
                continue  # a blank line is not a record
            n += 1
            if len(values) != width:
                yield Row(n, None, f"expected {width} fields, found {len(values)}")
            elif not "".join(values).isascii() and _SURROGATES.search("".join(values)):
                yield Row(n, None, "not valid UTF-8")
            elif "" in values:  # an empty cell is a missing value: leave the key out
                yield Row(n, {k: v for k, v in zip(header, values, strict=True) if v})
            else:
                yield Row(n, dict(zip(header, values, strict=True)))


def _jsonl(path: Path) -> Iterator[Row]:
    with path.open("rb") as handle:
        n = 0
        for line in handle:
            if not line.strip():
                continue
            n += 1
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield Row(n, None, f"invalid JSON: {exc}")
                continue
            if type(record) is not dict:
                yield Row(n, None, f"expected a JSON object, got {_kind(record)}")
            else:
                yield Row(n, _clean(record))


def _json_array(path: Path) -> Iterator[Row]:
    import ijson  # imported here: only JSON-array audiences pay for it

    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
        if head[:3] == b"\xef\xbb\xbf":
            head = head[3:].lstrip()
        if head and not head.startswith(b"["):
            raise UsageError(f"{path}: expected a JSON array of customer objects")
        handle.seek(0)
        if head[:3] == b"\xef\xbb\xbf":
            handle.read(3)
        n = 0
        items = ijson.items(handle, "item", use_float=True)
        while True:
            try:
                record = next(items)
            except StopIteration:
                return
            except ijson.JSONError as exc:
                yield Row(n + 1, None, f"invalid JSON (the rest of the file is unreadable): {exc}")
                return
            n += 1
            if type(record) is not dict:
                yield Row(n, None, f"expected a JSON object, got {_kind(record)}")
            else:
                yield Row(n, _clean(record))


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else "null"
    )
