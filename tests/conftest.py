"""Shared fixtures: a real local echo upstream and a proxy built from a config tree."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.cli.echo import create_echo_app
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from tests.accesslog import AccessLogFile
from tests.pg import PgServer, start_server
from tests.plane import PlaneServer

MakeProxy = Callable[..., Awaitable[TestClient[Any, Any]]]
T = TypeVar("T")


@pytest.fixture
async def echo_server(aiohttp_server: Any) -> TestServer:
    """The bundled echo upstream: answers with the raw target, headers and a body hash."""
    server: TestServer = await aiohttp_server(create_echo_app())
    return server


async def wind_down_loop() -> None:
    """End a test's own background event loop as `asyncio.run` does, run on that loop last:
    leftover tasks are cancelled and awaited, and the closes they scheduled (a transport's
    connection_lost closes its socket) run before the loop closes. Otherwise the garbage
    collector finds the sockets open later and its ResourceWarning fails an unrelated test."""
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(3):
        await asyncio.sleep(0)
    await asyncio.get_running_loop().shutdown_asyncgens()


class RunIn(Protocol):
    """Runs a coroutine on a `background_loop()` from the test's thread and returns its result."""

    def __call__(self, coro: Coroutine[Any, Any, T]) -> T: ...


@contextmanager
def background_loop() -> Iterator[tuple[RunIn, AsyncExitStack]]:
    """An event loop in a thread of its own, for servers a synchronous test talks to (Hypothesis,
    schemathesis, blocking clients). `run(coro)` runs a coroutine there (at most 30 s); `exits`
    collects the async clean-ups, which run there on exit, last in first out, before the loop
    winds down (`wind_down_loop`) and closes."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    exits = AsyncExitStack()

    async def finish() -> None:
        await exits.aclose()
        await wind_down_loop()

    try:
        yield run, exits
    finally:
        try:
            run(finish())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()


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


def hmac_sha256(key: str, *inputs: str) -> dict[str, Any]:
    """An `hmac` credential: SHA-256 over `inputs` (url, body), hex, in header `X-Sig`."""
    return {
        "authSchemeConfig": {
            "type": "hmac",
            "hmac": {
                "name": "X-Sig",
                "in": "header",
                "algorithm": "sha256",
                "digestInputs": list(inputs),
                "encoding": "hex",
            },
        },
        "credential": {"type": "string", "data": {"string": {"value": key}}},
    }


def oauth2_token(
    token_url: str,
    client_id: str,
    client_secret: str,
    token: Mapping[str, str],
    expires_at: str | None = None,
) -> dict[str, Any]:
    """An `oauth2` authorizationCode credential seeded with `token` (an RFC 6749 §5.1 answer)."""
    value = {"accessToken": token["access_token"], "refreshToken": token["refresh_token"]}
    if expires_at is not None:
        value["expiresAt"] = expires_at
    grant = {
        "type": "authorizationCode",
        "authorizationCode": {"clientId": client_id, "clientSecret": client_secret},
    }
    return {
        "authSchemeConfig": {"type": "oauth2", "oauth2": {"tokenUrl": token_url, "grant": grant}},
        "credential": {"type": "oauth2-token", "data": {"oauth2Token": value}},
    }


def free_port() -> int:
    """A loopback port that was free a moment ago, for a server that must be told its port before
    it starts (a config file names it) and so cannot listen on port 0 and report what it got.

    Picked at random below the kernel's ephemeral range (`ip_local_port_range`), from which every
    port-0 bind and every outgoing connection on the machine draws: none of those can take it in
    the moment before the server binds it, only another test's pick among thousands."""
    low = ephemeral_low()
    for _ in range(100):
        port = _random.randrange(low - PICK_SPAN, low) if low - PICK_SPAN >= 1024 else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or in TIME_WAIT): another one
            found: int = sock.getsockname()[1]
            return found
    raise AssertionError("no free port below the ephemeral range")


PICK_SPAN = 12000
_random = random.SystemRandom()


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; 49152, IANA's, elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port where every connect is refused for the whole test: bound here (without
    SO_REUSEADDR) and never listened on, so no other process can listen there meanwhile, as one
    could on a port that was merely free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def basic(username: str, password: str) -> dict[str, Any]:
    return {
        "authSchemeConfig": {"type": "basic-auth"},
        "credential": {
            "type": "basic-auth",
            "data": {"basicAuth": {"username": username, "password": password}},
        },
    }


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
