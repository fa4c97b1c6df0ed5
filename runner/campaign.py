"""Campaign files -> validated, frozen `Campaign` records, with every problem at once."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from datetime import datetime, time
from pathlib import Path
from typing import Any

from runner import apis, checks, repository, schema
from runner.audience import format_of
from runner.errors import InvalidCampaign, Problem, UsageError
from runner.model import Audience, Bot, Campaign, Delivery
from runner.schedule import Schedule, parse_clock, parse_moment
from runner.yamlsource import Document, YamlSyntaxError, parse

# A campaign file is configuration. Past this, reading it as YAML would take seconds and
# hundreds of MB (a 1 MB flow list took 12 s) before saying anything useful.
MAX_FILE = 128 * 1024


def problems_of(path: Path, *, outside_repo: bool = False) -> tuple[list[Problem], Document | None]:
    """(every problem, errors and warnings, of the file; the parsed document when it is one).

    ``outside_repo``: the person running the command allows an audience file outside the
    campaign's repository (a local export); a campaign file cannot allow it itself."""
    name = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE + 1)
        if len(raw) > MAX_FILE:
            return [
                Problem(
                    name,
                    1,
                    1,
                    "",
                    f"the file is larger than {MAX_FILE // 1024} KiB: a campaign file is "
                    "configuration; keep a large audience in audience.file (CSV, JSON Lines "
                    "or JSON), not inline",
                )
            ], None
        text = raw.decode("utf-8")
    except FileNotFoundError:
        return [Problem(name, 1, 1, "", "file not found")], None
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(name, 1, 1, "", f"cannot read the file: {exc}")], None
    try:
        doc = parse(text)
    except YamlSyntaxError as exc:
        return [Problem(name, exc.mark.line, exc.mark.column, "", exc.message)], None
    if not isinstance(doc.data, dict):
        kind = "nothing" if doc.data is None else type(doc.data).__name__
        return [Problem(name, 1, 1, "", f"expected a mapping of campaign keys, got {kind}")], None
    problems = schema.check(doc, name) + checks.semantic(doc, name, path, outside_repo=outside_repo)
    return sorted(set(problems), key=lambda p: (p.line, p.column, p.message)), doc


def load(path: Path, *, outside_repo: bool = False) -> Campaign:
    """The campaign at ``path``; raises `InvalidCampaign` listing every error."""
    problems, doc = problems_of(path, outside_repo=outside_repo)
    errors = [p for p in problems if p.severity == "error"]
    if errors or doc is None:
        raise InvalidCampaign(errors)
    campaign = _build(path, doc, tuple(p for p in problems if p.severity == "warning"))
    if outside_repo and campaign.audience.file is not None:
        root = repository.root(path)
        resolved = campaign.audience.file.resolve()
        if root not in resolved.parents:
            audience = dataclasses.replace(campaign.audience, outside_repository=True)
            campaign = dataclasses.replace(campaign, audience=audience)
    return campaign


def _build(path: Path, doc: Document, warnings: tuple[Problem, ...]) -> Campaign:
    data: dict[str, Any] = doc.as_written(
        ("bot", "id"), ("message", "block_id"), ("message", "attributes")
    )
    bot = data["bot"]
    api = bot.get("api", "v1")
    audience = data["audience"]
    file = None
    if "file" in audience:
        file = path.parent / audience["file"]
    delivery = data.get("delivery") or {}
    return Campaign(
        path=path,
        name=data["name"],
        description=data.get("description", ""),
        bot=Bot(
            api=api,
            id=str(bot["id"]),
            token=bot["token"],
            base_url=bot.get("base_url"),
            rate_limit=bot.get("rate_limit", 25),
        ),
        audience=Audience(
            file=file,
            format=format_of(file, audience.get("format")) if file else None,
            customers=tuple(audience["customers"]) if "customers" in audience else None,
            where=audience.get("where"),
            max_invalid=audience.get("max_invalid", 0),
            delimiter=audience.get("delimiter", ","),
        ),
        message=apis.module(api).parse_message(data["message"]),
        vars=dict(data.get("vars") or {}),
        delivery=Delivery(
            concurrency=delivery.get("concurrency", 25),
            timeout=float(delivery.get("timeout", 10)),
            retries=delivery.get("retries", 3),
            max_consecutive_failures=delivery.get("max_consecutive_failures", 50),
            retry_timeouts=delivery.get("retry_timeouts", False),
            rate_limited_for=float(delivery.get("rate_limited_for", 180.0)),
        ),
        schedule=_schedule(data.get("schedule") or {}),
        warnings=warnings,
        # Where the ${VAR} settings stand, for messages about them when running.
        marks={
            f"bot.{key}": doc.value_mark(("bot", key))
            for key in ("id", "token", "base_url")
            if key in bot
        },
    )


def _schedule(data: dict[str, Any]) -> Schedule:
    """The validated schedule section as a record (checks.py has refused what cannot parse)."""

    def moment(key: str) -> datetime | None:
        found = parse_moment(data[key]) if key in data else None
        return found if isinstance(found, datetime) else None

    quiet = data.get("quiet_hours") or {}
    start = parse_clock(quiet["start"]) if "start" in quiet else None
    end = parse_clock(quiet["end"]) if "end" in quiet else None
    return Schedule(
        not_before=moment("not_before"),
        not_after=moment("not_after"),
        timezone=data.get("timezone"),
        quiet_start=start if isinstance(start, time) else None,
        quiet_end=end if isinstance(end, time) else None,
    )


def expand(targets: list[str]) -> list[Path]:
    """Files, folders (every *.yaml / *.yml inside) and globs -> campaign files, in order."""
    found: list[Path] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
            )
        elif any(ch in target for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(target, recursive=True))
            if not matches:
                raise UsageError(f"{target}: no campaign files match")
            found += [p for p in matches if p.is_file()]
        else:
            found.append(path)
    # One file however its path is spelled (./a/../a/x.yaml): the first spelling is kept.
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
