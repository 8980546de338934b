"""Shared fixtures: a real local echo upstream and a proxy built from a config tree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.config.load import build_runtime
from proxy.echo import create_echo_app

MakeProxy = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def echo_server(aiohttp_server: Any) -> TestServer:
    """The bundled echo upstream: answers with the raw target, headers and a body hash."""
    server: TestServer = await aiohttp_server(create_echo_app())
    return server


def connection(
    name: str, base_url: str, *credentials: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A connection entry of proxy.yaml as a dict."""
    return {"name": name, "baseUrl": base_url, "credentials": list(credentials), **extra}


def bearer(token: str) -> dict[str, Any]:
    return {
        "authSchemeConfig": {"type": "bearer"},
        "credential": {"type": "string", "data": {"string": {"value": token}}},
    }


def api_key(name: str, where: str, value: str) -> dict[str, Any]:
    return {
        "authSchemeConfig": {"type": "api-key", "apiKey": {"name": name, "in": where}},
        "credential": {"type": "string", "data": {"string": {"value": value}}},
    }


def basic(username: str, password: str) -> dict[str, Any]:
    return {
        "authSchemeConfig": {"type": "basic-auth"},
        "credential": {
            "type": "basic-auth",
            "data": {"basicAuth": {"username": username, "password": password}},
        },
    }


@pytest.fixture
def make_proxy(aiohttp_client: Any) -> MakeProxy:
    """Build the data-plane app from a config tree (as parsed YAML) and return a test client."""

    async def make(
        tree: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> TestClient[Any, Any]:
        runtime = build_runtime(dict(tree), env or {})
        client: TestClient[Any, Any] = await aiohttp_client(create_app(runtime))
        return client

    return make
