"""Audience sources, streamed one record at a time: CSV, JSON Lines, JSON array, inline.

A record is a plain dict of its fields with missing values (an empty CSV cell, a JSON null or
empty string) left out, so that a template reading one fails instead of rendering "Hi ,".
Values keep what was written: CSV cells are text, JSON integers of any size stay exact and
decimals are read as `Decimal`, never rounded through a float.

A record that cannot be read is yielded as a `Row` with an error instead of fields (it is
invalid). A file that is malformed as a whole raises `AudienceError` naming the line: an
unterminated quote (which would otherwise swallow every row after it), a duplicate or empty
column name, a line longer than `MAX_LINE`, JSON nested deeper than `MAX_DEPTH`.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, AnyStr, NamedTuple

import orjson

from runner.errors import AudienceError
from runner.model import Audience

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
MAX_LINE = 1 << 20  # characters (CSV) or bytes (JSON Lines) in one line, header included
MAX_DEPTH = 32  # nesting of JSON objects and arrays inside one record
COLUMNS_FROM = 100  # JSON records whose keys say which columns an audience has
_SURROGATES = re.compile("[\udc80-\udcff]")  # undecodable bytes, kept by surrogateescape

csv.field_size_limit(MAX_LINE)


class Row(NamedTuple):
    n: int  # 1-based position in the audience
    fields: dict[str, Any] | None
    error: str | None = None


# `Row(n, fields)` runs a Python-level constructor; the hot paths make their tuple in C
# (a tenth of a microsecond a row, a few percent of a plan).
_tuple = tuple.__new__


def format_of(path: Path, declared: str | None) -> str | None:
    return declared or FORMATS.get(path.suffix.lower())


def rows(audience: Audience) -> Iterator[Row]:
    if audience.customers is not None:
        return _inline(audience.customers)
    assert audience.file is not None
    assert audience.format is not None
    if not audience.file.is_file():
        raise AudienceError(f"{audience.file}: audience file not found")
    if audience.format == "csv":
        return _csv(audience.file, audience.delimiter)
    reader = {"jsonl": _jsonl, "json": _json_array}[audience.format]
    return reader(audience.file)


_SAMPLE = 1 << 16  # bytes read to guess a file's rows


def rows_hint(audience: Audience) -> int:
    """About how many records the audience holds (from its size and its first lines), so
    that what grows with it is sized once; 0 when unknown. Never raises."""
    if audience.customers is not None:
        return len(audience.customers)
    assert audience.file is not None
    try:
        if not audience.file.is_file():  # a pipe would block here, and lose what it gives
            return 0
        with audience.file.open("rb") as handle:
            head = handle.read(_SAMPLE)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return 0
    lines = head.count(b"\n")
    if not lines:
        return 0
    return size // max(1, len(head[: head.rindex(b"\n") + 1]) // lines) + 1


def columns(audience: Audience) -> set[str]:
    """The column names the audience offers templates: a CSV's header, the keys of the first
    `COLUMNS_FROM` JSON records, or of every inline record. Raises `AudienceError`."""
    if audience.customers is not None:
        return {str(k) for record in audience.customers for k in record}
    assert audience.file is not None
    assert audience.format is not None
    if audience.format == "csv":
        return set(_csv_header(audience.file, audience.delimiter))
    reader = _jsonl if audience.format == "jsonl" else _json_array
    found: set[str] = set()
    for row in reader(audience.file, clean=False):
        if row.n > COLUMNS_FROM:
            break
        if row.fields is not None:
            found.update(row.fields)
    return found


def header(audience: Audience) -> list[str]:
    """The audience's own columns in their order (a CSV's header; the keys of the first
    records otherwise), for undelivered.csv; empty when they cannot be read."""
    if audience.format == "csv" and audience.file is not None:
        try:
            return _csv_header(audience.file, audience.delimiter)
        except (OSError, AudienceError):
            return []
    try:
        return sorted(columns(audience))
    except (OSError, AudienceError):
        return []


def _csv_header(path: Path, delimiter: str) -> list[str]:
    with _open_text(path) as handle:
        lines = _csv_lines(handle, path)
        return _header(csv.reader(lines, strict=True, delimiter=delimiter), path)


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (_clean(v) if type(v) is dict else v)
        for k, v in record.items()
        if v is not None and v != ""
    }


def _inline(customers: Any) -> Iterator[Row]:
    for n, record in enumerate(customers, 1):
        yield Row(n, _clean(dict(record)))


def _open_text(path: Path) -> IO[str]:
    return path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")


def _bounded(handle: IO[AnyStr], path: Path, hint: str) -> Iterator[tuple[int, AnyStr]]:
    """(line number, line) of a file, refusing a line past `MAX_LINE` before it is read
    whole (a 2 GB file without a newline must not become a 2 GB string)."""
    number = 0
    while True:
        line = handle.readline(MAX_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE:
            raise AudienceError(f"{path}:{number}: a line longer than {MAX_LINE:,} {hint}")
        yield number, line


def _csv_lines(handle: IO[str], path: Path) -> Iterator[str]:
    hint = "characters; is this really a CSV file with one customer a line?"
    return (line for _, line in _bounded(handle, path, hint))


def _header(reader: Any, path: Path) -> list[str]:
    try:
        header: list[str] | None = next(reader, None)
    except csv.Error as exc:
        raise AudienceError(f"{path}:1: cannot read the CSV header: {exc}") from None
    if not header:
        return []
    if _SURROGATES.search("".join(header)):
        raise AudienceError(f"{path}:1: the CSV header is not valid UTF-8")
    seen: dict[str, int] = {}
    for i, name in enumerate(header, 1):
        if not name.strip():
            raise AudienceError(f"{path}:1: column {i} of the header has no name")
        if name in seen:
            raise AudienceError(
                f"{path}:1: the column {name!r} appears twice in the header (columns "
                f"{seen[name]} and {i}); one would silently win: rename one"
            )
        seen[name] = i
    return header


def _csv(path: Path, delimiter: str = ",") -> Iterator[Row]:
    with _open_text(path) as handle:
        # Strict: a quote that opens and never closes is an error, not a field that swallows
        # every row after it.
        reader = csv.reader(_csv_lines(handle, path), strict=True, delimiter=delimiter)
        header = _header(reader, path)
        if not header:
            return
        width = len(header)
        n = 0
        while True:
            starts = reader.line_num + 1  # the line this record starts on
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise AudienceError(_csv_problem(path, starts, reader.line_num, exc)) from None
            if not values:
                continue  # a blank line is not a record
            n += 1
            if len(values) != width:
                yield Row(n, None, f"expected {width} fields, found {len(values)}")
            elif not "".join(values).isascii() and _SURROGATES.search("".join(values)):
                yield Row(n, None, "not valid UTF-8")
            elif "" in values:  # an empty cell is a missing value: leave the key out
                yield _tuple(
                    Row, (n, {k: v for k, v in zip(header, values, strict=True) if v}, None)
                )
            else:
                yield _tuple(Row, (n, dict(zip(header, values, strict=True)), None))


def _csv_problem(path: Path, starts: int, now: int, exc: csv.Error) -> str:
    text = str(exc)
    if "unexpected end of data" in text:
        return (
            f"{path}:{starts}: a quote opened on this line never closes, so every line after "
            "it would be read as one field; close or remove the quote"
        )
    if "expected after" in text:
        return (
            f"{path}:{now}: a stray quote: a field that starts with a quote must end with one "
            f"right before the next comma ({text})"
        )
    if "field larger than field limit" in text:
        return f"{path}:{starts}: a field longer than {MAX_LINE:,} characters (an unclosed quote?)"
    return f"{path}:{now}: unreadable CSV: {text}"


def _has_float(value: Any) -> bool:
    if type(value) is float:
        return True
    if type(value) is dict:
        return any(_has_float(v) for v in value.values())
    if type(value) is list:
        return any(_has_float(v) for v in value)
    return False


def _jsonl(path: Path, clean: bool = True) -> Iterator[Row]:
    with path.open("rb") as handle:
        n = 0
        for number, line in _bounded(handle, path, "bytes; JSON Lines holds one customer a line"):
            if not line.strip():
                continue
            n += 1
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                if "depth" in str(exc) or "recursion" in str(exc):
                    raise AudienceError(
                        f"{path}:{number}: JSON nested deeper than {MAX_DEPTH} levels"
                    ) from None
                yield Row(n, None, f"invalid JSON on line {number}: {exc}")
                continue
            if type(record) is not dict:
                yield Row(n, None, f"expected a JSON object, got {_kind(record)}")
                continue
            if _has_float(record):
                # orjson reads big integers and decimals as floats: read this line exactly.
                record = json.loads(line, parse_float=Decimal)
            _check_depth(record, path, number)
            yield Row(n, _clean(record) if clean else record)


def _check_depth(value: Any, path: Path, where: int, depth: int = 1) -> None:
    if depth > MAX_DEPTH:
        raise AudienceError(f"{path}:{where}: JSON nested deeper than {MAX_DEPTH} levels")
    if type(value) is dict:
        for v in value.values():
            if type(v) is dict or type(v) is list:
                _check_depth(v, path, where, depth + 1)
    elif type(value) is list:
        for v in value:
            if type(v) is dict or type(v) is list:
                _check_depth(v, path, where, depth + 1)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # half of a UTF-16 pair, escaped


def _surrogate_escapes(handle: IO[bytes]) -> bool:
    """Whether the file escapes any half of a UTF-16 pair (``\\ud83d\\ude00``, or a lone one),
    read a megabyte at a time."""
    carry = b""
    while chunk := handle.read(1 << 20):
        if _SURROGATE_ESCAPE.search(carry + chunk):
            return True
        carry = chunk[-5:]
    return False


def _json_array(path: Path, clean: bool = True) -> Iterator[Row]:
    import ijson  # imported here: only JSON-array audiences pay for it

    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
        bom = head[:3] == b"\xef\xbb\xbf"
        if bom:
            head = head[3:].lstrip()
        if head and not head.startswith(b"["):
            raise AudienceError(f"{path}: expected a JSON array of customer objects")
        # The fast parser turns a lone half of a UTF-16 pair into "?": "12\ud800" would be
        # sent to recipient 12?. The Python one keeps it, and such a record is refused below,
        # as JSON Lines refuses it.
        # Only for the rows themselves: `columns` (validate, on the first records) reads keys.
        handle.seek(0)
        exact = clean and _surrogate_escapes(handle)
        handle.seek(3 if bom else 0)
        parse = ijson.get_backend("python").basic_parse if exact else ijson.basic_parse
        n = 0
        records = _records(parse(handle), path)
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except ijson.JSONError as exc:
                yield Row(n + 1, None, f"invalid JSON (the rest of the file is unreadable): {exc}")
                return
            n += 1
            if type(record) is not dict:
                yield Row(n, None, f"expected a JSON object, got {_kind(record)}")
            elif exact and _lone_surrogate(record):
                yield Row(n, None, "invalid JSON: a \\u escape holds half of a UTF-16 pair")
            else:
                yield Row(n, _clean(record) if clean else record)


def _lone_surrogate(record: dict[str, Any]) -> bool:
    try:
        orjson.dumps(record, default=str)  # numbers come as Decimal
    except orjson.JSONEncodeError:
        return True
    return False


def _records(events: Iterator[tuple[str, Any]], path: Path) -> Iterator[Any]:
    """The items of a top-level JSON array, built from parser events, never deeper than
    `MAX_DEPTH` (a record nested 100,000 deep costs nothing before it is refused)."""
    first = next(events, None)
    if first is None:
        return
    if first[0] != "start_array":
        raise AudienceError(f"{path}: expected a JSON array of customer objects")
    stack: list[Any] = []
    keys: list[Any] = []
    for event, value in events:
        if event == "map_key":
            keys[-1] = value
            continue
        if event == "start_map" or event == "start_array":
            if len(stack) >= MAX_DEPTH:
                raise AudienceError(f"{path}: a record nested deeper than {MAX_DEPTH} levels")
            stack.append({} if event == "start_map" else [])
            keys.append(None)
            continue
        if event == "end_map" or event == "end_array":
            if not stack:
                return  # the end of the audience
            value = stack.pop()
            keys.pop()
        if not stack:
            yield value
        elif type(stack[-1]) is dict:
            stack[-1][keys[-1]] = value
        else:
            stack[-1].append(value)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float | Decimal) else "null"
    )
