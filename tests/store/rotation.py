"""The key rotation both sealing backends must survive (SQLite: `test_sqlite.py`, PostgreSQL:
`test_postgres.py`): every sealed value re-sealed, the old key refused afterwards, fingerprints
kept, a readiness probe's unsealed row left alone."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxy.messages import TokenSet
from proxy.store import Store, StoredConnection, StoredToken, StoreError
from proxy.store.crypto import new_key_text, parse_key


async def check_rotation(
    open_with: Callable[[str], Store], rotate: Callable[[bytes, bytes], int], canary: str
) -> None:
    """`open_with(key text)` opens the store under test; `rotate(old, new)` re-seals it."""
    old_text, new_text = new_key_text(), new_key_text()
    store = open_with(old_text)
    await store.put_token("c1", StoredToken(TokenSet(canary)))
    await store.put_connection(StoredConnection("id1", "tpl", "n", None, {"k": "v"}))
    seed = store.fingerprint("seed")
    await store.check_writable()  # a readiness probe's row (not a secret) is left as it is
    await store.close()
    # The token, the connection and the fingerprint key.
    assert rotate(parse_key(old_text), parse_key(new_text)) == 3
    with pytest.raises(StoreError):
        open_with(old_text)
    store = open_with(new_text)
    got = await store.get_token("c1")
    assert got is not None and got.token is not None and got.token.access_token == canary
    assert store.fingerprint("seed") == seed  # fingerprints survive a rotation
    await store.close()
    with pytest.raises(StoreError, match="nothing was changed"):
        rotate(parse_key(old_text), parse_key(new_text))
