"""The rules a JSON Schema cannot state, each pointing at its line."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2

from runner import apis, render, repository, secrets
from runner.audience import FORMATS, format_of
from runner.audience import columns as audience_columns
from runner.errors import CampaignError, Problem
from runner.model import PUBLIC_RATE_LIMIT, Audience, Field, base_url_problem
from runner.schedule import parse_moment, zone_problem
from runner.yamlsource import Document, format_path
from runner.yamlsource import Path as KeyPath

_SECRET_KEYS = ("token", "id", "base_url")


def semantic(
    doc: Document, filename: str, campaign_file: Path, *, outside_repo: bool = False
) -> list[Problem]:
    data = doc.data if isinstance(doc.data, dict) else {}
    found: list[Problem] = []

    def at(path: KeyPath, message: str, severity: str = "error", key: bool = False) -> None:
        mark = doc.key_mark(path) if key else doc.value_mark(path)
        found.append(
            Problem(filename, mark.line, mark.column, format_path(path), message, severity)
        )

    for path, mark in doc.duplicates:
        found.append(
            Problem(
                filename,
                mark.line,
                mark.column,
                format_path(path),
                f"duplicate key '{path[-1]}' (the later one would silently win)",
            )
        )
    bot: dict[str, Any] = data["bot"] if isinstance(data.get("bot"), dict) else {}
    _check_bot(bot, at)
    _check_stray_references(data, (), at)
    columns = _check_audience(data.get("audience"), campaign_file, at, outside_repo)
    schedule = data.get("schedule")
    if isinstance(schedule, dict):
        _check_schedule(schedule, at, columns)

    api = bot.get("api", "v1")
    if api not in ("v1", "v2", "chatfuel"):
        api = "v1"  # the schema has said api is wrong; the message is checked as the default's
    message = data.get("message")
    if isinstance(message, dict):
        module = apis.module(api)
        for path, text in module.check(message):
            at(path, text, key=True)
        variables: dict[str, Any] = data["vars"] if isinstance(data.get("vars"), dict) else {}
        try:
            fields = module.template_fields(module.parse_message(message))
        except (KeyError, TypeError, AttributeError):
            fields = []  # the schema has already said what is wrong with the shape
        for field in fields:
            _check_template(field, variables, doc, filename, found, columns)
    return found


def _check_bot(bot: dict[str, Any], at: Any) -> None:
    for key in _SECRET_KEYS:
        value = bot.get(key)
        if isinstance(value, str):
            problem = secrets.syntax_problem(value)
            if problem:
                at(("bot", key), problem)
    token = bot.get("token")
    if isinstance(token, str) and token and "$" not in token:  # a bad ${...} is said above
        at(
            ("bot", "token"),
            "a literal token would be committed to git: write ${VAR} (e.g. ${SMAX_BOT_TOKEN}) "
            "and export VAR when running",
        )
    base_url = bot.get("base_url")
    # (the schema already refuses what does not start with http:// or https://)
    if isinstance(base_url, str) and base_url.startswith(("http://", "https://")):
        problem = base_url_problem(base_url)
        if problem:
            at(("bot", "base_url"), problem)
    rate = bot.get("rate_limit")
    if isinstance(rate, int) and rate > PUBLIC_RATE_LIMIT and "base_url" not in bot:
        at(
            ("bot", "rate_limit"),
            f"{rate} requests/s is above the public APIs' limit of {PUBLIC_RATE_LIMIT}; raise it "
            "only for a private deployment (bot.base_url), the mock server or a benchmark",
            "warning",
        )


def _check_stray_references(data: Any, path: KeyPath, at: Any) -> None:
    """``${VAR}`` is read only in bot.token/id/base_url; elsewhere say it stays literal."""
    for child, value in _strings(data, path):
        if child[:1] == ("bot",) and child[-1] in _SECRET_KEYS:
            continue
        if secrets.references(value):
            at(
                child,
                "${...} is only read from the environment in bot.token, bot.id and "
                "bot.base_url; here it is sent as literal text",
                "warning",
            )


def _strings(data: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _strings(value, (*path, i))
    elif isinstance(data, str):
        yield path, data


def _check_audience(
    audience: Any, campaign_file: Path, at: Any, outside_repo: bool
) -> set[str] | None:
    """Check the audience; the columns it offers templates, None when they cannot be known."""
    if not isinstance(audience, dict):
        return None
    has = [key for key in ("file", "customers") if key in audience]
    if len(has) == 2:
        at(("audience", "customers"), "give file or customers, not both", key=True)
    elif not has:
        at(("audience",), "expected file or customers (one is required)", key=True)
    if "format" in audience and "file" not in audience:
        at(("audience", "format"), "format applies to audience.file only", key=True)
    columns: set[str] | None = None
    file = audience.get("file")
    if isinstance(file, str) and "\x00" in file:
        at(("audience", "file"), "the file name holds a NUL character; no file has such a name")
    elif isinstance(file, str) and file:
        path = campaign_file.parent / file
        problem = repository.audience_problem(path, campaign_file, outside_repo)
        fmt = format_of(
            path, audience.get("format") if isinstance(audience.get("format"), str) else None
        )
        if problem:
            at(("audience", "file"), problem)
        elif not path.is_file():
            at(("audience", "file"), f"audience file not found: {path}")
        elif fmt is None:
            known = ", ".join(sorted(FORMATS))
            at(
                ("audience", "file"),
                f"cannot tell the format of {file!r} from its extension "
                f"({known}); set audience.format",
            )
        else:
            delimiter = audience.get("delimiter", ",")
            try:
                columns = audience_columns(Audience(path, fmt, None, None, delimiter=delimiter))
            except CampaignError as exc:
                at(("audience", "file"), f"the audience cannot be read: {exc}")
            else:
                other = _other_delimiter(columns, delimiter) if fmt == "csv" else None
                if other is not None:
                    shown = {";": '";"', "\t": '"\\t"', ",": '","'}[other]
                    at(
                        ("audience", "file"),
                        f"the header reads as one column {next(iter(columns))!r}: the file "
                        f"looks {shown}-separated (as Excel saves it where the comma is the "
                        f"decimal mark); set audience.delimiter: {shown}",
                    )
                    columns = None  # no "no such column" for every field on top of it
    elif isinstance(audience.get("customers"), list) and all(
        isinstance(c, dict) for c in audience["customers"]
    ):
        columns = {str(k) for c in audience["customers"] for k in c}
    where = audience.get("where")
    if isinstance(where, str) and where.strip():
        try:
            render.STRICT.compile_expression(where)
            render.check_template(where, {}, expression=True)
        except jinja2.TemplateSyntaxError as exc:
            if _ASSIGNMENT.search(where):
                at(("audience", "where"), "expression syntax error: use == to compare (= assigns)")
            else:
                at(("audience", "where"), f"expression syntax error: {exc.message}")
        except render.TemplateSyntaxProblem as exc:
            if not exc.message.startswith("vars."):
                at(("audience", "where"), exc.message)
        else:
            for name, _ in render.customer_fields(where, expression=True):
                if columns is not None and name not in columns:
                    at(("audience", "where"), _no_column(name, columns))
    return columns


def _check_schedule(schedule: dict[str, Any], at: Any, columns: set[str] | None) -> None:
    moments = {}
    for key in ("not_before", "not_after"):
        if isinstance(schedule.get(key), str):
            found = parse_moment(schedule[key])
            if isinstance(found, str):
                at(("schedule", key), found)
            else:
                moments[key] = found
    if len(moments) == 2 and moments["not_after"] <= moments["not_before"]:
        at(("schedule", "not_after"), "not_after must come after not_before")
    zone = schedule.get("timezone")
    if isinstance(zone, str):
        if render.is_template(zone):
            try:
                render.check_template(zone, {})
            except render.TemplateSyntaxProblem as exc:
                at(("schedule", "timezone"), exc.message)
            else:
                for name, _ in render.customer_fields(zone):
                    if columns is not None and name not in columns:
                        at(("schedule", "timezone"), _no_column(name, columns))
        elif problem := zone_problem(zone):
            at(("schedule", "timezone"), problem)
    if "quiet_hours" in schedule and "timezone" not in schedule:
        at(
            ("schedule", "quiet_hours"),
            "quiet hours are local hours: give schedule.timezone (an IANA name, or "
            '"{{ customer.tz }}")',
            key=True,
        )
    quiet = schedule.get("quiet_hours")
    if (
        isinstance(quiet, dict)
        and isinstance(quiet.get("start"), str)
        and quiet.get("start") == quiet.get("end")
    ):
        at(
            ("schedule", "quiet_hours", "end"),
            f"quiet hours that start and end at {quiet['end']} are never quiet: give the "
            "time they end (they may cross midnight, e.g. 21:00 to 08:00)",
        )


_ASSIGNMENT = re.compile(r"(?<![=!<>])=(?!=)")


def _other_delimiter(columns: set[str], delimiter: str) -> str | None:
    """The delimiter a one-column header seems to be split by, if not the declared one."""
    if len(columns) != 1:
        return None
    header = next(iter(columns))
    found = [d for d in (";", "\t", ",") if d != delimiter and d in header]
    return found[0] if found else None


def _no_column(name: str, columns: set[str]) -> str:
    same_but_case = [c for c in sorted(columns) if c.lower() == name.lower()]
    guess = same_but_case or difflib.get_close_matches(name, sorted(columns), n=1)
    hint = f"; did you mean customer.{guess[0]}?" if guess else ""
    shown = ", ".join(sorted(columns)[:12]) + (", ..." if len(columns) > 12 else "")
    return f"customer.{name}: no such column in the audience (columns: {shown}){hint}"


def _check_template(
    field: Field,
    variables: dict[str, Any],
    doc: Document,
    filename: str,
    found: list[Problem],
    columns: set[str] | None,
) -> None:
    if not render.is_template(field.source):
        return

    def problem(lineno: int, message: str) -> None:
        mark = doc.value_mark(field.path)
        # A block scalar's text starts on the line after its indicator.
        offset = lineno if field.path in doc.block_scalars else lineno - 1
        column = 1 if offset else mark.column
        found.append(
            Problem(filename, mark.line + offset, column, format_path(field.path), message)
        )

    try:
        render.check_template(field.source, variables)
    except render.TemplateSyntaxProblem as exc:
        problem(exc.lineno, exc.message)
        return
    reads = render.customer_fields(field.source)
    if columns is not None:
        for name, lineno in reads:
            if name not in columns:
                problem(lineno, _no_column(name, columns))
    if not reads and "customer" not in field.source:
        failure = render.render_constant(
            field.source, {"vars": variables, "campaign": {"name": "", "description": ""}}
        )
        if failure:
            problem(1, f"this template fails for every customer: {failure}")
