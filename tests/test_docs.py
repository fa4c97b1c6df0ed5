"""The README is checked like code: its example campaign validates, its tables match the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from runner import campaign as campaigns
from runner.cli import cli

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, re.DOTALL)


def test_the_example_campaign_in_the_readme_is_valid(tmp_path: Path) -> None:
    example = next(block for block in yaml_blocks() if block.lstrip().startswith("# yaml-lang"))
    (tmp_path / "customers.csv").write_text("messenger_user_id,first_name,opted_in,tz\n1,An,yes,\n")
    path = tmp_path / "example.yaml"
    path.write_text(example)
    problems, _ = campaigns.problems_of(path)
    assert problems == []


def test_the_v2_snippet_in_the_readme_is_a_valid_message(tmp_path: Path) -> None:
    snippet = next(block for block in yaml_blocks() if block.startswith("message:\n  customer:"))
    path = tmp_path / "v2.yaml"
    path.write_text(
        "version: 1\nname: v2\nbot: {api: v2, id: '1', token: '${T}'}\n"
        "audience: {customers: [{id: '1', email: a@b.c, phone: '1', name: An, ntn_token: t}]}\n"
        + snippet
    )
    assert campaigns.problems_of(path)[0] == []


def test_the_exit_codes_match_the_contract() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.MULTILINE))
    assert sorted(rows, key=int) == ["0", "1", "2", "3", "130"]
    assert "lock" in rows["2"]
    assert "plan mismatch" in rows["2"]


def test_every_command_is_documented() -> None:
    for name in cli.commands:
        assert f"`campaign {name}" in README, name


def test_every_run_option_is_documented() -> None:
    run = cli.commands["run"]
    for param in run.params:
        for option in getattr(param, "opts", []):
            if option.startswith("--") and option != "--help":
                assert option in README, option
