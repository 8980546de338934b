"""Fixtures for the management API: both planes of one process, wired as `signing-proxy run`
wires them (`create_app` + `create_admin_app_for`), on a real echo upstream."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from proxy.admin import create_admin_app, create_admin_app_for
from proxy.config.models import DEFAULT_ORGANISATION_ID
from proxy.connections.runtime import Runtime, build_runtime
from proxy.connections.templates import Templates
from proxy.dataplane.plane import create_app
from proxy.store import Store
from proxy.store.memory import MemoryStore
from tests.plane import PlaneServer

ADMIN_TOKEN = "canary-admin-token-9c41"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ORG = DEFAULT_ORGANISATION_ID
CONNECTIONS = f"/o/{ORG}/connections"


@dataclass
class Planes:
    """The data plane and the admin API of one process, with what they share."""

    proxy: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    store: Store
    templates: Templates
    runtime: Runtime


MakePlanes = Callable[..., Awaitable[Planes]]


def api_key_template(base_url: str, **extra: Any) -> dict[str, Any]:
    """A template whose connections sign with a header API key."""
    return {
        "id": "crm",
        "route": "/crm",
        "baseUrl": base_url,
        "authSchemeConfigs": [{"type": "api-key", "apiKey": {"name": "X-Api-Key", "in": "header"}}],
        **extra,
    }


def string_credential(value: str) -> dict[str, Any]:
    return {"credential": {"type": "string", "data": {"string": {"value": value}}}}


def create_body(
    name: str, *credentials: dict[str, Any], template: str = "crm", **extra: Any
) -> dict[str, Any]:
    """`EnvSystemConnectionCreate`."""
    return {
        "connectionTemplateId": template,
        "connection": {"name": name, "credentials": list(credentials)},
        **extra,
    }


@pytest.fixture
def make_planes(aiohttp_client: Any) -> MakePlanes:
    """Build both planes from a config tree; `admin.listen` is the port the admin test server
    really listens on, so the OAuth 2.0 redirect_uri leads back to it. The admin socket is bound
    (on a port the kernel picks) before the config names it and handed to the test server as is,
    so no other process can take the port in between."""

    async def make(
        tree: Mapping[str, Any],
        *,
        store: Store | None = None,
        env: Mapping[str, str] | None = None,
        admin: Mapping[str, Any] | None = None,
    ) -> Planes:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            settings = {"listen": f"127.0.0.1:{port}", "token": ADMIN_TOKEN, **(admin or {})}
            runtime = build_runtime({**tree, "admin": settings}, env or {})
            store = store if store is not None else MemoryStore()
            data_app = create_app(runtime, store=store)
            proxy: TestClient[Any, Any] = await aiohttp_client(PlaneServer(data_app))
            admin_app = create_admin_app_for(runtime, data_app)
            admin_client: TestClient[Any, Any] = await aiohttp_client(
                TestServer(admin_app, host="127.0.0.1", port=port, socket_factory=lambda *_: sock)
            )
        except BaseException:
            sock.close()  # not handed over (a bad config, say): the test must not leak it
            raise
        assert data_app.tokens is not None and data_app.tokens.store is store
        return Planes(proxy, admin_client, store, data_app.templates, runtime)

    return make


@pytest.fixture
async def crm(echo_server: TestServer, make_planes: MakePlanes) -> Planes:
    """One api-key template `crm` on the echo upstream, plus one file connection."""
    base = str(echo_server.make_url("/api"))
    return await make_planes(
        {
            "templates": [api_key_template(base)],
            "connections": [
                {
                    "name": "filed",
                    "baseUrl": base,
                    "credentials": [
                        {
                            "authSchemeConfig": {"type": "bearer"},
                            **string_credential("canary-file-bearer-77aa"),
                        }
                    ],
                }
            ],
        }
    )


def header(seen: Mapping[str, Any], name: str) -> list[str]:
    """Values of header `name` as the echo upstream received them."""
    return [v for k, v in seen["headers"] if k.lower() == name.lower()]


async def create(planes: Planes, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` to the connections endpoint; asserts 201 and returns the created connection."""
    response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def callback_later(
    planes: Planes, location: str, aiohttp_client: Any, seconds: float = 601
) -> ClientResponse:
    """The provider's redirect to the callback (`location`) followed `seconds` after the flow
    started: on an admin app over the same store whose clock is that much later."""
    later: TestClient[Any, Any] = await aiohttp_client(
        create_admin_app(
            planes.runtime,
            templates=planes.templates,
            store=planes.store,
            clock=lambda: time.time() + seconds,
        )
    )
    split = urlsplit(location)
    return await later.get(f"{split.path}?{split.query}")
