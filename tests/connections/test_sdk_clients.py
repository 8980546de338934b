"""The design proved with real SDKs: the openai, anthropic and stripe Python libraries, pointed
at the proxy with a *client key* as their `api_key`, against local fakes of those APIs.

Each fake answers only when the real credential arrives (the way each API expects it: OpenAI
`Authorization: Bearer`, Anthropic `x-api-key`, Stripe Basic with the secret key as username),
and records every request, so the tests can show the client key reached none of them: not in a
header, not in the target, not in the body. The app changes nothing but the base URL and the
key it already passes. The SDKs are synchronous (httpx / requests): they run in a worker
thread while the proxy and the fakes serve on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest
import stripe
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests import sdk_fakes
from tests.builders import api_key, basic, bearer, connection
from tests.plane import MakeProxy
from tests.sdk_fakes import Fake, anthropic_answer, openai_answer, serve, stripe_answer

OPENAI_CLIENT_KEY = "ck-openai-agent-CANARY-1b2c"
ANTHROPIC_CLIENT_KEY = "ck-anthropic-agent-CANARY-3d4e"
STRIPE_CLIENT_KEY = "ck-billing-agent-CANARY-5f6a"
OPENAI_SECRET = "sk-proj-real-openai-7788"
ANTHROPIC_SECRET = "sk-ant-real-anthropic-9900"
STRIPE_SECRET = "sk_test_real_stripe_1122"


def stripe_basic(request: web.Request) -> bool:
    expected = "Basic " + base64.b64encode(f"{STRIPE_SECRET}:".encode()).decode()
    return request.headers.get("Authorization") == expected


@dataclass
class Setup:
    proxy: TestClient[Any, Any]
    openai: Fake
    anthropic: Fake
    stripe: Fake


@pytest.fixture
async def setup(aiohttp_server: Any, make_proxy: MakeProxy) -> Setup:
    fakes = {
        "openai": Fake(
            lambda r: r.headers.get("Authorization") == f"Bearer {OPENAI_SECRET}", openai_answer
        ),
        "anthropic": Fake(
            lambda r: r.headers.get("x-api-key") == ANTHROPIC_SECRET, anthropic_answer
        ),
        "stripe": Fake(stripe_basic, stripe_answer),
    }
    servers: dict[str, TestServer] = {}
    for name, fake in fakes.items():
        servers[name] = await serve(aiohttp_server, fake)
    tree = {
        "clients": [
            {"name": "chat-agent", "key": OPENAI_CLIENT_KEY, "connections": ["openai"]},
            {"name": "claude-agent", "key": ANTHROPIC_CLIENT_KEY, "connections": ["anthropic"]},
            {"name": "billing-agent", "key": STRIPE_CLIENT_KEY, "connections": ["stripe"]},
        ],
        "connections": [
            connection(
                "openai",
                str(servers["openai"].make_url("/v1")),
                bearer(OPENAI_SECRET),
                policy={"allow": [{"methods": ["POST"], "paths": ["/chat/completions"]}]},
            ),
            connection(
                "anthropic",
                str(servers["anthropic"].make_url("")),
                api_key("x-api-key", "header", ANTHROPIC_SECRET),
            ),
            connection(
                "stripe",
                str(servers["stripe"].make_url("")),
                basic(STRIPE_SECRET, ""),
                policy={"allow": [{"methods": ["GET", "POST"], "paths": ["/v1/customers/**"]}]},
            ),
        ],
    }
    proxy = await make_proxy(tree)
    return Setup(proxy, fakes["openai"], fakes["anthropic"], fakes["stripe"])


def nowhere(fake: Fake, *keys: str) -> None:
    assert fake.seen, "the fake saw no request"
    for request in fake.seen:
        for key in keys:
            assert key not in request


async def test_openai_sdk_with_a_client_key(setup: Setup) -> None:
    with openai.OpenAI(
        api_key=OPENAI_CLIENT_KEY, base_url=str(setup.proxy.make_url("/openai")), max_retries=0
    ) as client:
        assert await asyncio.to_thread(sdk_fakes.chat, client) == "hello from the fake"
        nowhere(setup.openai, OPENAI_CLIENT_KEY)
        # The connection's policy allows chat completions only: the SDK sees the proxy's 403.
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await asyncio.to_thread(client.models.list)
        assert caught.value.status_code == 403
        assert "request_forbidden" in caught.value.response.text
        # And another agent's key does not reach this connection at all.
        with openai.OpenAI(
            api_key=ANTHROPIC_CLIENT_KEY,
            base_url=str(setup.proxy.make_url("/openai")),
            max_retries=0,
        ) as other:
            with pytest.raises(openai.PermissionDeniedError):
                await asyncio.to_thread(other.models.list)
            assert len(setup.openai.seen) == 1


async def test_anthropic_sdk_with_a_client_key(setup: Setup) -> None:
    with anthropic.Anthropic(
        api_key=ANTHROPIC_CLIENT_KEY,
        base_url=str(setup.proxy.make_url("/anthropic")),
        max_retries=0,
    ) as client:
        assert await asyncio.to_thread(sdk_fakes.message, client) == "hello from the fake"
        [request] = setup.anthropic.seen
        assert request.startswith("POST /v1/messages")
        nowhere(setup.anthropic, ANTHROPIC_CLIENT_KEY)
        # A wrong key is the proxy's 401, which the SDK reports as an authentication error.
        with anthropic.Anthropic(
            api_key="not-a-client-key",
            base_url=str(setup.proxy.make_url("/anthropic")),
            max_retries=0,
        ) as wrong:
            with pytest.raises(anthropic.AuthenticationError):
                await asyncio.to_thread(sdk_fakes.message, wrong)
            assert len(setup.anthropic.seen) == 1


async def test_stripe_sdk_with_a_client_key(setup: Setup) -> None:
    client = stripe.StripeClient(
        STRIPE_CLIENT_KEY,
        base_addresses={"api": str(setup.proxy.make_url("/stripe"))},
        max_network_retries=0,
    )
    assert await asyncio.to_thread(sdk_fakes.customers, client) == ("a@example.com", "cus_42")
    assert [r.split("\n", 1)[0] for r in setup.stripe.seen] == [
        "POST /v1/customers",
        "GET /v1/customers/cus_42",
    ]
    nowhere(setup.stripe, STRIPE_CLIENT_KEY)
    # Outside the policy (charges): refused by the proxy, never seen by the fake. The proxy's
    # error body is not Stripe's shape, so the SDK reports a generic APIError with the status.
    with pytest.raises(stripe.APIError) as caught:
        await asyncio.to_thread(lambda: client.v1.charges.retrieve("ch_1"))
    assert caught.value.http_status == 403
    assert "request_forbidden" in str(caught.value.http_body)
    assert len(setup.stripe.seen) == 2
