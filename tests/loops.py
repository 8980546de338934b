"""A test's own event loop in a background thread, for synchronous tests that talk to servers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


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
