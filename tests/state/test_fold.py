"""Folding a journal into a SQLite state: the rows it leaves are those its records, applied
one after the other, would leave, whatever the journal holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.state import journal
from runner.state.sqlite import _CLAIM, _OUTCOME, SCHEMA, apply

RECIPIENTS = ["a", "b", "c", "d"]

_claims = st.tuples(st.just(journal.CLAIM), st.sampled_from(RECIPIENTS), st.integers(1, 9))
_outcomes = st.tuples(
    st.just(journal.OUTCOME),
    st.sampled_from(RECIPIENTS),
    st.sampled_from(["sent", "failed", "unsent", "uncertain"]),
    st.integers(1, 3),
    st.sampled_from([None, 200, 400, 503]),
    st.sampled_from([None, "ok", "no"]),
    st.sampled_from([None, "HTTP 503"]),
)


def _database(before: list[tuple[str, str, int]]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(SCHEMA)
    for recipient, status, attempts in before:  # rows an earlier run left
        db.execute(
            "INSERT INTO recipients (campaign, recipient, row, status, attempts, run_id, "
            "first_at, updated_at) VALUES ('c', ?, 1, ?, ?, 'old', 0, 0)",
            (recipient, status, attempts),
        )
    return db


def _one_by_one(db: sqlite3.Connection, records: list[list[Any]]) -> None:
    for record in records:
        if record[0] == journal.CLAIM:
            _, recipient, row, at = record
            db.execute(_CLAIM, ("c", recipient, row, "run-1", at, at))
        else:
            _, recipient, status, attempts, http_status, result, error, at = record
            db.execute(_OUTCOME, (status, attempts, http_status, result, error, at, "c", recipient))


def _rows(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return db.execute("SELECT * FROM recipients ORDER BY campaign, recipient").fetchall()


@settings(max_examples=100, deadline=None)
@given(
    before=st.lists(
        st.tuples(
            st.sampled_from(RECIPIENTS), st.sampled_from(["failed", "uncertain"]), st.just(1)
        ),
        unique_by=lambda r: r[0],
    ),
    operations=st.lists(st.one_of(_claims, _outcomes), max_size=30),
)
def test_folding_leaves_what_the_records_one_by_one_leave(
    tmp_path_factory: Any, before: list[tuple[str, str, int]], operations: list[tuple[Any, ...]]
) -> None:
    records = [[*op, float(t)] for t, op in enumerate(operations)]
    path = tmp_path_factory.mktemp("fold") / "s.sqlite3.c.journal"
    writer = journal.Writer(Path(path), "run-1")
    for record in records:
        writer.add(record)
    writer.close()

    expected = _database(before)
    _one_by_one(expected, records)
    folded = _database(before)
    assert apply(folded, "c", Path(path)) == "run-1"
    assert _rows(folded) == _rows(expected)
