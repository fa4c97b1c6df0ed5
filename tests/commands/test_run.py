"""`campaign run` from the command line, against the mock server: what a user sees and gets."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.helpers import (
    ThreadedMock,
    busiest_shared_second,
    customers_csv,
    delivered,
    results,
    summary,
)

REPO = Path(__file__).resolve().parents[2]  # the repository, above tests/commands/


def statuses(report: Path) -> list[tuple[int, str, str | None]]:
    return [(r["row"], r["status"], r["reason"]) for r in results(report)]


def test_run_then_rerun_never_sends_twice(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=4)
    first = invoke("run", path, "--report", "r1", "--quiet")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(
        "test-campaign: 4 sent, 0 failed, 0 unsent, 0 uncertain, 0 invalid, 0 skipped"
    )
    assert f"test-campaign: state {path.parent}/.campaign-state/test-campaign.sqlite3" in (
        first.stderr
    )
    again = invoke("run", path, "--report", "r2", "--quiet")
    assert again.exit_code == 0
    assert statuses(Path("r2")) == [(i, "skipped", "already sent") for i in range(1, 5)]
    assert len(server.arrivals) == 4


def test_a_rejected_token_costs_nobody_their_message(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = mock(token="right-token")  # every request is refused: 401 stops the run at once
    path = v1_campaign(server.url, rows=30, concurrency=1)
    result = invoke("run", path, "--report", "r1", "--quiet")
    assert result.exit_code == 3
    assert (
        "ABORTED: HTTP 401: the API rejected the token; check bot.token. Nobody was marked "
        "failed for it: fix the campaign and run again"
    ) in result.stdout
    assert len(server.arrivals) == 1
    assert statuses(Path("r1"))[0][1] == "unsent"
    assert summary(Path("r1"))["not_reached"] == 29
    monkeypatch.setenv("TEST_TOKEN", "right-token")
    again = invoke("run", path, "--report", "r2", "--quiet")
    assert again.exit_code == 0  # a plain rerun after the fix reaches everyone
    assert [r["status"] for r in results(Path("r2"))] == ["sent"] * 30


def test_failures_are_retried_only_when_asked(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    refusing = mock(fail_rate=1.0, seed=3)  # 503 (unsent) or success: false (failed)
    path = v1_campaign(refusing.url, rows=6, retries=0, concurrency=1)
    assert invoke("run", path, "--report", "r1", "--quiet").exit_code == 1
    first = {r["row"]: r["status"] for r in results(Path("r1"))}
    assert set(first.values()) == {"failed", "unsent"}
    working = mock()
    path.write_text(path.read_text().replace(refusing.url, working.url))
    again = invoke("run", path, "--report", "r2", "--quiet")
    assert again.exit_code == 1  # the refused ones are not retried without the flag
    second = {r["row"]: (r["status"], r["reason"]) for r in results(Path("r2"))}
    for row, status in first.items():
        if status == "unsent":
            assert second[row] == ("sent", None)
        else:
            assert second[row] == (
                "failed",
                "failed in an earlier run; not retried (use --retry-failed)",
            )
    third = invoke("run", path, "--report", "r3", "--quiet", "--retry-failed")
    assert third.exit_code == 0
    assert len(working.arrivals) == 6


def test_status_lists_who_did_not_get_it(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock(fail_rate=1.0, seed=7)
    path = v1_campaign(server.url, rows=3, retries=0, concurrency=1)
    assert invoke("run", path, "--quiet", "--report", "r").exit_code == 1
    path.parent.joinpath("customers.csv").write_text("id,first_name\n1,A\n2,B\n3,C\n4,D\n")
    result = invoke("status", path)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == f"test-campaign ({path.parent}/.campaign-state/test-campaign.sqlite3)"
    data = json.loads(invoke("status", path, "--output", "json").output)
    counts = data["counts"]
    assert counts["failed"] + counts["unsent"] == 3
    assert len(data["not_delivered"]) == 3
    assert lines[1:6] == [
        "  sent       0",
        f"  failed     {counts['failed']}",
        f"  unsent     {counts['unsent']}",
        "  uncertain  0",
        "  not yet    1 audience rows not attempted",
    ]
    assert "Not delivered:" in lines
    assert data["not_delivered"][0]["row"] == 1


def test_status_before_any_run(
    invoke: Callable[..., Result], v1_campaign: Callable[..., Path]
) -> None:
    path = v1_campaign("http://127.0.0.1:9", rows=1)
    result = invoke("status", path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:6] == [
        f"test-campaign ({path.parent}/.campaign-state/test-campaign.sqlite3)",
        "  sent       0",
        "  failed     0",
        "  unsent     0",
        "  uncertain  0",
        "  not yet    1 audience rows not attempted",
    ]
    assert lines[6] == (
        "  standing   new: never run; due now (0 sent, 0 failed, 0 unsent, 0 uncertain)"
    )


@pytest.mark.parametrize("folder", ["plain", "a: b", "odd:\ndir"])
def test_status_of_a_campaign_a_run_would_refuse_says_blocked_not_due(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    folder: str,
    tmp_path: Path,
) -> None:
    """Whatever its folder is called (the reason was once cut out of a message naming it)."""
    server = mock()
    made = v1_campaign(server.url, rows=2)
    (tmp_path / folder).mkdir()
    path = tmp_path / folder / made.name
    made.rename(path)
    (tmp_path / "customers.csv").rename(tmp_path / folder / "customers.csv")
    assert invoke("run", path, "--quiet").exit_code == 0
    with path.parent.joinpath("customers.csv").open("a") as rows:
        rows.write("3,C,extra\n4,D\n")  # one row more, and one that cannot be read
    result = invoke("status", path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = lines.index("  not yet    1 audience rows not attempted")
    assert lines[at + 1 : at + 3] == [
        "  invalid    1 audience rows (campaign plan lists them)",
        f"  standing   blocked: 1 of 4 rows are invalid, more than audience.max_invalid allows "
        "(0); a run refuses until they are fixed or allowed (2 sent, 0 failed, 0 unsent, "
        f"0 uncertain; last run {lines[at + 2].split('last run ')[1]}",
    ]
    data = json.loads(invoke("status", path, "--output", "json").output)
    assert (data["standing"], data["invalid"], data["next_due"]) == ("blocked", 1, None)
    assert invoke("run", path, "--quiet").exit_code == 2  # as said


def test_a_missing_secret_exits_2_naming_it(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=2)
    monkeypatch.delenv("TEST_TOKEN")
    result = invoke("run", path)
    assert result.exit_code == 2
    assert result.output == (
        f"{path}:6:10: bot.token: environment variable TEST_TOKEN is not set (or empty); export it "
        "before running, e.g. export TEST_TOKEN=...\n"
    )
    assert server.arrivals == []


def test_an_invalid_campaign_sends_nothing(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    write("c.yaml", "version: 1\nname: x\n")
    result = invoke("run", "c.yaml")
    assert result.exit_code == 2
    assert result.output.endswith("3 problems: nothing was sent\n")


def test_sandbox_rehearses_every_example_without_a_token(
    invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMAX_BOT_TOKEN", raising=False)
    examples = tmp_path / "copy" / "campaigns"
    shutil.copytree(REPO / "campaigns", examples)
    monkeypatch.chdir(examples)
    for example in sorted(examples.glob("*.yaml")):
        result = invoke("run", example, "--sandbox", "--quiet")
        assert result.exit_code == 0, result.output
        assert result.output.endswith(
            "Sandbox: requests went to a local mock server; nothing was sent for real.\n"
        )
    # Outside a repository, state and reports stand beside the campaign file.
    assert sorted(p.name for p in (examples / ".campaign-state").glob("*.sqlite3")) == [
        "order-update-v2.sandbox.sqlite3",
        "spring-sale-2026.sandbox.sqlite3",
        "welcome-chatfuel.sandbox.sqlite3",
    ]
    reports = list((examples / "reports" / "spring-sale-2026").iterdir())
    assert len(reports) == 1
    assert reports[0].name.startswith("sandbox-")
    s = summary(reports[0])
    assert s["counts"] == {
        "planned": 0,
        "sent": 5,
        "failed": 0,
        "unsent": 0,
        "uncertain": 0,
        "invalid": 0,
        "deferred": 0,
        "skipped": 2,
    }
    assert s["note"] == "Sandbox: requests went to a local mock server; nothing was sent for real."


def test_a_sandbox_run_never_marks_a_real_recipient(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=2)
    assert invoke("run", path, "--sandbox", "--quiet").exit_code == 0
    assert server.arrivals == []  # the sandbox has its own server
    real = invoke("run", path, "--quiet", "--report", "real")
    assert real.exit_code == 0
    assert [r["status"] for r in results(Path("real"))] == ["sent", "sent"]


def test_dry_run_is_plan(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=2)
    result = invoke("run", path, "--dry-run", "--report", "p")
    assert result.exit_code == 0
    assert result.output.endswith("Dry run: nothing was sent.\n")
    assert [r["status"] for r in results(Path("p"))] == ["planned", "planned"]
    assert server.arrivals == []


def test_the_reviewed_plan_is_what_runs(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    tmp_path: Path,
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=3)
    assert invoke("plan", path, "--out", "plan.json", "--report", "p").exit_code == 0
    text = Path("plan.json").read_text()
    digest = json.loads(text)
    assert digest["count"] == 3
    assert len(digest["rows"]) == 3 * 12
    # A file for git: no customer's id or name, the token masked in the template.
    assert "Name1" not in text
    assert "users/1/" not in text
    assert "s3cr3t" not in text
    assert digest["template"]["url"].startswith(f"{server.url}/bots/6123abcd/users/")
    assert "bot_token=***" in digest["template"]["url"]
    (tmp_path / "customers.csv").write_text("id,first_name\n1,A\n2,B\n3,C\n4,Intruder\n")
    refused = invoke("run", path, "--plan", "plan.json")
    assert refused.exit_code == 2
    assert refused.output == (
        f"plan.json no longer matches: the audience {tmp_path}/customers.csv changed since the "
        "plan; the rendered requests differ from the reviewed ones (3 planned, 4 now; 4 not in "
        "the plan: rows 1, 2, 3, 4). Make and review a new plan (campaign plan --out).\n"
    )
    assert server.arrivals == []
    assert invoke("plan", path, "--out", "plan.json", "--report", "p2").exit_code == 0
    checked = invoke("run", path, "--plan", "plan.json", "--dry-run", "--report", "d")
    assert checked.exit_code == 0  # does the reviewed plan still match? it says so
    assert "test-campaign: the reviewed plan plan.json matches the campaign and its audience" in (
        checked.stderr
    )
    ok = invoke("run", path, "--plan", "plan.json", "--quiet", "--report", "r")
    assert ok.exit_code == 0
    assert len(server.arrivals) == 4
    path.write_text(path.read_text().replace("Spring Sale", "Autumn Sale"))
    changed = invoke("run", path, "--plan", "plan.json")
    assert changed.exit_code == 2
    assert f"the campaign file {path} changed" in changed.output


def test_an_edited_plan_cannot_authorise_other_requests(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=3)
    invoke("plan", path, "--out", "plan.json", "--report", "p")
    reviewed = json.loads(Path("plan.json").read_text())
    # The hashes of the inputs still match, but the requests it vouches for were swapped.
    forged = {**reviewed, "count": 1, "requests_sha256": "0" * 64, "rows": reviewed["rows"][:12]}
    Path("plan.json").write_text(json.dumps(forged))
    refused = invoke("run", path, "--plan", "plan.json")
    assert refused.exit_code == 2
    assert (
        "the rendered requests differ from the reviewed ones (1 planned, 3 now; 2 not in the "
        "plan: rows 2, 3)"
    ) in refused.output
    assert server.arrivals == []


@pytest.mark.parametrize("target", ["test-campaign.yaml", "customers.csv"])
def test_plan_out_never_overwrites_what_the_campaign_reads(
    invoke: Callable[..., Result], v1_campaign: Callable[..., Path], tmp_path: Path, target: str
) -> None:
    path = v1_campaign("http://127.0.0.1:9", rows=2)
    before = (tmp_path / target).read_bytes()
    result = invoke("plan", path, "--out", target)
    assert result.exit_code == 2
    assert result.output.startswith(f"{target}: refusing to write the plan onto ")
    assert (tmp_path / target).read_bytes() == before


def test_a_limited_plan_cannot_authorise_a_run(
    invoke: Callable[..., Result], v1_campaign: Callable[..., Path]
) -> None:
    path = v1_campaign("http://127.0.0.1:9", rows=3)
    invoke("plan", path, "--limit", "1", "--out", "plan.json")
    result = invoke("run", path, "--plan", "plan.json")
    assert result.exit_code == 2
    assert "the plan covers only the first 1 rows" in result.output


def test_run_writes_the_github_step_summary(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=2)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step.md"))
    invoke("run", path, "--quiet", "--report", "r")
    text = (tmp_path / "step.md").read_text()
    assert text.startswith("## Run: test-campaign\n")
    assert "| sent | 2 |" in text


def test_progress_lines_without_a_terminal(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import runner.progress

    monkeypatch.setattr(runner.progress, "LOG_EVERY", 0.0)
    server = mock()
    path = v1_campaign(server.url, rows=30, rate=60)
    result = invoke("run", path, "--report", "r")
    assert result.exit_code == 0
    assert "progress: " in result.stderr
    assert "/30 rows" in result.stderr


def test_dry_run_with_a_plan_checks_it_still_matches(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    tmp_path: Path,
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=2)
    invoke("plan", path, "--out", "reviewed.plan.json", "--report", "p")
    ok = invoke("run", path, "--plan", "reviewed.plan.json", "--dry-run", "--report", "c1")
    assert ok.exit_code == 0
    assert ok.output.endswith("Dry run: nothing was sent.\n")
    (tmp_path / "customers.csv").write_text("id,first_name\n1,A\n")
    stale = invoke("run", path, "--plan", "reviewed.plan.json", "--dry-run")
    assert stale.exit_code == 2
    assert "changed since the plan" in stale.output
    assert server.arrivals == []


def test_a_base_url_from_the_environment_must_be_a_url(
    invoke: Callable[..., Result], v1_campaign: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = v1_campaign("${API_BASE}", rows=1)
    monkeypatch.setenv("API_BASE", "api.example.invalid")
    result = invoke("run", path)
    assert result.exit_code == 2
    # A value read from the environment is never shown, even when it is wrong.
    assert result.output == (
        f"{path}:7:13: bot.base_url: '***': expected an http:// or https:// URL, like "
        "https://api.smax.bot\n"
    )


def test_a_run_lists_the_first_ten_who_did_not_get_it(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock(fail_rate=1.0, seed=1)
    path = v1_campaign(server.url, rows=12, retries=0, concurrency=1)
    result = invoke("run", path, "--quiet", "--report", "r")
    assert result.exit_code == 1
    listed = [
        line
        for line in result.output.splitlines()
        if line.startswith(("  failed: row ", "  unsent: row "))
    ]
    assert len(listed) == 10
    assert f"  ... 2 more: campaign status {path}" in result.output


def test_a_canary_batch_then_the_rest(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=30, concurrency=5)
    canary = invoke("run", path, "--limit", "10", "--quiet", "--report", "c")
    assert canary.exit_code == 0, canary.output
    assert "  limited to 10 new recipients: 20 remain; run again to continue" in canary.stdout
    assert len(server.arrivals) == 10
    s = summary(Path("c"))
    assert (s["counts"]["sent"], s["remaining"], s["exit_code"]) == (10, 20, 0)
    second = invoke("run", path, "--limit", "10", "--quiet", "--report", "c2")
    assert second.exit_code == 0
    assert summary(Path("c2"))["remaining"] == 10
    rest = invoke("run", path, "--quiet", "--report", "r")
    assert rest.exit_code == 0
    assert len(server.arrivals) == 30
    assert len({a.recipient for a in server.arrivals}) == 30  # nobody twice


def test_an_api_that_allows_less_costs_time_not_recipients(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock(rate=10)  # the API allows 10/s; the campaign asks for 40
    path = v1_campaign(server.url, rows=60, rate=40, concurrency=20, retries=2)
    result = invoke("run", path, "--quiet", "--report", "r")
    assert result.exit_code == 0, result.output
    s = summary(Path("r"))
    assert s["counts"]["sent"] == 60
    assert s["counts"]["unsent"] == 0
    assert s["counts"]["failed"] == 0
    assert s["rate_lowest"] is not None
    assert s["rate_lowest"] < 40
    rejected = sum(1 for a in server.arrivals if a.status == 429)
    assert rejected < 60  # not a 429 for every other request


def test_a_test_send_to_yourself_first(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    tmp_path: Path,
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=20)
    test = invoke("run", path, "--to", "7", "--to", " 12 ", "--quiet", "--report", "t")
    assert test.exit_code == 0, test.output
    assert sorted(a.recipient for a in server.arrivals) == ["12", "7"]
    assert "\nTEST send to 2 audience member(s); recorded apart" in test.stdout
    assert summary(Path("t"))["mode"] == "test"
    assert (Path("t") / "summary.md").read_text().startswith("## TEST send: test-campaign")
    assert (tmp_path / ".campaign-state" / "test-campaign.test.sqlite3").is_file()
    again = invoke("run", path, "--to", "7", "--quiet", "--report", "t2")  # a test sends again
    assert again.exit_code == 0
    broadcast = invoke("run", path, "--quiet", "--report", "r")
    assert broadcast.exit_code == 0
    assert summary(Path("r"))["counts"]["sent"] == 20  # the test marked nobody delivered
    unknown = invoke("run", path, "--to", "201", "--quiet")
    assert unknown.exit_code == 2
    assert unknown.output.startswith(
        f"{path}: --to 201: no row of the audience renders this recipient (or it is filtered, "
        "invalid or a duplicate); closest: 20"
    )
    assert unknown.output.endswith("nothing was sent\n")
    assert len(server.arrivals) == 23
    assert summary(Path("t"))["sandbox"] is False
    # A rehearsal's test send is recorded apart from the rehearsal too, and says it was one.
    for _ in range(2):
        assert invoke("run", path, "--sandbox", "--to", "7", "--quiet").exit_code == 0
    folder = sorted((tmp_path / "reports" / "test-campaign").glob("sandbox-test-*"))[0]
    assert summary(folder)["sandbox"] is True
    assert (folder / "summary.md").read_text().startswith("## Sandbox TEST send: test-campaign")
    assert ">SANDBOX TEST</div>" in (folder / "report.html").read_text()
    rehearsal = invoke("run", path, "--sandbox", "--quiet", "--report", "s")
    assert rehearsal.exit_code == 0
    assert summary(Path("s"))["counts"]["sent"] == 20


def test_to_suggests_the_ids_nearest_by_edit_distance() -> None:
    from runner.pipeline import closest

    keys = ["2000000000002", "2000000000003", "2000000001002", "3000000000002", "200000000012"]
    assert closest("200000000002", keys)[:2] == ["2000000000002", "200000000012"]
    assert closest("zzzz", keys) == []


def test_a_run_with_a_plan_renders_the_audience_once_before_sending(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import runner.pipeline

    server = mock()
    path = v1_campaign(server.url, rows=3)
    assert invoke("plan", path, "--out", "plan.json", "--report", "p").exit_code == 0
    passes = []
    prepare = runner.pipeline.prepare

    def counted(*args: Any, **kwargs: Any) -> Any:
        passes.append(args)
        return prepare(*args, **kwargs)

    monkeypatch.setattr(runner.pipeline, "prepare", counted)
    result = invoke("run", path, "--plan", "plan.json", "--quiet", "--report", "r")
    assert result.exit_code == 0, result.output
    assert len(passes) == 2  # plan digests and invalid rows in one pass; then the sending
    assert len(server.arrivals) == 3


def test_what_was_verified_is_what_is_sent_even_if_the_audience_changes_mid_run(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import runner.plandigest

    server = mock()
    path = v1_campaign(server.url, rows=3)
    assert invoke("plan", path, "--out", "plan.json", "--report", "p").exit_code == 0
    audience = path.parent / "customers.csv"
    verify = runner.plandigest.verify

    def verify_then_edit(*args: Any) -> None:
        verify(*args)  # the reviewed plan matches; then the file changes under the run
        audience.write_text("id,first_name\n1,Name1\n2,Mallory\n3,Name3\n4,Name4\n")

    monkeypatch.setattr(runner.plandigest, "verify", verify_then_edit)
    result = invoke("run", path, "--plan", "plan.json", "--quiet", "--report", "r")
    assert sorted(a.recipient for a in server.arrivals) == ["1", "3"]
    refused = {r["row"]: r for r in results(Path("r")) if r["status"] == "invalid"}
    assert sorted(refused) == [2, 4]
    assert refused[2]["reason"].startswith("not in the reviewed plan")
    assert "2 invalid" in result.stdout


def test_a_plan_made_without_secrets_matches_the_run_that_has_them(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=4)
    path.write_text(path.read_text().replace('id: "6123abcd"', "id: ${PREVIEW_BOT_ID}"))
    monkeypatch.delenv("PREVIEW_BOT_ID", raising=False)
    monkeypatch.delenv("TEST_TOKEN", raising=False)  # a pull request's preview has neither
    assert invoke("plan", path, "--out", "plan.json", "--report", "p").exit_code == 0
    assert "6123abcd" not in Path("plan.json").read_text()
    monkeypatch.setenv("PREVIEW_BOT_ID", "bot-from-a-secret")
    monkeypatch.setenv("TEST_TOKEN", "s3cr3t-T0KEN")
    result = invoke("run", path, "--plan", "plan.json", "--quiet", "--report", "r")
    assert result.exit_code == 0, result.output
    assert len(server.arrivals) == 4
    assert {a.bot for a in server.arrivals} == {"bot-from-a-secret"}


def test_undelivered_csv_keeps_the_audiences_columns_when_nobody_is_in_it(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
) -> None:
    server = mock()
    path = v1_campaign(server.url, rows=2)
    assert invoke("run", path, "--quiet", "--report", "r").exit_code == 0
    assert (Path("r") / "undelivered.csv").read_text() == "id,first_name,status,reason\n"


def test_a_json_audience_with_half_a_utf16_pair_sends_it_to_nobody(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    v1_campaign: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "12\\ud800" once went to recipient "12?". From another folder: the run refuses, then
    with the row allowed, it goes to nobody and the others arrive as written."""
    server = mock()
    path = v1_campaign(server.url)
    text = path.read_text().replace("file: customers.csv", "file: customers.json")
    path.write_text(text)
    (tmp_path / "customers.json").write_text(
        '[{"id": "12\\ud800"}, {"id": "13", "first_name": "\\ud83d\\ude00"}, {"id": "14"}]'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    refused = invoke("run", path, "--quiet")
    assert refused.exit_code == 2
    assert "  row 1: invalid JSON: a \\u escape holds half of a UTF-16 pair" in refused.output
    assert server.arrivals == []
    path.write_text(text.replace("audience:\n", "audience:\n  max_invalid: 1\n"))
    sent = invoke("run", path, "--quiet", "--report", "r")
    assert sent.exit_code == 0, sent.output
    assert delivered(server) == {"13": 1, "14": 1}


def test_a_recipient_in_flight_when_this_run_stopped_is_said_to_be_of_this_run(
    v1_campaign: Callable[..., Path],
) -> None:
    from runner import campaign as campaigns
    from runner.commands.broadcast import CampaignResult
    from runner.commands.run import RunResult, text

    path = v1_campaign("http://127.0.0.1:9", rows=1)
    counts = dict.fromkeys(("sent", "failed", "unsent", "invalid", "skipped", "deferred"), 0)
    entry = {"row": 1, "recipient": "7", "status": "sending", "result": None, "error": None}
    s: Any = {
        "counts": {**counts, "uncertain": 1},
        "duration_s": 1.0,
        "skipped_by_reason": {},
        "state": "s",
        "report": "r",
    }
    said = text(RunResult([CampaignResult(campaigns.load(path), s, [entry], 1)], 130, False))
    assert "  uncertain: row 1 7 in flight when this run stopped; its outcome is unknown" in said
    assert "earlier run" not in said


def test_a_v1_and_a_v2_campaign_of_one_bot_share_its_limit(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    """25 requests/s is the bot's, whichever version of the API sends: two pacers sent 50."""
    server = mock()
    (tmp_path / "people.csv").write_text(customers_csv(15))
    bot = f'{{id: "6123abcd", token: "${{TEST_TOKEN}}", base_url: "{server.url}", rate_limit: 10}}'
    (tmp_path / "v1.yaml").write_text(
        f"version: 1\nname: v1\nbot: {{api: v1, {bot[1:]}\naudience: {{file: people.csv}}\n"
        'message: {user_id: "a{{ customer.id }}", block_name: Sale}\n'
    )
    (tmp_path / "v2.yaml").write_text(
        f"version: 1\nname: v2\nbot: {{api: v2, {bot[1:]}\naudience: {{file: people.csv}}\n"
        'message: {customer: {id: "b{{ customer.id }}"}, messages: [{text: Sale}]}\n'
    )
    result = invoke("run", tmp_path / "v1.yaml", tmp_path / "v2.yaml", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(server.arrivals) == 30
    assert busiest_shared_second([a.t for a in server.arrivals]) <= 10


V2_PEOPLE = """\
version: 1
name: v2
bot: {{api: v2, id: b, token: "${{TEST_TOKEN}}", base_url: "{url}"}}
audience: {{file: people.jsonl}}
message:
  customer: {{{customer}}}
  messages: [{{text: Sale}}]
  priority: [{priority}]
delivery: {{retries: 0}}
"""
PHONE_EMAIL = 'phone: "{{ customer.phone }}", email: "{{ customer.email }}"'


def v2_people(folder: Path, url: str, priority: str, customer: str = PHONE_EMAIL) -> Path:
    if not (folder / "people.jsonl").exists():
        (folder / "people.jsonl").write_text(
            "".join(
                f'{{"id": "c{i}", "phone": "+8490{i}", "email": "p{i}@x.vn"}}\n' for i in range(6)
            )
        )
    path = folder / "v2.yaml"
    path.write_text(V2_PEOPLE.format(url=url, priority=priority, customer=customer))
    return path


def test_reordering_v2_priority_sends_nobody_twice(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    state_args: list[str],
) -> None:
    """A V2 recipient is known by their first identifier in `priority` order: reordered, each
    would have been someone new, and a sweep sent everyone again."""
    server = mock()
    given = state_args
    path = v2_people(tmp_path, server.url, "phone, email")
    assert invoke("run", path, "--quiet", *given).exit_code == 0
    v2_people(tmp_path, server.url, "email, phone")
    status = invoke("status", path, *given).output
    assert "  not yet    0 audience rows not attempted" in status
    again = invoke("run", path, "--quiet", "--report", "again", *given)
    assert again.exit_code == 0, again.output
    assert len(server.arrivals) == 6  # the first run's, and none again
    assert {r["reason"] for r in results(Path("again"))} == {"already sent"}


@pytest.mark.parametrize("retry", [[], ["--retry-failed"]])
def test_priority_reordered_back_and_forth_sends_nobody_twice(
    invoke: Callable[..., Result],
    mock: Callable[..., ThreadedMock],
    tmp_path: Path,
    retry: list[str],
) -> None:
    """Keyed by phone, failed; by email, sent; by phone again: the phone's record ('failed')
    hid the email's ('sent'), and they were sent again. The record that forbids most wins."""
    down, up = mock(fail_rate=1.0, seed=3), mock()
    path = v2_people(tmp_path, down.url, "phone, email")
    assert invoke("run", path, "--quiet").exit_code == 1  # nobody delivered
    v2_people(tmp_path, up.url, "email, phone")
    assert invoke("run", path, "--quiet", "--retry-failed").exit_code == 0
    v2_people(tmp_path, up.url, "phone, email")
    assert invoke("run", path, "--quiet", *retry).exit_code == 0
    assert len(up.arrivals) == 6
    assert max(delivered(up).values()) == 1


def test_an_identifier_taken_out_of_the_message_is_refused(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    """Keyed by id while it was there: without it those recipients cannot be found."""
    server = mock()
    with_id = PHONE_EMAIL + ', id: "{{ customer.id }}"'
    path = v2_people(tmp_path, server.url, "phone, email", with_id)
    assert invoke("run", path, "--quiet", "--limit", "3").exit_code == 0
    v2_people(tmp_path, server.url, "phone, email")
    gone = "message.customer no longer has customer.id, by which earlier runs knew some"
    assert f"    - {gone}" in invoke("plan", path).output  # the preview says so too
    assert f"  standing   blocked: {gone}" in invoke("status", path).output
    refused = invoke("run", path, "--quiet")
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.strip() == (
        f"{path}: message.customer no longer has customer.id, by which earlier runs knew some "
        "recipients: they would be taken for new ones and sent again; nothing was sent. Put "
        "customer.id back in message.customer (a row without it renders it empty)"
    )
    blank = v2_people(tmp_path, server.url, "phone, email", PHONE_EMAIL + ', id: ""')
    assert invoke("run", blank, "--quiet").exit_code == 2  # blank is taken out too
    v2_people(tmp_path, server.url, "email, phone", with_id)  # back, in another order
    assert invoke("run", path, "--quiet").exit_code == 0
    assert len(server.arrivals) == 6
    assert max(delivered(server).values()) == 1


def test_one_recipients_identifier_equal_to_anothers_key_drops_nobody(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    """Looked up by every identifier, the second was taken for the first and never sent."""
    server = mock()
    (tmp_path / "people.jsonl").write_text(
        '{"id": "84900000001", "email": "a@x", "phone": ""}\n'
        '{"id": "c-2", "phone": "84900000001", "email": "b@x"}\n'
    )
    customer = PHONE_EMAIL + ', id: "{{ customer.id }}"'
    path = v2_people(tmp_path, server.url, "phone, email", customer)
    assert invoke("run", path, "--quiet", "--limit", "1").exit_code == 0
    assert invoke("run", path, "--quiet").exit_code == 0
    assert sorted(delivered(server)) == ["84900000001", "c-2"]


@pytest.mark.slow
def test_priority_reordered_after_a_run_was_killed_sends_nobody_twice(
    invoke: Callable[..., Result], mock: Callable[..., ThreadedMock], tmp_path: Path
) -> None:
    """Killed mid-way under one order, continued under another: those it sent are found by
    the key the killed run gave them, those in flight stay uncertain."""
    import signal
    import subprocess
    import sys

    from tests.helpers import wait_for_arrivals

    server = mock(latency_ms=20)
    (tmp_path / "people.jsonl").write_text(
        "".join(f'{{"phone": "+8490{i}", "email": "p{i}@x.vn"}}\n' for i in range(60))
    )
    path = v2_people(tmp_path, server.url, "phone, email")
    killed = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(path), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_arrivals(server, 10)
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.communicate(timeout=20)
    v2_people(tmp_path, server.url, "email, phone")
    again = invoke("run", path, "--quiet", "--report", "again")
    n = summary(Path("again"))["counts"]
    assert again.exit_code == (1 if n["uncertain"] else 0), again.output  # uncertain: exit 1
    counts = delivered(server)
    assert max(counts.values()) == 1
    assert n["sent"] + n["skipped"] + n["uncertain"] == 60
    assert n["skipped"] >= 10 - n["uncertain"]  # the killed run's sent: already sent
