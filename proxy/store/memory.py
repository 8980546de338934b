"""A dict-backed `Store`: tests and ephemeral runs (`store.path` unset means nothing survives).

It honours the same contract as the SQLite store (`tests/store/test_contract.py`), leases
included, so code tested against it behaves the same on SQLite.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace

from . import FlowState, StaleToken, StoreConflict, StoredConnection, StoredToken, StoreError
from .crypto import fingerprint


class MemoryStore:
    """Everything in process memory; a fresh random fingerprint key per instance."""

    def __init__(self) -> None:
        self._fingerprint_key = secrets.token_bytes(32)
        self._tokens: dict[str, StoredToken] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._connections: dict[str, StoredConnection] = {}
        self._flows: dict[str, FlowState] = {}
        self._revision = 0
        self._settings: dict[str, bytes] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryStore(tokens={len(self._tokens)}, connections={len(self._connections)})"

    def fingerprint(self, secret: str) -> str:
        return fingerprint(self._fingerprint_key, secret)

    async def close(self) -> None:
        """Idempotent; afterwards every call is `StoreError`, as on SQLite (so a test on this
        store catches a use after shutdown too)."""
        self._closed = True

    async def check_writable(self) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    async def sealed_setting(self, name: str, make: Callable[[], bytes]) -> bytes:
        self._check_open()
        if name not in self._settings:
            self._settings[name] = make()
        return self._settings[name]

    # --- tokens ---

    async def get_token(self, credential_id: str) -> StoredToken | None:
        self._check_open()
        return self._tokens.get(credential_id)

    async def put_token(
        self, credential_id: str, record: StoredToken, *, expected_version: int | None = None
    ) -> int:
        self._check_open()
        held = self._tokens.get(credential_id)
        version = held.version if held is not None else 0
        if expected_version is not None and version != expected_version:
            raise StaleToken(credential_id)
        self._tokens[credential_id] = replace(record, updated_at=time.time(), version=version + 1)
        return version + 1

    async def delete_token(self, credential_id: str) -> None:
        self._check_open()
        self._tokens.pop(credential_id, None)

    async def acquire_refresh_lease(self, credential_id: str, owner: str, ttl: float) -> bool:
        self._check_open()
        now = time.time()
        held = self._leases.get(credential_id)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._leases[credential_id] = (owner, now + ttl)
        return True

    async def release_refresh_lease(self, credential_id: str, owner: str) -> None:
        self._check_open()
        held = self._leases.get(credential_id)
        if held is not None and held[0] == owner:
            del self._leases[credential_id]

    # --- connections ---

    async def put_connection(self, connection: StoredConnection) -> None:
        self._check_open()
        for other in self._connections.values():
            if other.id == connection.id or other.template_id != connection.template_id:
                continue
            if other.name == connection.name:
                raise StoreConflict("name")
            if connection.external_id is not None and other.external_id == connection.external_id:
                raise StoreConflict("externalId")
        now = time.time()
        existing = self._connections.get(connection.id)
        created = existing.created_at if existing is not None else now
        self._connections[connection.id] = replace(connection, created_at=created, updated_at=now)
        self._revision += 1

    async def get_connection(self, connection_id: str) -> StoredConnection | None:
        self._check_open()
        return self._connections.get(connection_id)

    async def delete_connection(self, connection_id: str) -> bool:
        self._check_open()
        if self._connections.pop(connection_id, None) is None:
            return False
        self._revision += 1
        return True

    async def list_connections(self) -> list[StoredConnection]:
        self._check_open()
        return sorted(self._connections.values(), key=lambda c: (c.created_at, c.id))

    async def connections_revision(self) -> int:
        self._check_open()
        return self._revision

    async def watch_connections(self, changed: Callable[[], None]) -> bool:
        return False  # one process: its own changes are applied where they are made

    # --- OAuth flow state ---

    async def put_flow(self, flow: FlowState) -> None:
        self._check_open()
        self._flows[flow.state] = flow

    async def take_flow(self, state: str, now: float | None = None) -> FlowState | None:
        self._check_open()
        flow = self._flows.pop(state, None)
        if flow is None or flow.expires_at <= (time.time() if now is None else now):
            return None
        return flow
