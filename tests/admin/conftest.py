"""Fixtures for the management API: both planes of one process, wired as `signing-proxy run`
wires them (`create_app` + `create_admin_app_for`), on a real echo upstream."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.admin import create_admin_app_for
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.store import Store
from proxy.store.memory import MemoryStore
from tests.admin.planes import ADMIN_TOKEN, MakePlanes, Planes, api_key_template, string_credential
from tests.plane import PlaneServer


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
