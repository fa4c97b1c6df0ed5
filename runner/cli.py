"""The `campaign` command line: parse arguments, call the core, turn errors into exit codes.

This is the only module that knows click, and the one place where a `CampaignError` becomes a
message on stderr and an exit code
(the README's table). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
import orjson

from runner import __version__
from runner.errors import CampaignError, InvalidCampaign, UsageError


def _fail(message: str) -> None:
    """An error for a person: masked (no secret read from the environment ever leaves), and
    made inert for the terminal."""
    from runner import secrets
    from runner.inert import terminal

    masked = secrets.Masker(secrets.resolved_values())(message)
    click.echo("\n".join(terminal(part) for part in masked.split("\n")), err=True)


def _json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _warnings(warnings: Any) -> None:
    for warning in warnings:
        click.echo(str(warning), err=True)


output_option = click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Human text, or JSON for machines.",
)


outside_option = click.option(
    "--audience-outside-repo",
    "outside_repo",
    is_flag=True,
    help="Allow an audience file outside the campaign's repository (a local export). The "
    "choice of whoever runs the command: a campaign file cannot make it.",
)

state_option = click.option(
    "--state",
    "state_given",
    metavar="PATH|URL",
    help="State: a SQLite file or a postgresql:// URL (default $CAMPAIGN_STATE, else "
    ".campaign-state/<name>.sqlite3 at the campaign's repository root).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="campaign")
def cli() -> None:
    """Run chatbot broadcasts declared in YAML campaign files."""


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@output_option
@outside_option
def validate(targets: tuple[str, ...], output: str, outside_repo: bool) -> int:
    """Check campaign files, folders or globs: schema, rules and templates.

    Needs no secrets and no network. Exit 0 when every file is valid, 2 otherwise.
    """
    from runner.commands.validate import validate as run_validate
    from runner.inert import terminal

    result = run_validate(list(targets), outside_repo=outside_repo)
    if output == "json":
        _json(result.as_dict())
    else:
        # Problems can quote the audience (its column names): shown inert.
        shown = "\n".join(terminal(line) for line in result.text().split("\n"))
        click.echo(shown, err=result.exit_code != 0)
    return result.exit_code


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path),
    help="Report folder (default reports/<name>/plan-<run-id>/).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Render only the first N rows.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write a digest of exactly what would be sent, for `run --plan`.",
)
@click.option("--sandbox", is_flag=True, help="Preview against the local mock server.")
@state_option
@outside_option
@output_option
def plan(
    targets: tuple[str, ...],
    report_dir: Path | None,
    limit: int | None,
    out: Path | None,
    sandbox: bool,
    state_given: str | None,
    outside_repo: bool,
    output: str,
) -> int:
    """Dry run: render every request, send nothing, write the report."""
    from runner.campaign import expand
    from runner.commands import plan as planning

    paths = expand(list(targets))
    if len(paths) > 1 and (out or report_dir):
        raise UsageError("--out and --report take one campaign file at a time")
    results = []
    for path in paths:
        result = planning.plan(
            path,
            report_dir=report_dir,
            limit=limit,
            out=out,
            sandbox=sandbox,
            state=state_given,
            outside_repo=outside_repo,
        )
        _warnings(result.campaign.warnings)
        results.append(result)
        if output == "text":
            click.echo(planning.text(result))
    if output == "json":
        payload = [{"summary": r.summary, "samples": r.samples} for r in results]
        _json(payload[0] if len(payload) == 1 else payload)
    return max(r.exit_code for r in results)


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path),
    help="Report folder (default reports/<name>/<run-id>/; one folder per campaign "
    "inside it when several run).",
)
@state_option
@click.option("--dry-run", is_flag=True, help="Same as `campaign plan`: send nothing.")
@click.option(
    "--sandbox",
    is_flag=True,
    help="Send to an in-process mock server instead; needs no token, keeps its own "
    "state and reports.",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path),
    help="Refuse to run unless the campaign and audience match this reviewed plan.",
)
@click.option("--retry-failed", is_flag=True, help="Send again to those who failed before.")
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Send again to those whose earlier outcome is unknown (may duplicate).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Send to at most N recipients not yet settled, then stop (exit 0); the next run "
    "continues: a canary batch.",
)
@click.option(
    "--to",
    "to",
    multiple=True,
    metavar="ID",
    help="A test send: only to this audience member (its recipient key, as in the state); "
    "repeat for several. Recorded apart: never marks anyone delivered.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Stay until deferred recipients' quiet hours end, and send them then.",
)
@click.option(
    "--due",
    is_flag=True,
    help="Run only the campaigns with something due now; say where every other one stands "
    "(for a scheduler: a cron sweep, a --watch worker).",
)
@click.option(
    "--max-duration",
    "max_duration",
    metavar="DURATION",
    help="Start no request after this long (5h30m, 90m, 45s); those in flight finish, the "
    "rest is left for the next run (exit 0).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="A worker: run what is due, sleep until the next thing is due, again, until "
    "SIGTERM or Ctrl-C (which drain the run under way).",
)
@click.option(
    "--every",
    metavar="DURATION",
    help="With --watch: look at least this often (default 60s).",
)
@click.option(
    "--fresh-state",
    is_flag=True,
    help="Start in a state that has no history of the campaign though another state of this "
    "repository has it (its people may get the message again).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or progress lines.")
@outside_option
def run(
    targets: tuple[str, ...],
    report_dir: Path | None,
    state_given: str | None,
    dry_run: bool,
    sandbox: bool,
    plan_file: Path | None,
    retry_failed: bool,
    resend_uncertain: bool,
    limit: int | None,
    to: tuple[str, ...],
    wait: bool,
    due: bool,
    max_duration: str | None,
    watch: bool,
    every: str | None,
    fresh_state: bool,
    quiet: bool,
    outside_repo: bool,
) -> int:
    """Broadcast: send every campaign given, paced per bot, with durable state.

    Exit 0 all done; 1 some failed, unsent or uncertain; 2 nothing sent (invalid, missing
    secret, plan mismatch, state unusable, locked); 3 aborted; 130 interrupted.
    """
    from runner.commands import plan as planning
    from runner.commands.run import RunOptions, RunResult, parse_duration, text
    from runner.commands.run import run as broadcast

    if every is not None and not watch:
        raise UsageError("--every goes with --watch (how often a worker looks)")
    if (watch or due) and (to or plan_file or dry_run):
        raise UsageError(
            "--due and --watch run campaigns as they stand: not with --to, --plan or --dry-run"
        )
    options = RunOptions(
        report=report_dir,
        state=state_given,
        dry_run=dry_run,
        sandbox=sandbox,
        plan=plan_file,
        retry_failed=retry_failed,
        resend_uncertain=resend_uncertain,
        quiet=quiet,
        outside_repo=outside_repo,
        limit=limit,
        to=to,
        wait=wait,
        due=due,
        max_duration=None if max_duration is None else parse_duration(max_duration),
        watch=watch,
        every=parse_duration("60s" if every is None else every),
        fresh_state=fresh_state,
    )

    def shown(result: RunResult) -> None:
        for campaign_result in result.results:
            _warnings(campaign_result.campaign.warnings)
        if result.results:
            click.echo(text(result))

    result = broadcast(list(targets), options, on_pass=shown)
    if watch:
        return result.exit_code
    for plan_result in result.plans:
        _warnings(plan_result.campaign.warnings)
        click.echo(planning.text(plan_result))
    shown(result)
    return result.exit_code


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@state_option
@click.option("--sandbox", is_flag=True, help="Read the sandbox state instead.")
@outside_option
@output_option
def status(
    targets: tuple[str, ...],
    state_given: str | None,
    sandbox: bool,
    outside_repo: bool,
    output: str,
) -> int:
    """Where each campaign stands (new, scheduled, due, running, waiting, paused, done,
    closed, cancelled) with its counts and last run; for one campaign, the detail."""
    from runner.commands.status import status as read_status
    from runner.commands.status import text

    result = read_status(list(targets), state_given, sandbox, outside_repo=outside_repo)
    if output == "json":
        _json(result.as_json())
    else:
        click.echo(text(result))
    return result.exit_code


def _control(
    targets: tuple[str, ...],
    state_given: str | None,
    every: bool,
    action: str | None,
    reason: str | None,
) -> int:
    from runner.commands.control import apply, targets_of
    from runner.inert import terminal

    if every == bool(targets):
        raise UsageError("name the campaigns (files, folders or names), or --all, not both")
    if action is not None and not (reason or "").strip():
        raise UsageError("--reason is required: say why, for whoever finds it stopped")
    found, problems = targets_of(list(targets), state_given, every)
    outcome = apply(found, action, reason, problems)
    for line in outcome.lines:
        click.echo(terminal(line))
    for line in outcome.failed:
        _fail(line)
    return outcome.exit_code


@cli.command()
@click.argument("targets", nargs=-1)
@click.option("--reason", required=True, help="Why: kept with who and when, shown everywhere.")
@click.option("--all", "every", is_flag=True, help="Every campaign in the state.")
@state_option
def pause(targets: tuple[str, ...], reason: str, every: bool, state_given: str | None) -> int:
    """Emergency stop: every run of these campaigns sharing the state stops starting
    requests within 2 seconds (exit 3); later runs refuse until `campaign resume`."""
    return _control(targets, state_given, every, "paused", reason)


@cli.command()
@click.argument("targets", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every campaign in the state.")
@state_option
def resume(targets: tuple[str, ...], every: bool, state_given: str | None) -> int:
    """Lift a pause: the campaigns are due again at the next run or sweep."""
    return _control(targets, state_given, every, None, None)


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why: kept with who and when, shown everywhere.")
@state_option
def cancel(targets: tuple[str, ...], reason: str, state_given: str | None) -> int:
    """Stop these campaigns for good: no run of these names sends again in this state."""
    return _control(targets, state_given, False, "cancelled", reason)


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "-z",
    "--null",
    is_flag=True,
    help="Read and write paths separated by NUL (as git diff -z prints them), not lines.",
)
def affected(targets: tuple[str, ...], null: bool) -> int:
    """Print the campaigns among TARGETS that changed paths (read from standard input) touch:
    their own file, or their audience file.

    For CI: git diff --name-only -z BASE HEAD | campaign affected -z campaigns/
    """
    from runner.commands.affected import affected_campaigns

    separator = "\0" if null else "\n"
    changed = sys.stdin.read().split(separator)
    for path in affected_campaigns(changed, list(targets)):
        shown = str(path)
        # A file named "--root.yaml" must never be read as an option by the next command.
        click.echo(f"./{shown}" if shown.startswith("-") else shown, nl=False)
        click.echo(separator, nl=False)
    return 0


@cli.group("state")
def state_group() -> None:
    """Work with run states (SQLite files and PostgreSQL databases)."""


@state_group.command("copy")
@click.argument("source", metavar="SRC")
@click.argument("target", metavar="DST")
@click.option(
    "--campaign",
    "only",
    multiple=True,
    metavar="NAME",
    help="Copy only this campaign (repeatable); the others stay where they are.",
)
def state_copy(source: str, target: str, only: tuple[str, ...]) -> int:
    """Copy every campaign's state (or --campaign NAME's) from SRC to DST (a SQLite file or
    a postgresql:// URL).

    Runs of the campaigns must not be going on; a DST that already holds one of them is
    refused. Nobody is resent after moving: the copy holds who was sent, failed, or is
    uncertain, exactly as the source did.
    """
    import asyncio

    from runner.state import location
    from runner.state.copy import copy

    src, dst = location(source), location(target)
    copied, notes = asyncio.run(copy(src, dst, only))
    for note in notes:
        click.echo(note, err=True)
    for campaign, n in copied.items():
        click.echo(f"{campaign}: {n} recipients copied")
    click.echo(
        f"copied {len(copied)} campaign{'s' if len(copied) != 1 else ''} from {src} to {dst}"
    )
    return 0


@cli.command("mock-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--rate",
    default=25,
    show_default=True,
    type=click.IntRange(min=0),
    help="Requests per bot in any one-second window before 429 (0: no limit).",
)
@click.option(
    "--fail-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests answered with a random failure (503 or success: false).",
)
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Milliseconds to wait before each answer.",
)
@click.option("--seed", type=int, help="Seed for reproducible failures.")
@click.option("--token", help="Accept only this token (default: any non-empty token).")
@click.option(
    "--log",
    type=click.Path(path_type=Path),
    help="Append each request as a JSON line (token masked).",
)
def mock_server(
    host: str,
    port: int,
    rate: int,
    fail_rate: float,
    latency: float,
    seed: int | None,
    token: str | None,
    log: Path | None,
) -> int:
    """Serve a local stand-in for the Broadcasting APIs (V1, V2, Chatfuel)."""
    import asyncio

    from runner.mockserver import MockOptions, MockServer, serve_forever

    server = MockServer(
        MockOptions(
            rate=rate,
            fail_rate=fail_rate,
            latency_ms=latency,
            seed=seed,
            token=token,
            log=log,
            keep_params=False,
        )
    )
    try:
        asyncio.run(serve_forever(server, host, port))
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return 0


@cli.command()
def schema() -> int:
    """Print the campaign file's JSON Schema."""
    from runner.schema import schema_text

    click.echo(schema_text(), nl=False)
    return 0


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    """The one exit boundary: every command's exit code, every error's message, and 130 for
    Ctrl-C or SIGTERM, whatever the command was doing. Unexpected bugs keep their traceback."""
    if threading.current_thread() is threading.main_thread():  # only it can take signals
        signal.signal(signal.SIGTERM, _terminate)
    try:
        code = cli.main(args, prog_name="campaign", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("\ninterrupted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except CampaignError as exc:
        _fail(str(exc))
        if isinstance(exc, InvalidCampaign):
            n = len(exc.problems)
            click.echo(f"{n} problem{'s' if n != 1 else ''}: nothing was sent", err=True)
        return exc.exit_code
    return code if isinstance(code, int) else 0
