"""Shared fixtures: a real local echo upstream, a proxy built from a config tree, both planes of
one process (`make_planes`: the data plane and the admin API, wired as `signing-proxy run` wires
them), the folder request bodies spill to, PostgreSQL."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp.test_utils import TestClient, TestServer

from proxy.admin import create_admin_app_for
from proxy.cli.echo import create_echo_app
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.store import Store
from proxy.store.memory import MemoryStore
from tests.accesslog import AccessLogFile
from tests.admin.planes import ADMIN_TOKEN, MakePlanes, Planes
from tests.pg import PgServer, start_server
from tests.plane import MakeProxy, PlaneServer


@pytest.fixture
async def echo_server(aiohttp_server: Any) -> TestServer:
    """The bundled echo upstream: answers with the raw target, headers and a body hash."""
    server: TestServer = await aiohttp_server(create_echo_app())
    return server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A test certificate authority (trustme), one per test module."""
    return trustme.CA()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port where every connect is refused for the whole test: bound here (without
    SO_REUSEADDR) and never listened on, so no other process can listen there meanwhile, as one
    could on a port that was merely free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder standing for the system's temporary directory for the test: where the
    proxy spills request bodies (through `tempfile`)."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def access_log(tmp_path: Path) -> Iterator[AccessLogFile]:
    """The access log of the planes `make_proxy` builds: a real writer on a file."""
    log = AccessLogFile(tmp_path / "access.log")
    yield log
    log.close()


@pytest.fixture
def make_proxy(access_log: AccessLogFile, aiohttp_client: Any) -> MakeProxy:
    """Build the data-plane app from a config tree (as parsed YAML) and return a test client;
    its access lines go to `access_log`."""

    async def make(
        tree: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> TestClient[Any, Any]:
        runtime = build_runtime(dict(tree), env or {})
        plane = create_app(runtime, access_log=access_log.writer)
        client: TestClient[Any, Any] = await aiohttp_client(PlaneServer(plane))
        return client

    return make


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """A real PostgreSQL server for the whole session (`tests/pg.py`)."""
    yield from start_server()
