from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from runner.mockserver import MockOptions, MockServer


async def client_for(options: MockOptions, aiohttp_client: Any) -> tuple[TestClient, MockServer]:
    mock = MockServer(options)
    return await aiohttp_client(TestServer(mock.app())), mock


async def test_v1_accepts_a_valid_request(aiohttp_client: Any) -> None:
    client, mock = await client_for(MockOptions(rate=0), aiohttp_client)
    r = await client.post(
        "/bots/b1/users/u1/send?bot_token=t&block_name=Sale&x=1&messaging_tag=%22ACCOUNT_UPDATE%22"
    )
    assert r.status == 200
    assert await r.json() == {"success": True, "result": "message sent"}
    assert mock.arrivals[0].api == "v1"
    assert mock.arrivals[0].recipient == "u1"
    assert mock.arrivals[0].params["x"] == "1"


async def test_v1_checks_its_parameters(aiohttp_client: Any) -> None:
    client, _ = await client_for(MockOptions(rate=0), aiohttp_client)
    cases = {
        "/bots/b/users/u/send?bot_token=t": "exactly one of block_name and block_id is required",
        "/bots/b/users/u/send?bot_token=t&block_name=a&block_id=b": "exactly one of block_name and block_id is required",
        "/bots/b/users/u/send?bot_token=t&block_id=b&messaging_tag=NOPE": "invalid messaging_tag NOPE",
        "/bots/b/users/u/send?bot_token=t&block_id=b&chatfuel_x=1": "reserved parameter chatfuel_x",
    }
    for url, message in cases.items():
        r = await client.post(url)
        assert (r.status, await r.json()) == (400, {"success": False, "result": message}), url


async def test_chatfuel_names(aiohttp_client: Any) -> None:
    client, mock = await client_for(MockOptions(rate=0), aiohttp_client)
    r = await client.post(
        "/bots/b/users/u/send?chatfuel_token=t&chatfuel_flow_name=W"
        "&chatfuel_message_tag=ACCOUNT_UPDATE"
    )
    assert r.status == 200
    assert mock.arrivals[0].api == "chatfuel"
    r = await client.post("/bots/b/users/u/send?chatfuel_token=t")
    assert r.status == 400


async def test_v2_body_and_bearer_token(aiohttp_client: Any) -> None:
    client, mock = await client_for(MockOptions(rate=0), aiohttp_client)
    headers = {"Authorization": "Bearer t"}
    ok = await client.post(
        "/public/bots/b/send",
        headers=headers,
        json={"customer_email": "a@b.c", "messages": [{"text": "hi"}]},
    )
    assert ok.status == 200
    assert mock.arrivals[0].recipient == "a@b.c"
    for body, message in [
        (
            {"block_id": "1"},
            "one of customer_id, customer_email, customer_phone, customer_fbid is required",
        ),
        ({"customer_id": "1"}, "exactly one of block_id and messages is required"),
        (
            {"customer_id": "1", "messages": []},
            'messages must be a non-empty list of {"text": ...}',
        ),
    ]:
        r = await client.post("/public/bots/b/send", headers=headers, json=body)
        assert (r.status, (await r.json())["result"]) == (400, message)
    assert (await client.post("/public/bots/b/send", json={"customer_id": "1"})).status == 401


async def test_a_named_token_is_the_only_one_accepted(aiohttp_client: Any) -> None:
    client, _ = await client_for(MockOptions(rate=0, token="good"), aiohttp_client)
    assert (await client.post("/bots/b/users/u/send?bot_token=bad&block_id=1")).status == 401
    assert (await client.post("/bots/b/users/u/send?bot_token=good&block_id=1")).status == 200


async def test_rate_is_enforced_per_bot_with_retry_after(aiohttp_client: Any) -> None:
    client, _ = await client_for(MockOptions(rate=3), aiohttp_client)
    codes = [
        (await client.post("/bots/b1/users/u/send?bot_token=t&block_id=1")).status for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    r = await client.post("/bots/b1/users/u/send?bot_token=t&block_id=1")
    assert r.headers["Retry-After"] == "1"
    other = await client.post("/bots/b2/users/u/send?bot_token=t&block_id=1")
    assert other.status == 200


async def test_failures_are_reproducible_with_a_seed(aiohttp_client: Any) -> None:
    async def codes(seed: int) -> list[tuple[int, bool]]:
        client, _ = await client_for(MockOptions(rate=0, fail_rate=0.5, seed=seed), aiohttp_client)
        out = []
        for _ in range(30):
            r = await client.post("/bots/b/users/u/send?bot_token=t&block_id=1")
            out.append((r.status, (await r.json())["success"]))
        return out

    first, second = await codes(7), await codes(7)
    assert first == second
    assert {c for c in first} == {(200, True), (200, False), (503, False)}


async def test_the_log_masks_the_token(aiohttp_client: Any, tmp_path: Path) -> None:
    log = tmp_path / "mock.jsonl"
    client, mock = await client_for(MockOptions(rate=0, log=log), aiohttp_client)
    await client.post("/bots/b/users/u/send?bot_token=supersecret&block_id=1")
    await mock.stop()
    entry = json.loads(log.read_text())
    assert entry["params"]["bot_token"] == "***"
    assert "supersecret" not in log.read_text()


async def test_the_index_says_what_it_is(aiohttp_client: Any) -> None:
    client, _ = await client_for(MockOptions(), aiohttp_client)
    r = await client.get("/")
    assert "campaign-runner mock server" in await r.text()
