"""Connections changed through the management API reach every process on the same store
(`proxy/dataplane/sync.py`, `run --workers N`).

Process A serves the admin API and a data plane (`make_planes`); process B is another worker's
data plane on its own handle to the same SQLite file. B never hears from A: it learns of a new
id when a request names it (at once), and of updates and deletes by polling the store's
connection revision. The last test runs the real `python -m proxy run --workers 2`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.connections.templates import Templates
from proxy.dataplane.plane import create_app
from proxy.dataplane.sync import MIN_CHECK_GAP
from proxy.store.sqlite import SqliteStore
from tests import rawhttp
from tests.admin.oauth2_connect import CLIENT_ID, CLIENT_SECRET, Drive, oauth_template
from tests.admin.planes import (
    AUTH,
    CONNECTIONS,
    MakePlanes,
    Planes,
    api_key_template,
    create,
    create_body,
    header,
    string_credential,
)
from tests.cli.procs import START_TIMEOUT, start_workers, stop_workers
from tests.oauth_server import AuthServer, Client, create_auth_app
from tests.plane import PlaneServer
from tests.proxyproc import listening_ports

INTERVAL = 0.2  # B's background reload, for the tests that wait for it
NEVER = 3600.0  # no background reload within a test: only the unknown-id check can help
DEADLINE = 5.0


class CountingStore(SqliteStore):
    """The real SQLite store, counting how often the revision is read."""

    revision_reads = 0

    async def connections_revision(self) -> int:
        self.revision_reads += 1
        return await super().connections_revision()


@dataclass
class Pair:
    a: Planes  # admin API + data plane
    b: TestClient[Any, Any]  # another worker's data plane
    b_templates: Templates
    b_store: CountingStore


MakePair = Callable[..., Awaitable[Pair]]


@pytest.fixture
def make_pair(make_planes: MakePlanes, aiohttp_client: Any, tmp_path: Path) -> MakePair:
    async def make(tree: dict[str, Any], *, interval: float, **planes: Any) -> Pair:
        path = tmp_path / "state.db"
        a = await make_planes(tree, store=SqliteStore.open(path), **planes)
        b_store = CountingStore.open(path)
        assert isinstance(b_store, CountingStore)
        b_app = create_app(a.runtime, store=b_store, sync_interval=interval)
        b: TestClient[Any, Any] = await aiohttp_client(PlaneServer(b_app))
        return Pair(a, b, b_app.templates, b_store)

    return make


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> float:
    """Poll `condition` every 20 ms, for `DEADLINE` at most; the seconds it took to hold."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < DEADLINE, f"not {what} within {DEADLINE} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_new_connection_serves_at_once_in_another_process(
    make_pair: MakePair, echo_server: TestServer
) -> None:
    pair = await make_pair(
        {"templates": [api_key_template(str(echo_server.make_url("/api")))]}, interval=NEVER
    )
    created = await create(
        pair.a, create_body("acme", string_credential("canary-sync-key-1"), externalId="u-1")
    )
    for pick in (created["id"], "u-1"):
        response = await pair.b.get("/crm/items", headers={"X-Connection-Id": pick})
        assert response.status == 200, await response.text()
        assert header(await response.json(), "X-Api-Key") == ["canary-sync-key-1"]
    unknown = await pair.b.get("/crm/items", headers={"X-Connection-Id": "nobody"})
    assert unknown.status == 404
    assert (await unknown.json())["code"] == "connection_not_found"


async def test_background_reload_adds_then_removes(
    make_pair: MakePair, echo_server: TestServer
) -> None:
    pair = await make_pair(
        {"templates": [api_key_template(str(echo_server.make_url("/api")))]}, interval=INTERVAL
    )
    created = await create(pair.a, create_body("acme", string_credential("canary-sync-key-2")))

    async def served() -> bool:
        return pair.b_templates.connection(created["id"]) is not None

    await until(served, "added")  # no request named it: the background reload did
    response = await pair.b.get("/crm/x", headers={"X-Connection-Id": created["id"]})
    assert header(await response.json(), "X-Api-Key") == ["canary-sync-key-2"]

    deleted = await pair.a.admin.delete(f"{CONNECTIONS}/{created['id']}", headers=AUTH)
    assert deleted.status == 204

    async def withdrawn() -> bool:
        return not await served()

    took = await until(withdrawn, "removed")
    assert took < INTERVAL + 1.0
    gone = await pair.b.get("/crm/x", headers={"X-Connection-Id": created["id"]})
    assert gone.status == 404
    assert (await gone.json())["code"] == "connection_not_found"


async def test_unknown_ids_do_not_hammer_the_store(
    make_pair: MakePair, echo_server: TestServer
) -> None:
    pair = await make_pair(
        {"templates": [api_key_template(str(echo_server.make_url("/api")))]}, interval=NEVER
    )
    pair.b_store.revision_reads = 0
    started = time.monotonic()
    burst = await asyncio.gather(
        *(pair.b.get("/crm/x", headers={"X-Connection-Id": f"nobody-{i}"}) for i in range(40))
    )
    for i in range(5):
        burst.append(await pair.b.get("/crm/x", headers={"X-Connection-Id": f"later-{i}"}))
    elapsed = time.monotonic() - started
    assert [r.status for r in burst] == [404] * 45
    assert 1 <= pair.b_store.revision_reads <= elapsed / MIN_CHECK_GAP + 2


