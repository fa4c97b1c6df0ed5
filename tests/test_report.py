"""The report writer's own pieces: the summary's Markdown, decoded samples, the timeline."""

from __future__ import annotations

import re
from array import array

from runner.apis import decoded
from runner.report import line, summary_markdown
from runner.status import Status
from runner.tally import Summary, Tally


def test_decoded_requests_read_as_text() -> None:
    v1 = {
        "method": "POST",
        "url": "https://api.smax.bot/bots/b/users/42/send?bot_token=***&block_name=Spring%20Sale"
        "&greeting=Ch%C3%BAc%20m%E1%BB%ABng",
        "body": None,
    }
    assert decoded(v1) == [
        ("to", "42"),
        ("bot_token", "***"),
        ("block_name", "Spring Sale"),
        ("greeting", "Chúc mừng"),
    ]
    v2 = {
        "method": "POST",
        "url": "https://x/public/bots/b/send",
        "body": {
            "customer_phone": "+84",
            "messages": [{"text": "Xin chào"}],
            "priority": ["phone"],
        },
    }
    assert decoded(v2) == [
        ("customer_phone", "+84"),
        ("message 1", "Xin chào"),
        ("priority", '["phone"]'),
    ]


def test_the_job_summary_draws_the_timeline_with_mermaid() -> None:
    tally = Tally()
    tally.timeline = {"sent": array("I", [25, 24, 25, 10]), "retry": array("I", [0, 1, 0, 0])}
    tally.add(line(1, "1", Status.SENT))
    summary: Summary = {
        "counts": {"sent": 1},
        "rows": 1,
        "rate_limit": 25,
        "skipped_by_reason": {},
    }
    text = summary_markdown(summary, "Run: x", tally)
    assert "```mermaid\nxychart-beta\n" in text
    assert "  bar [25.0, 25.0, 25.0, 10.0]" in text
    assert "  line [25, 25, 25, 25]" in text


def test_the_summary_escapes_what_it_did_not_write() -> None:
    summary: Summary = {
        "counts": {"skipped": 1},
        "rows": 1,
        "skipped_by_reason": {"<img src=x> | `code`": 1},
        "errors": [
            {"status": "failed", "http_status": 200, "error": "**bold** [x](y)", "count": 2}
        ],
    }
    text = summary_markdown(summary, "Plan: <b>x</b>")
    assert not re.search(r"(?<!\\)<", text)  # every < is escaped: no HTML gets through
    assert r"\<img src=x\> \| \`code\`" in text
    assert r"\*\*bold\*\* \[x\]\(y\)" in text


def test_attempts_that_finish_out_of_order_keep_the_span_and_the_timeline() -> None:
    tally = Tally()
    tally.attempted(200, 10.0)  # finished first, let go second
    tally.attempted(200, 12.5)
    tally.attempted(None, 8.5, "retry")  # let go first, answered after a long wait
    assert (tally.first_request, tally.last_request) == (8.5, 12.5)
    assert tally.requests_per_s() == 0.5  # two intervals over four seconds
    assert tally.timeline["sent"] == array("I", [1, 0, 1])
    assert tally.timeline["retry"] == array("I", [1])  # second 0, not wrapped onto the last
