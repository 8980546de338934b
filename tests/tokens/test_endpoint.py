"""`post_form` (proxy/tokens/endpoint.py), the HTTP part every token call shares (OAuth 2.0 and
the OAuth 1.0a endpoints), against a real local server."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from proxy.schemes.oauth2 import TokenEndpointError
from proxy.tokens.endpoint import endpoint_session, post_form
from tests.ports import free_port

LIMIT = 1000


async def served(aiohttp_server: Any) -> tuple[str, list[bytes]]:
    bodies: list[bytes] = []

    async def token(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(body=b"x" * (LIMIT * 3), content_type="application/json")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/token")

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_post("/moved", moved)
    server = await aiohttp_server(app)
    return str(server.make_url("")), bodies


async def test_a_redirect_is_the_answer_not_followed(aiohttp_server: Any) -> None:
    base, bodies = await served(aiohttp_server)
    async with endpoint_session(5.0) as session:
        status, _ = await post_form(session, base + "/moved", b"a=1", {}, limit=LIMIT)
    assert status == 302
    assert bodies == []  # the form never reached the redirect's target


async def test_the_answer_is_read_to_one_byte_past_the_limit(aiohttp_server: Any) -> None:
    base, bodies = await served(aiohttp_server)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with endpoint_session(5.0) as session:
        status, body = await post_form(session, base + "/token", b"grant=x", form, limit=LIMIT)
    assert (status, len(body)) == (200, LIMIT + 1)  # the caller tells "too large" by length
    assert bodies == [b"grant=x"]


async def test_no_answer_is_a_token_endpoint_error_naming_the_kind_only() -> None:
    url = f"http://127.0.0.1:{free_port()}/token?client_secret=CANARY-6f1e"
    async with endpoint_session(5.0) as session:
        with pytest.raises(TokenEndpointError) as failure:
            await post_form(session, url, b"", {}, limit=LIMIT)
    assert failure.value.error.startswith("token_endpoint_unreachable:")
    assert failure.value.status == 0
    assert "CANARY" not in repr(failure.value) and "127.0.0.1" not in str(failure.value)
