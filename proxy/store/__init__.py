"""The durable-state interfaces (docs/security.md): tokens, API-created connections, OAuth flow
state.

Callers depend only on the Protocols and frozen values defined here; `open_store()` picks the
implementation (`memory.py` for tests and ephemeral runs, `sqlite.py` by default, `postgres.py`
for replicas sharing one database). A new backend is one new module that passes
`tests/store/test_contract.py`.

Secrets in the values below are plain text in memory and are kept out of `repr()`; a backend
encrypts them at rest (`crypto.py`). Fingerprints are keyed hashes (`Store.fingerprint`), never the
secret itself, so the store can tell "the file's token changed" without keeping the file's token.

May import `config/`, `messages` and `errors` only.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

from ..errors import PROXY_INTERNAL_ERROR, ProxyError
from ..messages import TokenSet

ClientAuthStyle = Literal["basic", "form"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class StoreError(Exception):
    """The store cannot be opened or used (bad key, unreadable file, newer schema)."""


class StoreUnavailable(StoreError, ProxyError):
    """The store cannot be written (or read) now: disk full, read-only, files deleted, locked.

    Also a `ProxyError`: a request that needs such a write is answered 503 `store_unavailable`
    by whichever listener it came to. `reason` says why in words safe to log and to show in
    `/readyz` (an errno text or SQLite's message, never a stored value).
    """

    status = 503
    proxy_status = PROXY_INTERNAL_ERROR

    def __init__(self, reason: str) -> None:
        ProxyError.__init__(
            self,
            "store_unavailable",
            "the proxy's store cannot be written now; try again later",
        )
        self.reason = reason

    def __repr__(self) -> str:
        return f"StoreUnavailable({self.reason!r})"


class StaleToken(StoreError):
    """A fenced token write lost: the stored token is newer than the one the write descends
    from (another process refreshed meanwhile)."""

    def __init__(self, credential_id: str) -> None:
        super().__init__(f"credential {credential_id}: a newer token is stored")


class StoreConflict(StoreError):
    """A unique value (`name` or `externalId` within a template) is already taken."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is already taken")
        self.field = field


HISTORY_LENGTH = 32  # fingerprints kept of each kind: years of seeds, the last issued tokens


@dataclass(frozen=True, slots=True)
class TokenHistory:
    """The refresh tokens a credential has had, as `Store.fingerprint()`s (never the tokens):
    `seeds` given by a person (the file, the API), `issued` by the provider to the proxy, each
    the newest `HISTORY_LENGTH`. A seed whose refresh token is in here is the current one or a
    used-up one: never sent again as new (docs/request-path.md)."""

    seeds: tuple[str, ...] = ()
    issued: tuple[str, ...] = ()

    def knows(self, fingerprint: str) -> bool:
        return fingerprint in self.seeds or fingerprint in self.issued

    def with_seed(self, fingerprint: str) -> TokenHistory:
        if fingerprint in self.seeds:
            return self
        return TokenHistory((*self.seeds, fingerprint)[-HISTORY_LENGTH:], self.issued)

    def merged(self, other: TokenHistory) -> TokenHistory:
        """Both histories, this one's entries first, each kind the newest `HISTORY_LENGTH`."""
        seeds = (*self.seeds, *(s for s in other.seeds if s not in self.seeds))
        issued = (*self.issued, *(s for s in other.issued if s not in self.issued))
        return TokenHistory(seeds[-HISTORY_LENGTH:], issued[-HISTORY_LENGTH:])

    def with_issued(self, fingerprint: str) -> TokenHistory:
        if fingerprint in self.issued:
            return self
        return TokenHistory(self.seeds, (*self.issued, fingerprint)[-HISTORY_LENGTH:])


@dataclass(frozen=True, slots=True)
class StoredToken:
    """The token state of one OAuth 2.0 credential.

    Attributes:
        token: the newest token obtained (None before the first one, e.g. client credentials).
        seed_fingerprint: `Store.fingerprint()` of the credential material this state descends
            from (the file's or the API's token / client secret); a different seed means the
            person replaced the credential, and the seed wins again (docs/request-path.md).
        needs_reauthorization: the provider answered `invalid_grant`; no token calls until the
            credential is replaced.
        client_auth: the client-authentication style the token endpoint accepted, once known.
        updated_at: unix seconds of the last write.
        version: set by the store on reads: the number of writes of this row so far (0: never
            written); ignored on writes.
        history: the refresh tokens this credential has had (sealed with the token).
    """

    token: TokenSet | None
    seed_fingerprint: str | None = None
    needs_reauthorization: bool = False
    client_auth: ClientAuthStyle | None = None
    updated_at: float = 0.0
    version: int = 0
    history: TokenHistory = TokenHistory()


@dataclass(frozen=True, slots=True)
class StoredConnection:
    """A connection created through the management API.

    `document` is the connection in the seed shape (camelCase, JSON-able) *with* its secrets; the
    backend encrypts it. `template_id`, `name`, `external_id` are kept apart for the 409 lookups.
    """

    id: str
    template_id: str
    name: str
    external_id: str | None
    document: Mapping[str, Any] = field(repr=False)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class FlowState:
    """One pending OAuth 2.0 connect flow (authorize redirect → callback), single use.

    `extra` holds what the init request chose (scopes, client id, authorize URL overrides) in
    JSON-able form.
    """

    state: str = field(repr=False)
    code_verifier: str = field(repr=False)
    template_id: str
    organisation_id: str
    redirect_uri: str
    expires_at: float
    connection_name: str | None = None
    external_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


