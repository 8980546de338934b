"""Fixtures of the token tests: the data plane with one token-bearing connection, and `oauth`,
the strict local authorization and resource servers (tests/tokens/oauth2.py)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.store import Store, open_store
from proxy.tokens.manager import TokenManager
from tests.builders import connection
from tests.plane import MakeApi, PlaneServer
from tests.tokens.oauth2 import oauth  # noqa: F401 (a fixture, for every token test)


@pytest.fixture
def make_api(aiohttp_client: Any) -> MakeApi:
    """The proxy with one connection `api` → `base_url` signing with `credential`, its tokens kept
    by a `TokenManager` (`manager`: its options) on `store` (a memory store when None)."""

    async def make(
        base_url: str,
        credential: dict[str, Any],
        store: Store | None = None,
        limits: dict[str, Any] | None = None,
        **manager: Any,
    ) -> TestClient[Any, Any]:
        tree: dict[str, Any] = {"connections": [connection("api", base_url, credential)]}
        if limits:
            tree["limits"] = limits
        runtime = build_runtime(tree, {})
        store = store if store is not None else open_store(None)
        tokens = TokenManager(store, **manager)
        client: TestClient[Any, Any] = await aiohttp_client(
            PlaneServer(create_app(runtime, tokens=tokens, store=store))
        )
        return client

    return make
