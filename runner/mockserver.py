"""A local stand-in for the Broadcasting APIs, for rehearsals (`--sandbox`), tests and benchmarks.

It answers as the API documents say: V1 and Chatfuel at ``/bots/{bot}/users/{user}/send``, V2 at
``/public/bots/{bot}/send``; checks the required parameters; enforces a per-bot rate in any
one-second window with 429 and Retry-After; injects reproducible failures; and keeps every
arrival so that tests and benchmarks can measure what reached the server.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from aiohttp import web

from runner.secrets import Masker

TAGS = {"CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE"}
_CF_BLOCKS = ("chatfuel_block_name", "chatfuel_block_id", "chatfuel_flow_name")
_V2_IDS = ("customer_id", "customer_email", "customer_phone", "customer_fbid")
_PAGE = """campaign-runner mock server: a local stand-in for the Broadcasting APIs.
V1 and Chatfuel: POST /bots/{bot}/users/{user}/send?bot_token=...|chatfuel_token=...
V2:              POST /public/bots/{bot}/send  (Authorization: Bearer <token>, JSON body)
Nothing sent here reaches a real customer.
"""


@dataclass(frozen=True, slots=True)
class Arrival:
    t: float  # time.monotonic() at arrival
    api: str
    bot: str
    recipient: str
    status: int
    params: dict[str, Any]


@dataclass
class MockOptions:
    rate: int = 25  # per bot, in any one-second window; 0 turns the check off
    fail_rate: float = 0.0
    latency_ms: float = 0.0
    seed: int | None = None
    token: str | None = None  # when set, the only token accepted
    log: Path | None = None
    keep_params: bool = True  # tests read them; throughput benchmarks turn them off


@dataclass
class MockServer:
    options: MockOptions = field(default_factory=MockOptions)
    arrivals: list[Arrival] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.options.seed)
        self._windows: dict[str, deque[float]] = {}
        self._runner: web.AppRunner | None = None
        self._log: IO[bytes] | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_post("/bots/{bot}/users/{user}/send", self._v1)
        app.router.add_post("/public/bots/{bot}/send", self._v2)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in the running loop; returns the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[-1][1])
        return f"http://{host}:{self.port}"

    def reset(self) -> None:
        """Forget every arrival and every rate window (between benchmark rounds)."""
        self.arrivals.clear()
        self._windows.clear()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._log is not None:
            self._log.close()

    async def _index(self, _request: web.Request) -> web.Response:
        return web.Response(text=_PAGE)

    async def _v1(self, request: web.Request) -> web.Response:
        query = request.query
        bot, user = request.match_info["bot"], request.match_info["user"]
        if "chatfuel_token" in query:
            api, token = "chatfuel", query.get("chatfuel_token", "")
            problem = _check_chatfuel(query)
        else:
            api, token = "v1", query.get("bot_token", "")
            problem = _check_v1(query)
        return await self._answer(api, bot, user, token, problem, query)

    async def _v2(self, request: web.Request) -> web.Response:
        bot = request.match_info["bot"]
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        problem = _check_v2(body)
        recipient = ""
        if isinstance(body, dict):
            recipient = next((str(body[k]) for k in _V2_IDS if body.get(k)), "")
        return await self._answer(
            "v2", bot, recipient, token, problem, body if isinstance(body, dict) else {}
        )

    async def _answer(
        self,
        api: str,
        bot: str,
        recipient: str,
        token: str,
        problem: str | None,
        raw: Mapping[str, Any],
    ) -> web.Response:
        now = time.monotonic()
        status, payload, headers = self._decide(bot, token, problem, now)
        params = dict(raw) if self.options.keep_params or self.options.log else {}
        self.arrivals.append(Arrival(now, api, bot, recipient, status, params))
        if self.options.log is not None:
            if self._log is None:
                self._log = self.options.log.open("ab")
            masked = Masker([token])
            entry = {
                "t": time.time(),
                "api": api,
                "bot": bot,
                "recipient": recipient,
                "status": status,
                "params": orjson.loads(masked(orjson.dumps(params).decode())),
            }
            self._log.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
            self._log.flush()
        if self.options.latency_ms:
            await asyncio.sleep(self.options.latency_ms / 1000)
        return web.Response(
            body=orjson.dumps(payload),
            status=status,
            headers=headers,
            content_type="application/json",
        )

    def _decide(
        self, bot: str, token: str, problem: str | None, now: float
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not token or (self.options.token is not None and token != self.options.token):
            return 401, {"success": False, "result": "invalid bot token"}, {}
        if self.options.rate:
            window = self._windows.setdefault(bot, deque())
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= self.options.rate:
                return (
                    429,
                    {"success": False, "result": "rate limit exceeded"},
                    {"Retry-After": "1"},
                )
            window.append(now)
        if problem:
            return 400, {"success": False, "result": problem}, {}
        if self.options.fail_rate and self._random.random() < self.options.fail_rate:
            if self._random.random() < 0.5:
                return 503, {"success": False, "result": "temporarily unavailable"}, {}
            return 200, {"success": False, "result": "user has blocked the bot"}, {}
        return 200, {"success": True, "result": "message sent"}, {}


def _check_v1(query: Any) -> str | None:
    blocks = [k for k in ("block_name", "block_id") if query.get(k)]
    if len(blocks) != 1:
        return "exactly one of block_name and block_id is required"
    tag = query.get("messaging_tag")
    if tag is not None and tag.strip('"') not in TAGS:
        return f"invalid messaging_tag {tag}"
    reserved = [k for k in query if k.startswith("chatfuel_")]
    if reserved:
        return f"reserved parameter {reserved[0]}"
    return None


def _check_chatfuel(query: Any) -> str | None:
    blocks = [k for k in _CF_BLOCKS if query.get(k)]
    if len(blocks) != 1:
        return "exactly one of " + ", ".join(_CF_BLOCKS) + " is required"
    tag = query.get("chatfuel_message_tag")
    if tag is not None and tag not in TAGS:
        return f"invalid chatfuel_message_tag {tag}"
    return None


def _check_v2(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "expected a JSON object"
    if not any(body.get(k) for k in _V2_IDS):
        return "one of customer_id, customer_email, customer_phone, customer_fbid is required"
    if ("block_id" in body) == ("messages" in body):
        return "exactly one of block_id and messages is required"
    if "messages" in body and not (
        isinstance(body["messages"], list)
        and body["messages"]
        and all(isinstance(m, dict) and m.get("text") for m in body["messages"])
    ):
        return 'messages must be a non-empty list of {"text": ...}'
    if body.get("messaging_tag") is not None and body["messaging_tag"] not in TAGS:
        return f"invalid messaging_tag {body['messaging_tag']}"
    return None


async def serve_forever(server: MockServer, host: str, port: int) -> None:
    url = await server.start(host, port)
    print(f"mock server listening on {url} (Ctrl-C to stop)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
