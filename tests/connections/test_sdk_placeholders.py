"""The placeholder example (`examples/placeholders.yaml`) with the real SDKs: openai, anthropic
and stripe are given the example's placeholders as their API keys, the proxy runs the example
file with only the upstreams moved to local fakes, and each fake answers only when the real key
arrives where its API reads it (docs/placeholders.md).

Each fake records every request, so the tests show the placeholder reached none of them and the
real key reached only its own. The SDKs are synchronous (httpx / requests): they run in a worker
thread while the proxy and the fakes serve on the test's event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import stripe
import yaml
from aiohttp.test_utils import TestClient

from tests import sdk_fakes
from tests.forwardproxy import client_context, running_plane
from tests.placeholder import secret
from tests.plane import MakeProxy
from tests.sdk_fakes import Fake, anthropic_answer, openai_answer, serve, stripe_answer
from tests.upstreams import catch_all

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "placeholders.yaml"
SECRETS = {
    "OPENAI_API_KEY": "sk-proj-real-CANARY-openai-41",
    "ANTHROPIC_API_KEY": "sk-ant-real-CANARY-anthropic-42",
    "STRIPE_SECRET_KEY": "sk_test_real_CANARY_stripe_43",
}


def placeholders() -> dict[str, str]:
    """connection name → its placeholder, read from the example (the SDKs hold these)."""
    tree = yaml.safe_load(EXAMPLE.read_text())
    return {
        c["name"]: c["credentials"][0]["authSchemeConfig"]["secret"]["placeholder"]
        for c in tree["connections"]
    }


@dataclass
class Setup:
    proxy: TestClient[Any, Any]
    fakes: dict[str, Fake]
    placeholders: dict[str, str]

    def url(self, route: str) -> str:
        return str(self.proxy.make_url(route))

    def nowhere(self, *values: str) -> None:
        for fake in self.fakes.values():
            for request in fake.seen:
                for value in values:
                    assert value not in request

    def hits(self) -> int:
        return sum(len(fake.seen) for fake in self.fakes.values())


@pytest.fixture
async def setup(aiohttp_server: Any, make_proxy: MakeProxy) -> Setup:
    fakes = {
        "openai": Fake(
            lambda r: r.headers.get("Authorization") == f"Bearer {SECRETS['OPENAI_API_KEY']}",
            openai_answer,
        ),
        # The anthropic SDK sends its key in x-api-key (1.x) or as a bearer token (2.x); the
        # example declares both headers.
        "anthropic": Fake(
            lambda r: (
                r.headers.get("x-api-key") == SECRETS["ANTHROPIC_API_KEY"]
                or r.headers.get("Authorization") == f"Bearer {SECRETS['ANTHROPIC_API_KEY']}"
            ),
            anthropic_answer,
        ),
        # The Stripe SDK sends its key as a bearer token (the proxy's `basic-auth` example
        # sends it as the Basic username; both are Stripe's).
        "stripe": Fake(
            lambda r: r.headers.get("Authorization") == f"Bearer {SECRETS['STRIPE_SECRET_KEY']}",
            stripe_answer,
        ),
    }
    tree = yaml.safe_load(EXAMPLE.read_text())
    for entry in tree["connections"]:
        entry["baseUrl"] = str((await serve(aiohttp_server, fakes[entry["name"]])).make_url(""))
    del tree["listen"]
    proxy = await make_proxy(tree, SECRETS)
    return Setup(proxy, fakes, placeholders())


async def test_openai_sdk_with_its_placeholder(setup: Setup) -> None:
    with openai.OpenAI(
        api_key=setup.placeholders["openai"], base_url=setup.url("/openai/v1"), max_retries=0
    ) as client:
        assert await asyncio.to_thread(sdk_fakes.chat, client) == "hello from the fake"
        [request] = setup.fakes["openai"].seen
        assert f"\nauthorization: bearer {SECRETS['OPENAI_API_KEY'].lower()}\n" in request.lower()
        setup.nowhere(*setup.placeholders.values())
        setup.nowhere(SECRETS["ANTHROPIC_API_KEY"], SECRETS["STRIPE_SECRET_KEY"])


async def test_anthropic_sdk_with_its_placeholder(setup: Setup) -> None:
    with anthropic.Anthropic(
        api_key=setup.placeholders["anthropic"], base_url=setup.url("/anthropic"), max_retries=0
    ) as client:
        assert await asyncio.to_thread(sdk_fakes.message, client) == "hello from the fake"
        [request] = setup.fakes["anthropic"].seen
        assert request.startswith("POST /v1/messages")
        setup.nowhere(*setup.placeholders.values())
        setup.nowhere(SECRETS["OPENAI_API_KEY"], SECRETS["STRIPE_SECRET_KEY"])


async def test_stripe_sdk_with_its_placeholder(setup: Setup) -> None:
    client = stripe.StripeClient(
        setup.placeholders["stripe"],
        base_addresses={"api": setup.url("/stripe")},
        max_network_retries=0,
    )
    assert await asyncio.to_thread(sdk_fakes.customers, client) == ("a@example.com", "cus_42")
    assert [r.split("\n", 1)[0] for r in setup.fakes["stripe"].seen] == [
        "POST /v1/customers",
        "GET /v1/customers/cus_42",
    ]
    setup.nowhere(*setup.placeholders.values())


async def test_an_sdk_pointed_at_another_connection_sends_nothing(setup: Setup) -> None:
    # The OpenAI placeholder toward the Anthropic route (an agent confusing its keys, or
    # steered to): refused by the proxy, which the SDK reports as a permission error.
    with anthropic.Anthropic(
        api_key=setup.placeholders["openai"], base_url=setup.url("/anthropic"), max_retries=0
    ) as client:
        with pytest.raises(anthropic.PermissionDeniedError) as caught:
            await asyncio.to_thread(sdk_fakes.message, client)
        assert caught.value.status_code == 403
        assert "placeholder_misdirected" in caught.value.response.text
        assert setup.hits() == 0


async def test_openai_sdk_through_https_proxy_with_its_placeholder(aiohttp_server: Any) -> None:
    # Forward-proxy mode: the SDK calls the real (here: local) host through HTTPS_PROXY, trusting
    # the proxy's CA; the placeholder is swapped inside the intercepted tunnel.
    secret_key = SECRETS["OPENAI_API_KEY"]
    fake = Fake(lambda r: r.headers.get("Authorization") == f"Bearer {secret_key}", openai_answer)
    app = catch_all(fake.handle)
    server = await aiohttp_server(app)
    placeholder = placeholders()["openai"]
    tree = {
        "forwardProxy": {"enabled": True},
        "connections": [
            {
                "name": "openai",
                "baseUrl": str(server.make_url("")),
                "hosts": [f"localhost:{server.port}"],
                "credentials": [secret(placeholder, ["Authorization"], secret_key)],
            }
        ],
    }
    async with running_plane(tree) as (plane, port):
        # The SDK's own default client, given the proxy and the CA as an app would configure it.
        http = openai.DefaultHttpxClient(
            proxy=f"http://127.0.0.1:{port}", verify=client_context(plane)
        )
        with openai.OpenAI(
            api_key=placeholder,
            base_url=f"https://localhost:{server.port}/v1",
            http_client=http,
            max_retries=0,
        ) as client:
            try:
                assert await asyncio.to_thread(sdk_fakes.chat, client) == "hello from the fake"
            finally:
                http.close()
    [request] = fake.seen
    assert request.startswith("POST /v1/chat/completions")
    assert placeholder not in request
