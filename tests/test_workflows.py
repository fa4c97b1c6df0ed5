"""The git integrations: workflows and the pre-commit hook call commands and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from runner.cli import cli

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((REPO / "examples" / "github-actions").glob("*.yml"))


def campaign_calls(script: str) -> list[list[str]]:
    """Every `campaign ...` command line in a shell script, as tokens."""
    script = script.replace("\\\n", " ")
    calls = []
    for line in script.splitlines():
        line = re.sub(r"\$\{\{[^}]*\}\}", "X", line)  # GitHub expressions
        line = line.split(" || ")[0].split(" && ")[-1]
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, token in enumerate(tokens):
            if token == "campaign" and i + 1 < len(tokens) and tokens[i + 1] in cli.commands:
                calls.append(tokens[i + 1 :])
    return calls


def check_call(tokens: list[str]) -> None:
    command = cli.commands[tokens[0]]
    known = {
        opt for param in command.params if isinstance(param, click.Option) for opt in param.opts
    }
    for token in tokens[1:]:
        if token.startswith("--"):
            assert token.split("=")[0] in known, f"campaign {tokens[0]} has no option {token}"


def test_there_are_two_workflows() -> None:
    assert [w.name for w in WORKFLOWS] == ["campaign-deploy.yml", "campaign-preview.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_parse_and_call_real_commands(path: Path) -> None:
    workflow = yaml.safe_load(path.read_text())
    assert workflow["jobs"]
    calls = [
        call
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "run" in step
        for call in campaign_calls(step["run"])
    ]
    assert calls, "the workflow runs no campaign command"
    for call in calls:
        check_call(call)


def test_the_preview_plans_and_the_deploy_runs_with_state_and_secrets() -> None:
    preview = (REPO / "examples/github-actions/campaign-preview.yml").read_text()
    deploy = (REPO / "examples/github-actions/campaign-deploy.yml").read_text()
    assert "campaign plan" in preview and "--out" in preview and "campaign validate" in preview
    assert "campaign run" in deploy and "--plan" in deploy
    assert "secrets.SMAX_BOT_TOKEN" in deploy and ".campaign-state" in deploy
    assert "upload-artifact" in deploy


def test_the_checker_catches_a_wrong_option() -> None:
    with pytest.raises(AssertionError, match="campaign plan has no option --outt"):
        for call in campaign_calls('campaign plan "$f" --outt x.json'):
            check_call(call)


def test_the_pre_commit_hook() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert hook["id"] == "campaign-validate"
    assert hook["language"] == "python"
    entry = shlex.split(hook["entry"])
    assert entry[0] == "campaign" and entry[1] in cli.commands
    files = re.compile(hook["files"])
    assert files.search("campaigns/spring-sale.yaml") and files.search("campaigns/x/y.yml")
    assert not files.search("src/config.yaml")
