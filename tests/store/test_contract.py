"""The `Store` contract, run unchanged against every implementation: memory, SQLite on
`tmp_path`, PostgreSQL (a real server, `tests/pg.py`, a fresh database per test)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from proxy.messages import TokenSet
from proxy.store import (
    FlowState,
    StaleToken,
    Store,
    StoreConflict,
    StoredConnection,
    StoredToken,
    StoreError,
    open_store,
)
from proxy.store.crypto import new_key_text
from tests.pg import PgServer

CANARY_ACCESS = "canary-access-7f3a91"
CANARY_REFRESH = "canary-refresh-52be08"


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgresql":
        server: PgServer = request.getfixturevalue("postgres")
        opened = open_store(None, new_key_text(), url=server.new_database())
    else:
        opened = open_store(None if request.param == "memory" else str(tmp_path / "state.db"))
    yield opened
    await opened.close()


def token(access: str = CANARY_ACCESS, refresh: str | None = CANARY_REFRESH) -> TokenSet:
    return TokenSet(access, "Bearer", refresh, expires_at=1_900_000_000.5, scope="read write")


def stored_connection(
    id_: str, name: str, external_id: str | None = None, template: str = "tpl"
) -> StoredConnection:
    document = {"name": name, "credentials": [{"secret": "canary-conn-secret"}]}
    return StoredConnection(id_, template, name, external_id, document)


async def test_token_round_trip(store: Store) -> None:
    assert await store.get_token("c1") is None
    record = StoredToken(token(), seed_fingerprint="fp", client_auth="form")
    await store.put_token("c1", record)
    got = await store.get_token("c1")
    assert got is not None
    assert got.token == record.token
    assert (got.seed_fingerprint, got.needs_reauthorization, got.client_auth) == (
        "fp",
        False,
        "form",
    )
    assert got.updated_at > 0


async def test_token_replace_flag_and_delete(store: Store) -> None:
    await store.put_token("c1", StoredToken(token()))
    await store.put_token("c1", StoredToken(None, needs_reauthorization=True))
    got = await store.get_token("c1")
    assert got is not None and got.token is None and got.needs_reauthorization
    await store.delete_token("c1")
    assert await store.get_token("c1") is None
    await store.delete_token("c1")  # deleting what is gone is fine


async def test_token_without_refresh_or_expiry(store: Store) -> None:
    bare = TokenSet("a", "MAC")
    await store.put_token("c2", StoredToken(bare))
    got = await store.get_token("c2")
    assert got is not None and got.token == bare


async def test_repr_holds_no_secret(store: Store) -> None:
    record = StoredToken(token())
    await store.put_token("c1", record)
    got = await store.get_token("c1")
    flow = FlowState("canary-state", "canary-verifier", "tpl", "org", "http://cb", 1e12)
    for shown in (
        repr(store),
        repr(got),
        repr(record),
        repr(flow),
        repr(stored_connection("x", "n")),
    ):
        for canary in (CANARY_ACCESS, CANARY_REFRESH, "canary-state", "canary-verifier"):
            assert canary not in shown
        assert "canary-conn-secret" not in shown


async def test_fingerprint_is_keyed_and_stable(store: Store) -> None:
    first = store.fingerprint(CANARY_REFRESH)
    assert first == store.fingerprint(CANARY_REFRESH)
    assert first != store.fingerprint(CANARY_REFRESH + "x")
    assert CANARY_REFRESH not in first
    other = open_store(None)
    assert other.fingerprint(CANARY_REFRESH) != first  # a different key gives another hash


async def test_refresh_lease(store: Store) -> None:
    assert await store.acquire_refresh_lease("c1", "owner-a", 30)
    assert not await store.acquire_refresh_lease("c1", "owner-b", 30)
    assert await store.acquire_refresh_lease("c2", "owner-b", 30)  # per credential
    await store.release_refresh_lease("c1", "owner-b")  # not the holder: no effect
    assert not await store.acquire_refresh_lease("c1", "owner-b", 30)
    await store.release_refresh_lease("c1", "owner-a")
    assert await store.acquire_refresh_lease("c1", "owner-b", 30)


async def test_concurrent_claims_of_a_free_lease_have_one_winner(store: Store) -> None:
    """Twenty claims at once (the PostgreSQL pool runs several in parallel), no lease row yet:
    exactly one holder."""
    claims = [store.acquire_refresh_lease("c9", f"owner-{i}", 30) for i in range(20)]
    assert (await asyncio.gather(*claims)).count(True) == 1
    await store.release_refresh_lease("c9", "owner-x")  # not the holder: still held
    assert (await asyncio.gather(*claims_again(store))).count(True) == 0


def claims_again(store: Store) -> list[Coroutine[Any, Any, bool]]:
    return [store.acquire_refresh_lease("c9", f"other-{i}", 30) for i in range(5)]


async def test_expired_lease_is_taken_over(store: Store) -> None:
    assert await store.acquire_refresh_lease("c1", "owner-a", 0.01)
    time.sleep(0.02)
    assert await store.acquire_refresh_lease("c1", "owner-b", 30)


async def test_connection_crud(store: Store) -> None:
    first = stored_connection("id1", "alpha", "ext-1")
    await store.put_connection(first)
    got = await store.get_connection("id1")
    assert got is not None and got.document == first.document and got.name == "alpha"
    assert got.created_at > 0 and got.updated_at >= got.created_at
    await store.put_connection(stored_connection("id2", "beta"))
    assert [c.id for c in await store.list_connections()] == ["id1", "id2"]
    renamed = stored_connection("id1", "alpha2", "ext-1")
    await store.put_connection(renamed)  # replace by id keeps its creation time
    again = await store.get_connection("id1")
    assert again is not None and again.name == "alpha2" and again.created_at == got.created_at
    assert await store.delete_connection("id1")
    assert not await store.delete_connection("id1")
    assert await store.get_connection("id1") is None


async def test_connection_conflicts(store: Store) -> None:
    await store.put_connection(stored_connection("id1", "alpha", "ext-1"))
    with pytest.raises(StoreConflict) as name_clash:
        await store.put_connection(stored_connection("id2", "alpha"))
    assert name_clash.value.field == "name"
    with pytest.raises(StoreConflict) as ext_clash:
        await store.put_connection(stored_connection("id2", "beta", "ext-1"))
    assert ext_clash.value.field == "externalId"
    # No externalId on either side is no clash; nothing was written by the failed puts.
    await store.put_connection(stored_connection("id2", "beta"))
    await store.put_connection(stored_connection("id3", "gamma"))
    assert [c.id for c in await store.list_connections()] == ["id1", "id2", "id3"]


async def test_flow_state_is_single_use(store: Store) -> None:
    flow = FlowState(
        "state-1", "verifier-1", "tpl", "org", "http://cb", time.time() + 600, "n", "e", {"s": 1}
    )
    await store.put_flow(flow)
    assert await store.take_flow("unknown") is None
    taken = await store.take_flow("state-1")
    assert taken is not None
    assert (taken.code_verifier, taken.template_id, taken.connection_name) == (
        "verifier-1",
        "tpl",
        "n",
    )
    assert dict(taken.extra) == {"s": 1} and taken.external_id == "e"
    assert await store.take_flow("state-1") is None


async def test_expired_flow_state_is_refused(store: Store) -> None:
    await store.put_flow(FlowState("state-2", "v", "tpl", "org", "http://cb", 1000.0))
    assert await store.take_flow("state-2", now=1000.0) is None
    await store.put_flow(FlowState("state-3", "v", "tpl", "org", "http://cb", 1000.0))
    assert await store.take_flow("state-3", now=999.0) is not None


async def test_close_is_idempotent_and_a_closed_store_says_so(store: Store) -> None:
    """Shared stores have several owners saying goodbye; a late user gets a clear StoreError
    (not the executor's "cannot schedule new futures after shutdown")."""
    await store.put_token("c1", StoredToken(token()))
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_token("c1")
    with pytest.raises(StoreError, match="closed"):
        await store.put_connection(stored_connection("k1", "alpha"))


async def test_connections_revision_moves_with_every_connection_write(store: Store) -> None:
    """The change signal other workers poll (`proxy/dataplane/sync.py`): every put or delete of a
    connection moves it; a refused put, a delete of nothing and token writes do not."""
    start = await store.connections_revision()
    await store.put_connection(stored_connection("r1", "alpha"))
    created = await store.connections_revision()
    await store.put_connection(stored_connection("r1", "alpha-renamed"))
    updated = await store.connections_revision()
    assert start < created < updated
    await store.put_token("c1", StoredToken(token()))
    with pytest.raises(StoreConflict):
        await store.put_connection(stored_connection("r2", "alpha-renamed"))
    assert await store.connections_revision() == updated
    assert await store.delete_connection("r1")
    deleted = await store.connections_revision()
    assert not await store.delete_connection("r1")
    assert deleted > updated and await store.connections_revision() == deleted


async def test_token_writes_are_fenced_by_version(store: Store) -> None:
    """A writer passes the version its token descends from; one that fell behind (a replica
    that stalled past its lease) is refused and nothing changes."""
    first = await store.put_token("c1", StoredToken(token("a1", "r1")), expected_version=0)
    with pytest.raises(StaleToken):
        await store.put_token("c1", StoredToken(token("x", "x")), expected_version=0)
    second = await store.put_token("c1", StoredToken(token("a2", "r2")), expected_version=first)
    assert second > first
    with pytest.raises(StaleToken):  # the late writer that also started from `first`
        await store.put_token("c1", StoredToken(token("a-late", "r-late")), expected_version=first)
    got = await store.get_token("c1")
    assert got is not None and got.token is not None and got.version == second
    assert got.token.refresh_token == "r2"  # no regression
    # Unfenced (a person's new seed) always writes and moves the version on.
    third = await store.put_token("c1", StoredToken(token("seed", "seed-r")))
    assert third > second
    with pytest.raises(StaleToken):
        await store.put_token("c2", StoredToken(token()), expected_version=5)  # no row: version 0
    assert await store.get_token("c2") is None


async def test_check_writable(store: Store) -> None:
    await store.check_writable()
