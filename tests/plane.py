"""The data plane on a real loopback port for aiohttp's `TestClient`.

`PlaneServer` is an aiohttp `BaseTestServer` that starts a `DataPlane` on the project's own
HTTP/1.1 server, so `aiohttp_client(PlaneServer(plane))` gives tests the same client as any
aiohttp application, and `client.app` is the plane itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import BaseTestServer, TestClient
from yarl import URL

from proxy.cli.server import start_data_plane
from proxy.dataplane.plane import DataPlane
from proxy.http1.server import HttpServer

# The `make_proxy` fixture (conftest.py): a config tree in, a test client of its plane out.
MakeProxy = Callable[..., Awaitable[TestClient[Any, Any]]]
# The `make_api` fixture (tokens/conftest.py): one connection `api` (base URL, credential, the
# store its tokens are kept in, `limits`, the `TokenManager`'s options) in, a test client out.
MakeApi = Callable[..., Awaitable[TestClient[Any, Any]]]


class PlaneServer(BaseTestServer):
    def __init__(self, plane: DataPlane, *, grace: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = plane
        self.http: HttpServer | None = None
        self._grace = grace

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self.http is not None:
            return
        self.http, (host, port) = await start_data_plane(self.app, (self.host, self.port or 0))
        self.host, self.port = host, port
        self.scheme = self.scheme or "http"
        self._root = URL(f"{self.scheme}://{host}:{port}")

    async def _make_runner(self, **kwargs: Any) -> Any:
        raise NotImplementedError  # no aiohttp runner: the plane has its own server

    @property
    def started(self) -> bool:
        return self.http is not None

    async def close(self) -> None:
        if self.http is not None and not self._closed:
            self._closed = True
            try:
                await self.http.drain(self._grace)
            finally:
                await self.app.close()
