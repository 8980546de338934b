"""`secret` placeholders in forward-proxy mode (docs/placeholders.md, docs/forward-proxy.md):
the same guard as the reverse mode, inside intercepted CONNECT tunnels and for absolute-form
`http://` requests. The placeholder reaches only a host bound to its own connection, in its
declared header; toward any other host, in another header or in the target it is 403
`placeholder_misdirected` and no upstream sees a byte (each upstream counts its requests and
TCP connections). Raw sockets, TLS through the tunnel trusting only the proxy's CA."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from proxy.dataplane.plane import DataPlane
from tests import rawhttp
from tests.forwardproxy import intercepted, request, running_plane
from tests.placeholder import secret

AI_PLACEHOLDER = "sk-fwd-placeholder-ai-01"
MAIL_PLACEHOLDER = "sk-fwd-placeholder-mail-02"
AI_SECRET = "sk-fwd-real-CANARY-ai-3c"
MAIL_SECRET = "sk-fwd-real-CANARY-mail-4d"


@dataclass
class Setup:
    plane: DataPlane
    port: int  # the proxy
    ai: rawhttp.RawUpstream  # bound to localhost:<its port>, AI_PLACEHOLDER in Authorization
    mail: rawhttp.RawUpstream  # bound to localhost:<its port>, MAIL_PLACEHOLDER in X-Api-Key
    plain: rawhttp.RawUpstream  # a bearer connection, no placeholder

    def hits(self) -> int:
        return sum(len(u.received) + u.connections for u in (self.ai, self.mail, self.plain))


def bound(name: str, upstream: rawhttp.RawUpstream, credential: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "baseUrl": upstream.base,
        "hosts": [f"localhost:{upstream.port}"],
        "credentials": [credential],
    }


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with AsyncExitStack() as stack:
        ai = await stack.enter_async_context(rawhttp.raw_upstream())
        mail = await stack.enter_async_context(rawhttp.raw_upstream())
        plain = await stack.enter_async_context(rawhttp.raw_upstream())
        bearer = {
            "authSchemeConfig": {"type": "bearer"},
            "credential": {"type": "string", "data": {"string": {"value": "fwd-plain-token"}}},
        }
        tree = {
            "forwardProxy": {"enabled": True},
            "connections": [
                bound("ai", ai, secret(AI_PLACEHOLDER, ["Authorization"], AI_SECRET)),
                bound("mail", mail, secret(MAIL_PLACEHOLDER, ["X-Api-Key"], MAIL_SECRET)),
                bound("plain", plain, bearer),
            ],
        }
        plane, port = await stack.enter_async_context(running_plane(tree))
        yield Setup(plane, port, ai, mail, plain)


def tunnel(
    setup: Setup, upstream: rawhttp.RawUpstream
) -> contextlib.AbstractAsyncContextManager[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """An intercepted CONNECT tunnel to `upstream`'s bound host, TLS established."""
    return intercepted(setup.plane, setup.port, f"localhost:{upstream.port}")


def get(upstream: rawhttp.RawUpstream, target: str, headers: str) -> str:
    return f"GET {target} HTTP/1.1\r\nHost: localhost:{upstream.port}\r\n{headers}\r\n"


def misdirected(answer: rawhttp.Message) -> None:
    assert answer.status == 403, answer.body
    assert json.loads(answer.body)["code"] == "placeholder_misdirected"
    assert (answer.get("Proxy-Status") or "").startswith(
        "signing-proxy; error=proxy_internal_response"
    )
    for value in (AI_SECRET, MAIL_SECRET, AI_PLACEHOLDER, MAIL_PLACEHOLDER):
        assert value not in answer.body.decode()


async def test_inside_its_own_tunnel_the_placeholder_becomes_the_secret(setup: Setup) -> None:
    async with tunnel(setup, setup.ai) as (reader, writer):
        reply = await request(
            reader,
            writer,
            get(setup.ai, "/v1/models", f"Authorization: Bearer {AI_PLACEHOLDER}\r\n"),
        )
        assert reply.status == 200
        # Misplaced on the same tunnel: refused, and the tunnel goes on serving.
        for target, headers in [
            ("/v1/x", f"X-Debug: {AI_PLACEHOLDER}\r\n"),
            (f"/v1/x?key={AI_PLACEHOLDER}", ""),
            ("/v1/x", f"Authorization: Bearer {MAIL_PLACEHOLDER}\r\n"),
        ]:
            misdirected(await request(reader, writer, get(setup.ai, target, headers)))
        again = await request(reader, writer, get(setup.ai, "/v1/again", "X-Kept: 1\r\n"))
        assert again.status == 200
    [first, second] = setup.ai.received
    assert first.request.get_all("Authorization") == [f"Bearer {AI_SECRET}"]
    assert first.request.target == "/v1/models"
    assert second.request.target == "/v1/again"
    assert setup.mail.received == [] and setup.plain.received == []


@pytest.mark.parametrize("where", ["mail", "plain"])
async def test_toward_another_connections_host_nothing_is_sent(setup: Setup, where: str) -> None:
    other = setup.mail if where == "mail" else setup.plain
    async with tunnel(setup, other) as (reader, writer):
        for header in ("Authorization: Bearer", "X-Api-Key:"):
            answer = await request(
                reader, writer, get(other, "/v1", f"{header} {AI_PLACEHOLDER}\r\n")
            )
            misdirected(answer)
    assert setup.hits() == 0


async def test_absolute_form_http_is_guarded_too(setup: Setup) -> None:
    async def absolute(upstream: rawhttp.RawUpstream, headers: str) -> rawhttp.Message:
        authority = f"localhost:{upstream.port}"
        raw = (
            f"GET http://{authority}/v1/x HTTP/1.1\r\nHost: {authority}\r\n{headers}"
            "Connection: close\r\n\r\n"
        )
        return await rawhttp.round_trip(setup.port, raw.encode())

    misdirected(await absolute(setup.mail, f"X-Api-Key: {AI_PLACEHOLDER}\r\n"))
    misdirected(await absolute(setup.ai, f"X-Api-Key: {AI_PLACEHOLDER}\r\n"))
    assert setup.hits() == 0
    answer = await absolute(setup.mail, f"X-Api-Key: {MAIL_PLACEHOLDER}\r\n")
    assert answer.status == 200
    [seen] = setup.mail.received
    assert seen.request.get_all("X-Api-Key") == [MAIL_SECRET]
