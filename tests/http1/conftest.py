"""Fixtures for the HTTP/1.1 upstream hop: a proxy wired to `Http1Upstream` explicitly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.http1 import Http1Upstream
from tests.builders import bearer, connection
from tests.http1.h1proxy import H1Proxy, MakeH1Proxy
from tests.plane import PlaneServer


@pytest.fixture
def make_h1_proxy(aiohttp_client: Any) -> MakeH1Proxy:
    """A proxy with one bearer connection `/up` → `base`, on a fresh `Http1Upstream`."""

    async def make(
        base: str,
        *,
        read_timeout: float = 5.0,
        max_head_bytes: int = 64 * 1024,
        extra: Mapping[str, Any] | None = None,
    ) -> H1Proxy:
        tree = {"connections": [connection("up", base, bearer("canary-h1-token"))], **(extra or {})}
        runtime = build_runtime(tree, {})
        upstream = Http1Upstream(
            connect_timeout=2.0, read_timeout=read_timeout, max_head_bytes=max_head_bytes
        )
        client: TestClient[Any, Any] = await aiohttp_client(
            PlaneServer(create_app(runtime, upstream=upstream))
        )
        return client, upstream

    return make
