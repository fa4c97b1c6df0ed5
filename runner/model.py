"""The typed, frozen records a validated campaign becomes. Nothing downstream sees raw YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner.errors import Problem
from runner.schedule import Schedule
from runner.yamlsource import Mark
from runner.yamlsource import Path as KeyPath

# bot.base_url is a scheme and host for every API; the product adds the API's own path.
DEFAULT_HOSTS = {
    "v1": "https://api.smax.bot",
    "v2": "https://api.smax.bot",
    "chatfuel": "https://api.chatfuel.com",
}
PUBLIC_RATE_LIMIT = 25


def api_base(base_url: str, api: str) -> str:
    """Where ``api`` lives on the server at ``base_url``: V2 under /public (as on the platform
    and on the mock server). The old V2 form that already ends in /public is accepted."""
    base = base_url.rstrip("/")
    if api == "v2":
        base = base.removesuffix("/public") + "/public"
    return base


def base_url_problem(text: str) -> str | None:
    """Why ``text`` cannot be used as bot.base_url, or None."""
    try:
        parts = urlsplit(text)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError as exc:
        return f"expected a URL like https://api.smax.bot or http://127.0.0.1:8025 ({exc})"
    if parts.scheme not in ("http", "https"):
        return "expected an http:// or https:// URL, like https://api.smax.bot"
    if not parts.hostname:
        return "the URL has no host; expected e.g. https://api.smax.bot"
    if port == 0:
        return "port 0 cannot be connected to"
    if parts.query or parts.fragment:
        return "a base URL takes no ?query or #fragment: the product adds the API's own path"
    return None


@dataclass(frozen=True)
class Bot:
    api: str  # v1 | v2 | chatfuel
    id: str  # may hold ${VAR}
    token: str  # may hold ${VAR}; resolved only when running
    base_url: str | None
    rate_limit: int


@dataclass(frozen=True)
class Audience:
    file: Path | None
    format: str | None  # csv | jsonl | json, when file is set
    customers: tuple[Mapping[str, Any], ...] | None
    where: str | None
    outside_repository: bool = False  # an explicit choice to read a file outside the repo
    max_invalid: int | str = 0  # a count, or a share as "P%"
    delimiter: str = ","  # CSV only: "," ";" or a tab


@dataclass(frozen=True)
class Delivery:
    concurrency: int = 25
    timeout: float = 10.0
    retries: int = 3
    max_consecutive_failures: int = 50
    retry_timeouts: bool = False
    rate_limited_for: float = 180.0  # seconds of 429s for one recipient, then the run stops


@dataclass(frozen=True)
class Field:
    """One template of the message: where it stands and whether a missing value may be empty."""

    path: KeyPath
    source: str
    lenient: bool = False
    recipient: bool = False  # the recipient's id: a missing value means "no recipient id"


@dataclass(frozen=True)
class V1Message:
    """V1 and Chatfuel share this shape; Chatfuel adds ``flow_name``."""

    user_id: str
    block_name: str | None = None
    block_id: str | None = None
    flow_name: str | None = None
    messaging_tag: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class V2Message:
    customer: tuple[tuple[str, str], ...]  # (id|email|phone|fbid, template)
    block_id: str | None = None
    messages: tuple[str, ...] = ()
    notification_messages_token: str | None = None
    one_time_notif_token: str | None = None
    messaging_tag: str | None = None
    priority: tuple[str, ...] = ()


Message = V1Message | V2Message


@dataclass(frozen=True)
class Campaign:
    path: Path
    name: str
    description: str
    bot: Bot
    audience: Audience
    message: Message
    vars: Mapping[str, Any]
    delivery: Delivery
    schedule: Schedule = field(default_factory=Schedule)
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    marks: Mapping[str, Mark] = field(default_factory=dict, compare=False)

    def where(self, key: str) -> str:
        """``FILE:LINE:COL: key`` for messages about a setting found when running."""
        mark = self.marks.get(key)
        return f"{self.path}:{mark.line}:{mark.column}: {key}" if mark else f"{self.path}: {key}"


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom requests go: the bot's settings with ``${VAR}`` resolved."""

    base_url: str
    bot_id: str
    token: str
