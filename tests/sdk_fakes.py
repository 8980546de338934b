"""Local stand-ins for the OpenAI, Anthropic and Stripe APIs that the real SDKs are pointed at
(through the proxy): each checks the credential its API expects, records every request that
arrived, and answers in the API's own shape so the SDK parses the reply; and the calls the tests
make with each SDK (synchronous: run them in a thread)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import stripe
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.upstreams import catch_all


def chat(client: openai.OpenAI) -> str | None:
    """One chat completion: the reply's text."""
    reply = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    return reply.choices[0].message.content


def message(client: anthropic.Anthropic) -> str:
    """One message: the reply's text."""
    reply = client.messages.create(
        model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    block = reply.content[0]
    assert block.type == "text"
    return block.text


def customers(client: stripe.StripeClient) -> tuple[str, str]:
    """Create a customer, fetch `cus_42`: the created one's email, the fetched one's id."""
    created = client.v1.customers.create(params={"email": "a@example.com"})
    fetched = client.v1.customers.retrieve("cus_42")
    return created.email or "", fetched.id


@dataclass
class Fake:
    """A local stand-in for one API: checks the real credential, records what arrived."""

    authorized: Callable[[web.Request], bool]
    answer: Callable[[web.Request, bytes], Awaitable[web.Response]]
    seen: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = "\n".join(f"{k.decode()}: {v.decode()}" for k, v in request.raw_headers)
        self.seen.append(f"{request.method} {request.raw_path}\n{headers}\n\n{body.decode()}")
        if not self.authorized(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        return await self.answer(request, body)


async def openai_answer(request: web.Request, body: bytes) -> web.Response:
    asked = json.loads(body)
    return web.json_response(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": asked["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hello from the fake"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5},
        }
    )


async def anthropic_answer(request: web.Request, body: bytes) -> web.Response:
    asked = json.loads(body)
    return web.json_response(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": asked["model"],
            "content": [{"type": "text", "text": "hello from the fake"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 4},
        }
    )


async def stripe_answer(request: web.Request, body: bytes) -> web.Response:
    if request.method == "POST":
        form = dict(pair.split("=", 1) for pair in body.decode().split("&") if pair)
        email = form.get("email", "").replace("%40", "@")
        return web.json_response({"id": "cus_2", "object": "customer", "email": email})
    return web.json_response(
        {"id": request.match_info["tail"].rsplit("/", 1)[-1], "object": "customer"}
    )


async def serve(aiohttp_server: Any, fake: Fake) -> TestServer:
    """`fake` on a local aiohttp test server, answering every method and path."""
    app = catch_all(fake.handle)
    server: TestServer = await aiohttp_server(app)
    return server
