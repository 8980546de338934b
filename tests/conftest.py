"""Shared fixtures: a real local echo upstream and a proxy built from a config tree."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.cli.echo import create_echo_app
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from tests.accesslog import AccessLogFile
from tests.pg import PgServer, start_server
from tests.plane import MakeProxy, PlaneServer


@pytest.fixture
async def echo_server(aiohttp_server: Any) -> TestServer:
    """The bundled echo upstream: answers with the raw target, headers and a body hash."""
    server: TestServer = await aiohttp_server(create_echo_app())
    return server


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """A real PostgreSQL server for the whole session (`tests/pg.py`)."""
    yield from start_server()
