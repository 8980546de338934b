"""What a proxy's store holds for a credential, read from outside the proxy (between two runs,
after a kill, beside a running replica): the store its config file names, opened as `run`
opens it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from proxy.connections.runtime import load_runtime
from proxy.store import StoredToken, open_store


def stored_token(config: Path, connection: str | None = None) -> StoredToken | None:
    """The token record of the first credential of `connection` (the config's first connection
    by default)."""
    runtime = load_runtime(config)
    compiled = next(c for c in runtime.connections if connection in (None, c.name))
    credential_id = compiled.schemes[0].credential_id
    settings = runtime.config.store
    key = settings.key.get_secret_value() if settings.key else None
    url = settings.url.get_secret_value() if settings.url else None

    async def read() -> StoredToken | None:
        store = open_store(settings.path, key, url=url)
        try:
            return await store.get_token(credential_id)
        finally:
            await store.close()

    return asyncio.run(read())


def stored_refresh_token(config: Path, connection: str | None = None) -> str | None:
    """The refresh token `stored_token()` holds, if any."""
    record = stored_token(config, connection)
    return None if record is None or record.token is None else record.token.refresh_token
