"""The rules a JSON Schema cannot state (SPEC §2), each pointing at its line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2

from runner import apis, render, secrets
from runner.audience import FORMATS, format_of
from runner.errors import Problem
from runner.model import PUBLIC_RATE_LIMIT, Field, base_url_problem
from runner.yamlsource import Document, format_path
from runner.yamlsource import Path as KeyPath

_SECRET_KEYS = ("token", "id", "base_url")


def semantic(doc: Document, filename: str, base_dir: Path) -> list[Problem]:
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
    _check_audience(data.get("audience"), base_dir, at)

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
            _check_template(field, variables, doc, filename, found)
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


def _check_audience(audience: Any, base_dir: Path, at: Any) -> None:
    if not isinstance(audience, dict):
        return
    has = [key for key in ("file", "customers") if key in audience]
    if len(has) == 2:
        at(("audience", "customers"), "give file or customers, not both", key=True)
    elif not has:
        at(("audience",), "expected file or customers (one is required)", key=True)
    if "format" in audience and "file" not in audience:
        at(("audience", "format"), "format applies to audience.file only", key=True)
    file = audience.get("file")
    if isinstance(file, str) and file:
        path = base_dir / file
        if not path.is_file():
            at(("audience", "file"), f"audience file not found: {path}")
        elif format_of(path, audience.get("format")) is None:
            known = ", ".join(sorted(FORMATS))
            at(
                ("audience", "file"),
                f"cannot tell the format of {file!r} from its extension "
                f"({known}); set audience.format",
            )
    where = audience.get("where")
    if isinstance(where, str) and where.strip():
        try:
            render.STRICT.compile_expression(where)
            render.check_template(where, {}, expression=True)
        except jinja2.TemplateSyntaxError as exc:
            at(("audience", "where"), f"expression syntax error: {exc.message}")
        except render.TemplateSyntaxProblem as exc:
            if not exc.message.startswith("vars."):
                at(("audience", "where"), exc.message)


def _check_template(
    field: Field, variables: dict[str, Any], doc: Document, filename: str, found: list[Problem]
) -> None:
    if not render.is_template(field.source):
        return
    try:
        render.check_template(field.source, variables)
    except render.TemplateSyntaxProblem as exc:
        mark = doc.value_mark(field.path)
        # A block scalar's text starts on the line after its indicator.
        offset = exc.lineno if field.path in doc.block_scalars else exc.lineno - 1
        column = 1 if offset else mark.column
        found.append(
            Problem(filename, mark.line + offset, column, format_path(field.path), exc.message)
        )
