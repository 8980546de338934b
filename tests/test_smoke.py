"""End to end through a real local upstream: a credential is added, the path goes through."""

from __future__ import annotations

from typing import Any

from tests.builders import bearer, connection
from tests.plane import MakeProxy


async def test_bearer_reaches_upstream(echo_server: Any, make_proxy: MakeProxy) -> None:
    base = str(echo_server.make_url("/api"))
    proxy = await make_proxy(
        {"connections": [connection("echo", base, bearer("canary-token-7f3"))]}
    )
    response = await proxy.get("/echo/items", headers={"Authorization": "Bearer sdk-dummy"})
    assert response.status == 200
    seen = await response.json()
    assert seen["target"] == "/api/items"
    authorizations = [v for k, v in seen["headers"] if k.lower() == "authorization"]
    assert authorizations == ["Bearer canary-token-7f3"]