@pytest.fixture
async def drive_pair(aiohttp_server: Any, echo_server: TestServer, make_pair: MakePair) -> Any:
    """The OAuth 2.0 connect flow on A; the template's API is the echo upstream, so the token
    each process sends is visible."""
    server = AuthServer(access_ttl=3600)
    server.clients[CLIENT_ID] = Client(secret=CLIENT_SECRET)
    auth: TestServer = await aiohttp_server(create_auth_app(server))
    template = oauth_template(str(auth.make_url("")).rstrip("/"), str(echo_server.make_url("")))
    pair = await make_pair(
        {"templates": [template]}, interval=INTERVAL, env={"SECRET": CLIENT_SECRET}
    )
    return Drive(server, pair.a), pair


async def access_token(pair: Pair, credential_id: str) -> str:
    stored = await pair.b_store.get_token(credential_id)
    assert stored is not None and stored.token is not None
    return stored.token.access_token


async def bearer_sent_by_b(pair: Pair, pick: str) -> list[str]:
    response = await pair.b.get("/gdrive/files", headers={"X-Connection-Id": pick})
    assert response.status == 200, await response.text()
    return header(await response.json(), "Authorization")


async def test_reauthorisation_and_delete_reach_the_other_process(
    drive_pair: tuple[Drive, Pair],
) -> None:
    drive, pair = drive_pair
    first = await drive.connect(externalId="user-1")
    first_token = await access_token(pair, first["id"])
    assert await bearer_sent_by_b(pair, "user-1") == [f"Bearer {first_token}"]

    second = await drive.connect(externalId="user-1")  # the same connection, a new credential
    assert second["connectionId"] == first["connectionId"]
    second_token = await access_token(pair, second["id"])
    assert second_token != first_token and second_token in drive.server.access

    async def uses_second() -> bool:
        return await bearer_sent_by_b(pair, "user-1") == [f"Bearer {second_token}"]

    await until(uses_second, "updated")

    # A writes the updated connection first and forgets the old credential's token once it
    # serves the update (`save_connection`), so B may use the new token a moment before the
    # old one is gone from the store.
    async def first_token_gone() -> bool:
        return await pair.b_store.get_token(first["id"]) is None

    await until(first_token_gone, "old token deleted")

    deleted = await pair.a.admin.delete(f"{CONNECTIONS}/{first['connectionId']}", headers=AUTH)
    assert deleted.status == 204

    async def refused() -> bool:
        response = await pair.b.get("/gdrive/files", headers={"X-Connection-Id": "user-1"})
        return response.status == 404

    await until(refused, "deleted")

    # A removes the connection's row first and its tokens right after (the row is what stops
    # every process serving it), so B may see the 404 a moment before the tokens are gone.
    async def token_gone() -> bool:
        return await pair.b_store.get_token(second["id"]) is None

    await until(token_gone, "tokens deleted")
    assert drive.server.grants["refresh_token"] == 0  # B never needed a token of its own


ACCESS = re.compile(r"signing_proxy\.access pid=(\d+) GET /crm/w\d+ \S+ status=(\d+)")
REQUESTS = 20


async def test_workers_serve_created_and_stop_serving_deleted_connections(
    tmp_path: Path,
) -> None:
    async with rawhttp.raw_upstream() as upstream:
        tree = {
            "templates": [api_key_template(upstream.base)],
            "admin": {"listen": "127.0.0.1:0"},  # worker 0 binds it: its log says where
        }
        proc, port = await start_workers(tmp_path, tree, workers=2)
        head = b""  # the start-up lines read here, put back in front of the log at the end
        try:
            assert proc.stderr is not None
            async with asyncio.timeout(START_TIMEOUT):
                while not (others := set(listening_ports(head)) - {port}):
                    head += await proc.stderr.readline()
            admin = f"http://127.0.0.1:{others.pop()}"
            async with aiohttp.ClientSession() as session:
                for _ in range(100):  # the admin listener of worker 0 may start a bit later
                    try:
                        async with session.get(admin + "/healthz") as health:
                            if health.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
                body = create_body("acme", string_credential("canary-workers-key"))
                async with session.post(admin + CONNECTIONS, json=body) as response:
                    assert response.status == 201, await response.text()
                    connection_id = (await response.json())["id"]

                async def burst() -> list[int]:
                    pick = f"X-Connection-Id: {connection_id}\r\n"
                    replies = await asyncio.gather(
                        *(
                            rawhttp.round_trip(port, rawhttp.get(f"/crm/w{i}", headers=pick))
                            for i in range(REQUESTS)
                        )
                    )
                    return [r.status for r in replies]

                assert await burst() == [200] * REQUESTS
                keys = {
                    v for r in upstream.received for k, v in r.request.headers if k == "X-Api-Key"
                }
                assert keys == {"canary-workers-key"}
                async with session.delete(f"{admin}{CONNECTIONS}/{connection_id}") as response:
                    assert response.status == 204
                await asyncio.sleep(2.0)  # the other worker's reload runs every second
                assert await burst() == [404] * REQUESTS
            code, log = await stop_workers(proc)
            log = head.decode() + log
        finally:
            if proc.returncode is None:
                # SIGTERM, which the supervisor passes on: a SIGKILL would orphan the workers.
                await stop_workers(proc)
    assert code == 0, log
    served = {(pid, status) for pid, status in ACCESS.findall(log)}
    # Both workers served the connection, and both refused it once deleted.
    assert {pid for pid, status in served if status == "200"} == {
        pid for pid, status in served if status == "404"
    }
    assert len({pid for pid, _ in served}) == 2, log
    assert "canary-workers-key" not in log
