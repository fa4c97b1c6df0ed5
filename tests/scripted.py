"""A scripted stand-in for the API: each recipient answers as its script says, attempt by attempt."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class ScriptedAPI:
    """``scripts[user]`` is a list of behaviours, one per attempt; the last one repeats.

    ok | blocked (success false) | bad (400) | busy (503) | limited (429, Retry-After: 1)
    | slow (no answer in time) | drop (connection closed after reading) | auth (401) | html

    Hostile ones: gateway (a proxy's 504 after the API acted) | notfound (a plain-text 404
    from a wrong host) | drip (one byte every 0.2 s) | endless (an answer without end, cut
    after 20 MB) | far (429 with Retry-After: 999999) | later (503 with Retry-After: 30)
    """

    scripts: dict[str, list[str]] = field(default_factory=dict)
    hits: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    arrivals: list[float] = field(default_factory=list)
    slow_seconds: float = 3.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bots/{bot}/users/{user}/send", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        user = request.match_info["user"]
        now = time.monotonic()
        self.arrivals.append(now)
        attempt = len(self.hits[user])
        self.hits[user].append(now)
        script = self.scripts.get(user, ["ok"])
        behaviour = script[min(attempt, len(script) - 1)]
        if behaviour == "ok":
            return web.json_response({"success": True, "result": "sent"})
        if behaviour == "blocked":
            return web.json_response({"success": False, "result": "user blocked the bot"})
        if behaviour == "bad":
            # Echo the query, token and all, as some servers do: the report must mask it.
            return web.json_response(
                {"success": False, "result": f"bad request {request.query_string}"}, status=400
            )
        if behaviour == "busy":
            return web.json_response({"success": False}, status=503)
        if behaviour == "limited":
            return web.json_response({"success": False}, status=429, headers={"Retry-After": "1"})
        if behaviour == "auth":
            return web.json_response({"success": False, "result": "invalid token"}, status=401)
        if behaviour == "html":
            return web.Response(text="<html>ok</html>")
        if behaviour == "slow":
            await asyncio.sleep(self.slow_seconds)
            return web.json_response({"success": True})
        if behaviour == "evil":  # an answer that tries to drive the terminal and the summary
            return web.json_response(
                {"success": False, "result": "\x1b]0;PWNED\x07<script>x</script> `rm` | col"}
            )
        if behaviour == "world":  # formulas, live links and bidi tricks, from the API
            return web.json_response(
                {
                    "success": False,
                    "result": '=HYPERLINK("https://evil.example/login") \u202egnp.exe '
                    "www.evil.example\u2028next",
                }
            )
        if behaviour == "gateway":
            return web.Response(status=504, text="Gateway Timeout")
        if behaviour == "notimpl":
            body = "<html>\n<head><title>Error response</title></head>\n" + "<p>x</p>\n" * 20
            return web.Response(status=501, text=body + "</html>", content_type="text/html")
        if behaviour == "notfound":
            return web.Response(status=404, text="404 page not found")
        if behaviour == "far":
            return web.json_response(
                {"success": False}, status=429, headers={"Retry-After": "999999"}
            )
        if behaviour == "later":
            return web.json_response({"success": False}, status=503, headers={"Retry-After": "30"})
        if behaviour in ("drip", "endless"):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for _ in range(100 if behaviour == "drip" else 320):  # bounded: it stops by itself
                if behaviour == "drip":
                    await response.write(b" ")
                    await asyncio.sleep(0.2)
                else:
                    await response.write(b"x" * 65536)
            return response
        if behaviour == "drop":
            assert request.transport is not None
            request.transport.abort()
            await asyncio.sleep(0.05)
            return web.Response()
        raise AssertionError(f"unknown behaviour {behaviour}")
