"""`RefreshLease` (proxy/tokens/lease.py): single flight across processes, two lease holders
standing for two processes on one store (SQLite: the contract the other stores share)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.store import Store, open_store
from proxy.tokens.lease import LeaseBusy, RefreshLease


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(str(tmp_path / "leases.db"))
    yield opened
    await opened.close()


async def never() -> bool:
    return False


async def test_the_second_holder_waits_and_takes_the_work_done_instead(store: Store) -> None:
    first, second = RefreshLease(store, ttl=5.0), RefreshLease(store, ttl=5.0)
    assert first.owner != second.owner
    done = asyncio.Event()
    asked = 0

    async def settled() -> bool:
        nonlocal asked
        asked += 1
        return done.is_set()

    assert await first.take("c1", wait=1.0, settled=never)
    waiter = asyncio.create_task(second.take("c1", wait=5.0, settled=settled))
    await asyncio.sleep(0.2)
    assert not waiter.done()  # polling: the lease is held and the work not done yet
    done.set()
    assert await waiter is False  # settled: no token call of its own
    assert asked > 1
    await first.release("c1")


async def test_a_lease_held_too_long_is_lease_busy(store: Store) -> None:
    first, second = RefreshLease(store, ttl=5.0), RefreshLease(store, ttl=5.0)
    assert await first.take("c1", wait=1.0, settled=never)
    with pytest.raises(LeaseBusy):
        await second.take("c1", wait=0.2, settled=never)
    await first.release("c1")
    assert await second.take("c1", wait=0.2, settled=never)


async def test_renewed_holds_the_lease_past_its_ttl_then_releases_it(store: Store) -> None:
    first, second = RefreshLease(store, ttl=0.3), RefreshLease(store, ttl=0.3)
    assert await first.take("c1", wait=1.0, settled=never)
    async with first.renewed("c1"):
        await asyncio.sleep(0.6)  # twice the ttl: renewed every third of it
        with pytest.raises(LeaseBusy):
            await second.take("c1", wait=0.1, settled=never)
    assert await second.take("c1", wait=0.1, settled=never)  # released at once
