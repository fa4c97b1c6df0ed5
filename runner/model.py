"""The typed, frozen records a validated campaign becomes. Nothing downstream sees raw YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import Problem
from runner.yamlsource import Mark
from runner.yamlsource import Path as KeyPath

DEFAULT_BASES = {
    "v1": "https://api.smax.bot",
    "v2": "https://api.smax.bot/public",
    "chatfuel": "https://api.chatfuel.com",
}
PUBLIC_RATE_LIMIT = 25


def api_base(host_url: str, api: str) -> str:
    """The base URL of ``api`` on a server at ``host_url``: V2 lives under /public there, as
    on the platform (DEFAULT_BASES) and on the mock server."""
    return host_url + ("/public" if api == "v2" else "")


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


@dataclass(frozen=True)
class Delivery:
    concurrency: int = 25
    timeout: float = 10.0
    retries: int = 3
    max_consecutive_failures: int = 50
    retry_timeouts: bool = False


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
