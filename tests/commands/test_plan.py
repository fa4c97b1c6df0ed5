from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import ThreadedMock, results, summary

REPO = Path(__file__).resolve().parents[2]  # the repository, above tests/commands/

CAMPAIGN = """\
version: 1
name: spring
bot:
  id: "6123abcd"
  token: ${PLAN_TOKEN}
audience:
  file: people.csv
  where: customer.opted_in == "yes"
message:
  user_id: "{{ customer.id }}"
  block_name: Spring Sale
  attributes:
    greeting: "Hi {{ customer.first_name }}"
"""
PEOPLE = """id,first_name,opted_in
1,An,yes
2,,yes
3,Chi,no
1,An,yes
,Em,yes
4,Giang
5,Hoa & Co,yes
"""


def test_plan_previews_counts_skips_and_requests_with_the_token_masked(
    invoke: Callable[..., Result], write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAN_TOKEN", "very-secret-token")
    write("c.yaml", CAMPAIGN)
    write("people.csv", PEOPLE)
    result = invoke("plan", "c.yaml", "--report", "out")
    assert result.exit_code == 2  # three invalid rows, none allowed: a run would refuse
    assert "very-secret-token" not in result.output
    assert "RUN WOULD REFUSE TO START:" in result.output
    assert (
        "c.yaml: 3 of 7 rows are invalid, more than audience.max_invalid allows (0); nothing "
        "was sent:"
    ) in result.output
    lines = result.output.splitlines()
    assert lines[:13] == [
        "Plan for spring (v1, 25 requests/s)",
        "",
        "  rows read      7",
        "  to send        2",
        "  invalid        3",
        "         1  missing value: customer.first_name in message.attributes.greeting",
        "         1  no recipient id",
        "         1  expected 3 fields, found 2",
        "  skipped        2",
        "         1  filtered",
        "         1  duplicate",
        "  estimated duration  0.1 s at 25 requests/s",
        "",
    ]
    assert (
        "    POST https://api.smax.bot/bots/6123abcd/users/5/send?bot_token=***&"
        "block_name=Spring%20Sale&greeting=Hi%20Hoa%20%26%20Co"
    ) in lines
    assert lines[-1] == "Dry run: nothing was sent."
    got = results(Path("out"))
    assert [(r["row"], r["status"], r["reason"]) for r in got] == [
        (1, "planned", None),
        (2, "invalid", "missing value: customer.first_name in message.attributes.greeting"),
        (3, "skipped", "filtered"),
        (4, "skipped", "duplicate of row 1"),
        (5, "invalid", "no recipient id"),
        (6, "invalid", "expected 3 fields, found 2"),
        (7, "planned", None),
    ]
    assert got[0]["request"] == {
        "method": "POST",
        "url": "https://api.smax.bot/bots/6123abcd/users/1/send?bot_token=***&"
        "block_name=Spring%20Sale&greeting=Hi%20An",
        "body": None,
    }
    s = summary(Path("out"))
    assert s["counts"] == {
        "planned": 2,
        "sent": 0,
        "failed": 0,
        "unsent": 0,
        "uncertain": 0,
        "invalid": 3,
        "deferred": 0,
        "skipped": 2,
    }
    assert s["exit_code"] == 2
    assert s["mode"] == "plan"
    md = (Path("out") / "summary.md").read_text()
    assert md.startswith("## Plan: spring\n")
    assert "Dry run: nothing was sent." in md
    for name in ("results.jsonl", "summary.json", "summary.md"):
        assert "very-secret-token" not in (Path("out") / name).read_text()


def test_plan_needs_no_secret_and_limit_stops_early(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    write("c.yaml", CAMPAIGN)
    write("people.csv", PEOPLE)
    result = invoke("plan", "c.yaml", "--limit", "3", "--report", "out")
    assert result.exit_code == 0
    assert "  rows read      3 (first 3 only)" in result.output
    assert len(results(Path("out"))) == 3


def test_plan_json_output_and_default_report_folder(
    invoke: Callable[..., Result], write: Callable[..., Path], tmp_path: Path
) -> None:
    write("c.yaml", CAMPAIGN)
    write("people.csv", PEOPLE)
    result = invoke("plan", "c.yaml", "--output", "json")
    data = json.loads(result.output)
    assert data["summary"]["counts"]["planned"] == 2
    assert len(data["samples"]) == 2
    report = Path(data["summary"]["report"])
    assert report.parent == tmp_path / "reports/spring"
    assert report.name.startswith("plan-")


def test_plan_appends_to_the_github_step_summary(
    invoke: Callable[..., Result],
    write: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    write("c.yaml", CAMPAIGN)
    write("people.csv", PEOPLE)
    step = tmp_path / "step.md"
    step.write_text("before\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    invoke("plan", "c.yaml")
    text = step.read_text()
    assert text.startswith("before\n## Plan: spring\n")


def test_every_example_plans_and_an_invalid_one_exits_2(
    invoke: Callable[..., Result], write: Callable[..., Path], tmp_path: Path
) -> None:
    shutil.copytree(REPO / "campaigns", tmp_path / "examples")
    for example in sorted((tmp_path / "examples").glob("*.yaml")):
        result = invoke("plan", example, "--sandbox")
        assert result.exit_code == 0, result.output
        assert "[sandbox]" in result.output
    write("bad.yaml", "version: 1\n")
    result = invoke("plan", "bad.yaml")
    assert result.exit_code == 2
    assert (
        result.output.endswith("3 problems: nothing was sent\n")
        or "nothing was sent" in result.output
    )


def test_a_report_folder_that_cannot_be_written_is_a_clear_error(
    invoke: Callable[..., Result], write: Callable[..., Path], tmp_path: Path
) -> None:
    write("c.yaml", CAMPAIGN)
    write("people.csv", PEOPLE)
    (tmp_path / "taken").write_text("a file, not a folder")
    result = invoke("plan", "c.yaml", "--report", "taken/report")
    assert result.exit_code == 2
    assert result.output.startswith("taken/report: cannot write the report here: ")
    result = invoke("plan", "c.yaml", "--out", "taken/plan.json")
    assert result.exit_code == 2
    assert result.output.startswith("taken/plan.json: cannot write the plan here: ")


def test_plan_reads_the_state_so_its_counts_are_what_a_run_would_send(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock(fail_rate=1.0, seed=3)  # a mix of refusals (failed) and 503s (unsent)
    path = v1_campaign(server.url, rows=6, retries=0, concurrency=1)
    assert invoke("run", path, "--report", "r", "--quiet").exit_code == 1
    earlier = {r["row"]: r["status"] for r in results(Path("r"))}
    unsent = sum(1 for s in earlier.values() if s == "unsent")
    failed = sum(1 for s in earlier.values() if s == "failed")
    preview = invoke("plan", path, "--report", "p")
    assert preview.exit_code == 0
    assert f"  to send        {unsent}" in preview.output.splitlines()
    assert f"  failed         {failed}" in preview.output.splitlines()
    assert summary(Path("p"))["counts"]["planned"] == unsent
    working = mock()
    path.write_text(path.read_text().replace(server.url, working.url))
    assert invoke("run", path, "--report", "r2", "--quiet", "--retry-failed").exit_code == 0
    after = invoke("plan", path, "--report", "p2")
    assert "  to send        0" in after.output.splitlines()
    assert "         6  already sent" in after.output.splitlines()


def test_invalid_rows_are_a_decision_not_a_surprise(
    invoke: Callable[..., Result],
    write: Callable[..., Path],
    mock: Callable[..., ThreadedMock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = mock()
    monkeypatch.setenv("PLAN_TOKEN", "tok-12345")
    base = CAMPAIGN.replace('  id: "6123abcd"', f'  id: "6123abcd"\n  base_url: {server.url}')
    write("c.yaml", base)
    write("people.csv", PEOPLE)
    refused = invoke("run", "c.yaml", "--quiet")
    assert refused.exit_code == 2
    assert (
        refused.output.splitlines()[:6]
        == [
            "c.yaml: 3 of 7 rows are invalid, more than audience.max_invalid allows (0); nothing "
            "was sent:",
            "  row 2: missing value: customer.first_name in message.attributes.greeting",
            "  row 5: no recipient id",
            "  row 6: expected 3 fields, found 2",
            "Fix the rows or the templates, or accept skipping them: set audience.max_invalid: 3 "
            '(or "42.9%") in the campaign',
        ][:6]
    )
    assert server.arrivals == []
    write("c.yaml", base.replace("audience:\n", 'audience:\n  max_invalid: "50%"\n'))
    assert "  run would start: yes" in invoke("plan", "c.yaml").output
    sent = invoke("run", "c.yaml", "--quiet", "--report", "r")
    assert sent.exit_code == 0, sent.output
    assert summary(Path("r"))["counts"]["invalid"] == 3
    assert len(server.arrivals) == 2


def test_an_audience_outside_the_repository_needs_the_flag_and_is_named(
    invoke: Callable[..., Result], write: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    write("export/people.csv", PEOPLE)
    write("repo/c.yaml", CAMPAIGN.replace("file: people.csv", "file: ../export/people.csv"))
    refused = invoke("plan", "repo/c.yaml")
    assert refused.exit_code == 2
    assert "is outside the campaign's repository" in refused.output
    allowed = invoke("plan", "repo/c.yaml", "--audience-outside-repo", "--report", "p")
    assert (
        f"  audience outside the repository, on purpose: {tmp_path}/export/people.csv "
        "(--audience-outside-repo)"
    ) in allowed.output


def test_a_bot_id_read_from_the_environment_is_never_shown(
    invoke: Callable[..., Result], write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAN_TOKEN", "tok-12345")
    monkeypatch.setenv("SECRET_BOT", "bot-9f8e7d6c")
    write("c.yaml", CAMPAIGN.replace('id: "6123abcd"', "id: ${SECRET_BOT}"))
    write("people.csv", "id,first_name,opted_in\n1,An,yes\n")
    result = invoke("plan", "c.yaml", "--report", "p", "--out", "c.plan.json")
    assert result.exit_code == 0, result.output
    assert "bot-9f8e7d6c" not in result.output
    assert "/bots/***/users/1/send" in result.output
    for name in ("results.jsonl", "summary.json", "summary.md"):
        assert "bot-9f8e7d6c" not in (Path("p") / name).read_text()
    assert "bot-9f8e7d6c" not in Path("c.plan.json").read_text()


SIMPLE = """\
version: 1
name: simple
bot: {id: "1", token: "${PLAN_ONLY_TOKEN}"}
audience: {customers: [{id: "1"}, {id: "2"}]}
message: {user_id: "{{ customer.id }}", block_name: B}
"""


def test_plan_says_run_would_start_only_when_it_would(
    invoke: Callable[..., Result],
    write: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runner.state.filelock import CampaignLock

    write("c.yaml", SIMPLE)
    monkeypatch.delenv("PLAN_ONLY_TOKEN", raising=False)
    lacking = invoke("plan", "c.yaml")
    assert lacking.exit_code == 0, lacking.output  # a preview without secrets is a preview
    assert "  run would start: no, not here and now:" in lacking.output
    assert "    - PLAN_ONLY_TOKEN is not set here (run reads it from the environment)" in (
        lacking.output
    )
    monkeypatch.setenv("PLAN_ONLY_TOKEN", "a-token-value")
    assert "  run would start: yes" in invoke("plan", "c.yaml").output
    write("c.yaml", SIMPLE + "schedule:\n  not_before: 2999-01-01T09:00:00Z\n")
    closed = invoke("plan", "c.yaml").output
    assert "    - the send window opens at 2999-01-01T09:00:00+00:00" in closed
    assert "run would start: yes" not in closed
    write("c.yaml", SIMPLE)
    assert invoke("pause", "c.yaml", "--reason", "legal").exit_code == 0
    held = CampaignLock(Path(".campaign-state/simple.sqlite3"), "simple")
    held.acquire()
    try:
        busy = invoke("plan", "c.yaml").output
    finally:
        held.release()
    assert "    - a run holds it now (host " in busy
    assert "    - campaign simple was paused by " in busy
