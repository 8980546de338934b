"""A client key never reaches the upstream, whichever and however many carriers hold it
(docs/security.md "Clients and policy"): `Authorization` (Bearer, token, Basic username or
password), `X-Api-Key` and `Proxy-Authorization: Bearer`, alone or together, the key of the
client that is served or another client's. On the lean path, the general path, and with
`--workers 2`; the upstream is a raw socket recording every header byte.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from tests import rawhttp
from tests.builders import bearer, connection, on_path
from tests.cli.procs import start_workers, stop_workers
from tests.plane import MakeProxy

KEY = "ck-carrier-CANARY-41aa"
OTHER_KEY = "ck-other-CANARY-9d02"
SECRET = "sk-upstream-carrier-7710"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def tree(base: str, path: str) -> dict[str, Any]:
    clients = [
        {"name": "agent", "key": KEY, "connections": ["api"]},
        {"name": "other", "key": OTHER_KEY, "connections": ["api"]},
    ]
    return on_path(
        {"clients": clients, "connections": [connection("api", base, bearer(SECRET))]}, path
    )


CARRIED = {
    "bearer and x-api-key": [("Authorization", f"Bearer {KEY}"), ("X-Api-Key", KEY)],
    "x-api-key first": [("X-Api-Key", KEY), ("Authorization", f"Bearer {KEY}")],
    "all three": [
        ("Proxy-Authorization", f"Bearer {KEY}"),
        ("X-Api-Key", KEY),
        ("Authorization", f"token {KEY}"),
    ],
    "basic and x-api-key": [("Authorization", basic(KEY, "")), ("X-Api-Key", KEY)],
    "basic password and proxy-authorization": [
        ("Authorization", basic("user", KEY)),
        ("Proxy-Authorization", f"Bearer {KEY}"),
    ],
    "another client's key beside": [("Authorization", f"Bearer {KEY}"), ("X-Api-Key", OTHER_KEY)],
    "two x-api-key headers": [("X-Api-Key", KEY), ("X-Api-Key", KEY)],
}


def request(headers: list[tuple[str, str]]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return rawhttp.get("/api/items?page=2", headers=lines + "X-Keep: yes\r\n")


def assert_no_key_upstream(received: rawhttp.Message) -> None:
    text = "\n".join(f"{k}: {v}" for k, v in received.headers) + received.target
    assert KEY not in text and OTHER_KEY not in text, text
    for encoded in (basic(KEY, ""), basic("user", KEY)):
        assert encoded.split()[1] not in text
    assert received.get("Authorization") == f"Bearer {SECRET}"
    assert received.get_all("X-Api-Key") == []
    assert received.get("X-Keep") == "yes"


@pytest.mark.parametrize("path", ["lean", "general"])
@pytest.mark.parametrize("headers", CARRIED.values(), ids=CARRIED.keys())
async def test_every_carrier_holding_a_key_is_removed(
    make_proxy: MakeProxy, path: str, headers: list[tuple[str, str]]
) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = rawhttp.port_of(await make_proxy(tree(upstream.base, path)))
        reply = await rawhttp.round_trip(port, request(headers))
    assert reply.status == 200
    [received] = upstream.received
    assert_no_key_upstream(received.request)


async def test_a_carrier_without_a_known_key_still_passes(make_proxy: MakeProxy) -> None:
    # Only headers that hold a client key are removed: the app's own X-Api-Key goes on.
    async with rawhttp.raw_upstream() as upstream:
        port = rawhttp.port_of(await make_proxy(tree(upstream.base, "lean")))
        headers = [("Authorization", f"Bearer {KEY}"), ("X-Api-Key", "the-app's-own")]
        assert (await rawhttp.round_trip(port, request(headers))).status == 200
    [received] = upstream.received
    assert received.request.get_all("X-Api-Key") == ["the-app's-own"]


async def test_with_two_workers_no_carrier_reaches_the_upstream(tmp_path: Path) -> None:
    async with rawhttp.raw_upstream() as upstream:
        proc, port = await start_workers(tmp_path, tree(upstream.base, "lean"), workers=2)
        try:
            replies = await asyncio.gather(
                *(rawhttp.round_trip(port, request(h)) for h in CARRIED.values() for _ in range(3))
            )
        finally:
            code, _ = await stop_workers(proc)
    assert code == 0
    assert [r.status for r in replies] == [200] * len(replies)
    assert len(upstream.received) == len(replies)
    for received in upstream.received:
        assert_no_key_upstream(received.request)