class TokenStore(Protocol):
    """Token state per credential id; `put` is durable when it returns."""

    async def get_token(self, credential_id: str) -> StoredToken | None: ...

    async def put_token(
        self, credential_id: str, record: StoredToken, *, expected_version: int | None = None
    ) -> int:
        """Write `record` and return its new version.

        Args:
            expected_version: fence: write only if the stored version is still this one (0 for
                no row yet); None writes unconditionally (a seed replaced by a person).

        Raises:
            StaleToken: the fence did not hold; nothing was written.
        """
        ...

    async def delete_token(self, credential_id: str) -> None: ...

    async def acquire_refresh_lease(self, credential_id: str, owner: str, ttl: float) -> bool:
        """Try to become the one refresher of `credential_id` across processes for `ttl` s."""
        ...

    async def release_refresh_lease(self, credential_id: str, owner: str) -> None: ...


class ConnectionStore(Protocol):
    """Connections created through the management API."""

    async def put_connection(self, connection: StoredConnection) -> None:
        """Insert or replace by `id`; raise `StoreConflict` when name/externalId is taken."""
        ...

    async def get_connection(self, connection_id: str) -> StoredConnection | None: ...

    async def delete_connection(self, connection_id: str) -> bool:
        """Delete; True if it existed."""
        ...

    async def list_connections(self) -> list[StoredConnection]:
        """All connections, oldest first."""
        ...

    async def connections_revision(self) -> int:
        """A number that grows with every connection put or delete, by any process.

        Cheap to read: processes serving the same store (`run --workers N`) poll it to learn
        that the set of connections changed (`proxy/dataplane/sync.py`).
        """
        ...

    async def watch_connections(self, changed: Callable[[], None]) -> bool:
        """Call `changed()` whenever any process changes a connection, if this store can push
        (PostgreSQL LISTEN/NOTIFY); False when it cannot, and the caller polls the revision."""
        ...


class FlowStateStore(Protocol):
    """Pending OAuth 2.0 connect flows."""

    async def put_flow(self, flow: FlowState) -> None: ...

    async def take_flow(self, state: str, now: float | None = None) -> FlowState | None:
        """Fetch and delete atomically; None when unknown, already taken or expired."""
        ...


class SettingStore(Protocol):
    """Store-wide secrets every process sharing the store uses alike (the forward proxy's CA)."""

    async def sealed_setting(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The sealed value `name`; when there is none yet, `make()`'s, stored first. Processes
        racing to make it all get the one value that was stored first."""
        ...


class Store(TokenStore, ConnectionStore, FlowStateStore, SettingStore, Protocol):
    """Everything durable, behind one handle."""

    def fingerprint(self, secret: str) -> str:
        """A keyed hash of `secret` (stable for this store, useless without its key)."""
        ...

    async def check_writable(self) -> None:
        """Prove that a write can happen now (a tiny write, and the files are still in place).

        Raises:
            StoreUnavailable: with the reason, for `/readyz`.
        """
        ...

    async def close(self) -> None:
        """Release the store; a second call does nothing (SQLite: later use is `StoreError`)."""
        ...


def lease_owner(nonce: str) -> str:
    """A refresh-lease owner name for this process, `host/pid/nonce`.

    Backends may parse it: a lease whose process is gone (same host, dead pid) is taken over at
    once rather than after its expiry.
    """
    return f"{socket.gethostname()}/{os.getpid()}/{nonce}"


def lease_owner_dead(owner: str) -> bool:
    """True when `owner` (see `lease_owner`) is a process of this host that no longer exists:
    its lease can be taken over at once instead of after its expiry. Elsewhere: False."""
    host, _, rest = owner.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def require_postgres_driver() -> None:
    """asyncpg comes with the `postgres` extra, not with the core install: a `store.url` without
    it is a clear error naming the extra, not an ImportError."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise StoreError(
            "store.url names PostgreSQL, whose driver is not installed: "
            "pip install 'signing-proxy[postgres]'"
        ) from None


def open_store(path: str | None, key: str | None = None, *, url: str | None = None) -> Store:
    """Open the PostgreSQL store at `url`, else the SQLite store at `path` (created if missing),
    else a memory store.

    Args:
        path: database file; its directory is created. None = in memory, lost on exit.
        key: base64 of a 32-byte AES key (`store.key`); None = a key file beside the database
            (SQLite only: PostgreSQL requires a key).
        url: `postgresql://...` (`store.url`): several replicas share it.

    Raises:
        StoreError: bad key, key file with loose permissions, unreadable or newer database,
            unreachable server, PostgreSQL without its driver (the `postgres` extra).
    """
    if url is not None:
        require_postgres_driver()
        from .postgres import PostgresStore

        return PostgresStore.open(url, key)
    if path is None:
        from .memory import MemoryStore

        return MemoryStore()
    from .sqlite import SqliteStore

    return SqliteStore.open(path, key)


def verify_store(path: str | None, key: str | None = None, *, url: str | None = None) -> None:
    """Raise the `StoreError` `open_store` would raise, creating and changing nothing: what
    `signing-proxy check` reports (an existing store is read, a missing one is not created)."""
    if url is not None:
        require_postgres_driver()
        from .postgres import PostgresStore

        PostgresStore.verify(url, key)
    elif path is not None:
        from .sqlite import SqliteStore

        SqliteStore.verify(path, key)


__all__ = [
    "ClientAuthStyle",
    "ConnectionStore",
    "FlowState",
    "FlowStateStore",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreUnavailable",
    "StaleToken",
    "StoredConnection",
    "StoredToken",
    "TokenHistory",
    "TokenStore",
    "lease_owner",
    "lease_owner_dead",
    "open_store",
    "require_postgres_driver",
    "verify_store",
]
