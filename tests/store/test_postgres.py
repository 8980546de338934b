"""What only the PostgreSQL store has, on a real server (`tests/pg.py`): encryption at rest as
on SQLite, a required key, migrations, key rotation, the write-failure behaviour with a database
that turns read-only (as after a fail-over to a standby), and push of connection changes.
Replicas as processes: `tests/store/test_replicas.py`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.messages import TokenSet
from proxy.store import StoredConnection, StoredToken, StoreError, StoreUnavailable, open_store
from proxy.store.crypto import new_key_text
from proxy.store.postgres import SCHEMA_VERSION, rotate_key
from proxy.tokens.manager import TokenManager, WriteRetry
from tests.builders import connection, oauth2_token
from tests.oauth_server import AuthServer, Client, create_auth_app, create_resource_app
from tests.pg import PgServer
from tests.plane import PlaneServer
from tests.store.rotation import check_rotation

CANARY = "canary-pg-refresh-5d21a"
SECRET = "canary-pg-client-secret"


def dump(server: PgServer, url: str) -> str:
    database = url.rsplit("/", 1)[1]
    done = server.run(
        str(server.bin_dir / "pg_dump"), "-h", "127.0.0.1", "-p", str(server.port),
        "-U", "postgres", database,
    )  # fmt: skip
    return done.stdout


async def test_secrets_are_encrypted_at_rest(postgres: PgServer) -> None:
    url, key = postgres.new_database(), new_key_text()
    store = open_store(None, key, url=url)
    await store.put_token("c1", StoredToken(TokenSet(CANARY, refresh_token=CANARY + "-r")))
    document = {"credentials": [{"value": CANARY + "-conn"}]}
    await store.put_connection(StoredConnection("id1", "tpl", "n", None, document))
    await store.close()
    everything = dump(postgres, url)
    assert "tokens" in everything and CANARY not in everything
    reopened = open_store(None, key, url=url)
    got = await reopened.get_token("c1")
    assert got is not None and got.token is not None and got.token.access_token == CANARY
    await reopened.close()


async def test_key_required_and_wrong_key_refused(postgres: PgServer) -> None:
    url = postgres.new_database()
    with pytest.raises(StoreError, match="store.key is required"):
        open_store(None, None, url=url)
    key_a, key_b = new_key_text(), new_key_text()
    await open_store(None, key_a, url=url).close()
    with pytest.raises(StoreError, match="does not match") as caught:
        open_store(None, key_b, url=url)
    assert key_a not in str(caught.value) and key_b not in str(caught.value)


async def test_unreachable_server_is_a_clear_error_without_the_password(
    refused_port: int,
) -> None:
    url = f"postgresql://u:canary-pw@127.0.0.1:{refused_port}/db"
    with pytest.raises(StoreError, match="cannot connect") as caught:
        open_store(None, new_key_text(), url=url)
    assert "canary-pw" not in str(caught.value)


async def test_schema_version_recorded_and_newer_refused(postgres: PgServer) -> None:
    url, key = postgres.new_database(), new_key_text()
    await open_store(None, key, url=url).close()
    await open_store(None, key, url=url).close()  # a second start migrates nothing
    database = url.rsplit("/", 1)[1]
    assert postgres.sql("SELECT version FROM schema_version", database) == str(SCHEMA_VERSION)
    postgres.sql(f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}", database)
    with pytest.raises(StoreError, match="newer"):
        open_store(None, key, url=url)


async def test_rotate_key(postgres: PgServer) -> None:
    url = postgres.new_database()
    await check_rotation(
        lambda key: open_store(None, key, url=url),
        lambda old, new: rotate_key(url, old, new),
        CANARY,
    )


def read_only(postgres: PgServer, url: str, on: bool) -> None:
    """The database refuses writes (as a standby does after a fail-over), for new sessions and,
    by ending them, for the pool's current ones."""
    database = url.rsplit("/", 1)[1]
    value = "on" if on else "off"
    postgres.sql(f"ALTER DATABASE {database} SET default_transaction_read_only = {value}")
    postgres.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )


async def test_write_failure_keeps_the_issued_token(
    postgres: PgServer, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    """The store turns read-only while the provider answers a refresh: the new token is used,
    kept, its write retried; the store takes it once writable again. Meanwhile a refresh that
    needs the lease is 503 `store_unavailable`."""
    server = AuthServer(clients={"cid": Client(SECRET)})
    auth = await aiohttp_server(create_auth_app(server))
    resource = await aiohttp_server(create_resource_app(server))
    url = postgres.new_database()
    store = open_store(None, new_key_text(), url=url)
    seeds = [server.issue("cid"), server.issue("cid")]
    token_url = str(auth.make_url("/token"))
    tree = {
        "connections": [
            connection(name, str(resource.make_url("")), oauth2_token(token_url, "cid", SECRET, s))
            for name, s in zip(("api", "other"), seeds, strict=True)
        ]
    }
    runtime = build_runtime(tree, {})
    tokens = TokenManager(store, write_retry=WriteRetry(first=0.05, cap=0.2))
    client = await aiohttp_client(PlaneServer(create_app(runtime, tokens=tokens, store=store)))
    assert (await client.get("/api/warm")).status == 200
    server.expire_access_tokens()
    server.delay = 0.5
    during = asyncio.create_task(client.get("/api/during"))
    while server.hits == 0:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(read_only, postgres, url, True)
    response = await during
    assert response.status == 200
    server.delay = 0
    newest = server.current_refresh_token(seeds[0]["refresh_token"])
    assert server.refresh[newest].confirmed
    problem = tokens.store_problem()
    assert problem is not None and "read-only" in problem
    server.expire_access_tokens()
    assert (await client.get("/api/again")).status == 200  # from the token in memory
    refused = await client.get("/other/x")
    assert refused.status == 503 and (await refused.json())["code"] == "store_unavailable"
    with pytest.raises(StoreUnavailable):
        await store.check_writable()
    await asyncio.to_thread(read_only, postgres, url, False)
    deadline = time.monotonic() + 10
    while tokens.store_problem() is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert tokens.store_problem() is None
    cid = runtime.connections[0].schemes[0].credential_id
    stored = await store.get_token(cid)
    newest = server.current_refresh_token(seeds[0]["refresh_token"])
    assert stored is not None and stored.token is not None
    assert stored.token.refresh_token == newest
    presented = [r["form"].get("refresh_token") for r in server.token_requests]
    assert len(presented) == len(set(presented))  # no refresh token sent twice


async def test_connection_changes_are_pushed(postgres: PgServer) -> None:
    url, key = postgres.new_database(), new_key_text()
    writer, watcher = open_store(None, key, url=url), open_store(None, key, url=url)
    seen = asyncio.Event()
    assert await watcher.watch_connections(seen.set)
    started = time.monotonic()
    await writer.put_connection(StoredConnection("id1", "tpl", "n", None, {"k": "v"}))
    await asyncio.wait_for(seen.wait(), 5)
    assert time.monotonic() - started < 1.0
    # The listening connection dies (a server restart, a network cut): it comes back, says
    # "check now" for what it may have missed, and pushes again.
    database = url.rsplit("/", 1)[1]
    seen.clear()
    ended = await asyncio.to_thread(
        postgres.sql,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND query LIKE 'LISTEN%'",
    )
    assert ended == "1"
    await asyncio.wait_for(seen.wait(), 10)
    seen.clear()
    assert await writer.delete_connection("id1")
    await asyncio.wait_for(seen.wait(), 5)
    await writer.close()
    await watcher.close()
