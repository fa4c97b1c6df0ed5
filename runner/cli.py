"""The `campaign` command line: parse arguments, call the core, turn errors into exit codes.

This is the only module that knows click, and the one place where a `CampaignError` becomes a
message on stderr and an exit code (SPEC §3). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from runner import __version__
from runner.errors import CampaignError, InvalidCampaign

F = TypeVar("F", bound=Callable[..., Any])


def _errors_to_exit_codes(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CampaignError as exc:
            click.echo(str(exc), err=True)
            if isinstance(exc, InvalidCampaign):
                n = len(exc.problems)
                click.echo(f"{n} problem{'s' if n != 1 else ''}: nothing was sent", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def _json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _warnings(warnings: Any) -> None:
    for warning in warnings:
        click.echo(str(warning), err=True)


output_option = click.option(
    "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="Human text, or JSON for machines.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="campaign")
def cli() -> None:
    """Run chatbot broadcasts declared in YAML campaign files."""


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@output_option
@_errors_to_exit_codes
def validate(targets: tuple[str, ...], output: str) -> None:
    """Check campaign files, folders or globs: schema, rules and templates.

    Needs no secrets and no network. Exit 0 when every file is valid, 2 otherwise.
    """
    from runner.commands.validate import validate as run_validate

    result = run_validate(list(targets))
    if output == "json":
        _json(result.as_dict())
    else:
        click.echo(result.text(), err=result.exit_code != 0)
    sys.exit(result.exit_code)


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--report", "report_dir", type=click.Path(path_type=Path),
              help="Report folder (default reports/<name>/plan-<run-id>/).")
@click.option("--limit", type=click.IntRange(min=1), help="Render only the first N rows.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Write a digest of exactly what would be sent, for `run --plan`.")
@click.option("--sandbox", is_flag=True, help="Preview against the local mock server.")
@output_option
@_errors_to_exit_codes
def plan(
    targets: tuple[str, ...], report_dir: Path | None, limit: int | None, out: Path | None,
    sandbox: bool, output: str,
) -> None:
    """Dry run: render every request, send nothing, write the report."""
    from runner.campaign import expand
    from runner.commands import plan as planning

    paths = expand(list(targets))
    if len(paths) > 1 and (out or report_dir):
        raise click.UsageError("--out and --report take one campaign file at a time")
    results = []
    for path in paths:
        result = planning.plan(path, report_dir=report_dir, limit=limit, out=out, sandbox=sandbox)
        _warnings(result.campaign.warnings)
        results.append(result)
        if output == "text":
            click.echo(planning.text(result))
    if output == "json":
        payload = [{"summary": r.summary, "samples": r.samples} for r in results]
        _json(payload[0] if len(payload) == 1 else payload)


@cli.command()
def schema() -> None:
    """Print the campaign file's JSON Schema."""
    from runner.schema import schema_text

    click.echo(schema_text(), nl=False)


def main() -> None:
    try:
        cli(prog_name="campaign")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
