"""The PostgreSQL `Store` (`store.url`): several replicas on several machines share it
(docs/operations.md "Several replicas").

Strategy:
- asyncpg, one small pool per process, made on first use in the serving event loop. `open()`
  checks everything first from a short-lived database connection of its own (server reachable,
  key right, schema migrated) so a bad store is refused before any port is bound, as on SQLite.
- Migrations: `schema_version` holds the last applied one; they run in one transaction under a
  transaction-level advisory lock, so replicas starting together migrate once.
- Secrets sealed exactly as on SQLite (`codec.py`: same format, same row ids as associated
  data); a key is required (there is no directory to keep a key file in). The fingerprint key
  is random per database, sealed in `meta`, as on SQLite.
- Every serving process holds the store shared (a session advisory lock on a database connection
  of its own, `holders.py`); `rotate-key` takes it alone or refuses. A rotation is one transaction:
  killed half-way, the server rolls it back.
- A row that does not open under the key is logged by its id and left out (`codec.py`).
- Every write is one transaction (a single statement, or an explicit one).
- Token writes are fenced by `version` (`UPDATE ... WHERE version = $expected`); refresh leases
  live in `refresh_leases` with the database's clock (`now()`), so replicas on machines whose
  clocks disagree still agree on when a lease runs out.
- Connection writes bump `connections_revision` and `NOTIFY signing_proxy_connections` in the
  same transaction (delivered on commit); `watch_connections` LISTENs on a database connection
  of its own, and says so when that one drops (the caller's polling takes over meanwhile).
- Failures of the server or the network are `StoreUnavailable` with the server's message (a
  SQLSTATE text such as "could not extend file ...: No space left on device", never a value:
  every value travels as a bind parameter, and secrets only sealed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import asyncpg

from . import (
    FlowState,
    StaleToken,
    StoreConflict,
    StoredConnection,
    StoredToken,
    StoreError,
    StoreUnavailable,
    lease_owner_dead,
)
from .codec import SEALED_COLUMNS, SEALED_SETTING, SealedRows, is_sealed, newer_schema, reseal
from .crypto import KEY_BYTES, Sealer, SealError, fingerprint, parse_key
from .holders import PG_HOLDERS_LOCK, StoreInUse, in_use_message
from .repairs import LAST_REPAIR, REPAIRS_ROW, parse_applied, pending, repaired

T = TypeVar("T")
log = logging.getLogger("signing_proxy.store")

CHANNEL = "signing_proxy_connections"
_MIGRATION_LOCK = 0x5349474E  # any constant: the advisory lock id migrations take

_V1 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE tokens (
    credential_id TEXT PRIMARY KEY,
    sealed BYTEA,
    seed_fingerprint TEXT,
    needs_reauthorization BOOLEAN NOT NULL DEFAULT FALSE,
    client_auth TEXT,
    expires_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    version BIGINT NOT NULL
);
CREATE TABLE refresh_leases (
    credential_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    template_id TEXT NOT NULL,
    name TEXT NOT NULL,
    external_id TEXT,
    sealed BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (template_id, name),
    UNIQUE (template_id, external_id)
);
CREATE TABLE flow_states (
    state_hash TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE connections_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO connections_revision VALUES (1, 0)
"""

# (version, script). Append only; a released migration is never edited.
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1),)
SCHEMA_VERSION = MIGRATIONS[-1][0]

_BUMP_REVISION = "UPDATE connections_revision SET revision = revision + 1"
_NOTIFY = f"SELECT pg_notify('{CHANNEL}', '')"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"PostgreSQL: {text or type(exc).__name__}"


_FAILURES = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def _run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when the caller's thread already
    runs an event loop (a test's): in a thread of its own, with a loop of its own."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(make()))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="store-open")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class PostgresStore:
    """`Store` on PostgreSQL; use `PostgresStore.open()`."""

    def __init__(self, url: str, sealer: Sealer, fingerprint_key: bytes) -> None:
        self._url = url
        self._rows = SealedRows(sealer)
        self._fingerprint_key = fingerprint_key
        self._pool: asyncpg.Pool | None = None
        self._pool_lock: asyncio.Lock | None = None
        self._listener: asyncpg.Connection | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._holder: asyncpg.Connection | None = None
        self._rehold: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return "PostgresStore(<url>)"  # the URL may hold a password

    # --- opening, migrations, keys ---

    @classmethod
    def open(cls, url: str, key: str | None) -> PostgresStore:
        """Connect once, migrate, check the key; see `open_store`."""
        if not key:
            raise StoreError(
                "store.key is required with store.url (a PostgreSQL store has no directory "
                "to keep a key file in)"
            )
        sealer = Sealer(parse_key(key))

        async def prepare() -> bytes:
            try:
                db = await asyncpg.connect(url, timeout=10)
            except _FAILURES as exc:
                raise StoreError(f"store.url: cannot connect ({_reason(exc)})") from None
            except ValueError:
                raise StoreError("store.url: not a valid PostgreSQL URL") from None
            try:
                # Waits while a rotation runs: the key is checked against what it left.
                await db.execute("SELECT pg_advisory_lock_shared($1)", PG_HOLDERS_LOCK)
                await migrate(db)
                key = await _fingerprint_key(db, SealedRows(sealer))
                await repair(db, SealedRows(sealer))
                return key
            except _FAILURES as exc:
                raise StoreError(f"store.url: {_reason(exc)}") from None
            finally:
                await db.close()

        return cls(url, sealer, _run_sync(prepare))

    @staticmethod
    def verify(url: str, key: str | None) -> None:
        """Refuse what `open` would refuse, with its messages, changing nothing (`check`)."""
        if not key:
            raise StoreError(
                "store.key is required with store.url (a PostgreSQL store has no directory "
                "to keep a key file in)"
            )
        rows = SealedRows(Sealer(parse_key(key)))

        async def look() -> None:
            try:
                db = await asyncpg.connect(url, timeout=10)
            except _FAILURES as exc:
                raise StoreError(f"store.url: cannot connect ({_reason(exc)})") from None
            except ValueError:
                raise StoreError("store.url: not a valid PostgreSQL URL") from None
            try:
                current = 0
                if await db.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
                    current = await db.fetchval("SELECT version FROM schema_version") or 0
                if current > SCHEMA_VERSION:
                    raise newer_schema(current, SCHEMA_VERSION)
                if current > 0:
                    sealed = await db.fetchval(
                        "SELECT value FROM meta WHERE name = 'fingerprint_key'"
                    )
                    if sealed is not None:
                        rows.open_fingerprint_key(sealed)
            except _FAILURES as exc:
                raise StoreError(f"store.url: {_reason(exc)}") from None
            finally:
                await db.close()

        _run_sync(look)

    def fingerprint(self, secret: str) -> str:
        return fingerprint(self._fingerprint_key, secret)

    async def close(self) -> None:
        """Close the pool and the listener; idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in (self._relisten, self._rehold):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._relisten = self._rehold = None
        for db in (self._listener, self._holder):
            if db is not None:
                with contextlib.suppress(*_FAILURES):
                    await db.close(timeout=5)
        self._listener = self._holder = None
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(*_FAILURES):
                await asyncio.wait_for(pool.close(), 10)

    async def _get_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise StoreError("the store is closed")
        if self._pool is None:
            if self._pool_lock is None:
                self._pool_lock = asyncio.Lock()
            async with self._pool_lock:
                if self._pool is None:
                    if self._holder is None and self._rehold is None:
                        await self._hold()
                    self._pool = await asyncpg.create_pool(
                        self._url, min_size=1, max_size=4, timeout=10, command_timeout=15
                    )
        return self._pool

    async def _hold(self) -> None:
        """Hold the store shared while this process serves (holders.py): `rotate-key` then refuses.
        A lost holding database connection is re-established every second."""
        holder = await asyncpg.connect(self._url, timeout=10)
        try:
            await holder.execute("SELECT pg_advisory_lock_shared($1)", PG_HOLDERS_LOCK)
        except BaseException:
            await holder.close(timeout=5)
            raise

        def lost(_: object) -> None:
            if self._closed:
                return
            log.warning("store: the connection holding the store was lost; reconnecting")
            self._holder = None
            self._rehold = asyncio.get_running_loop().create_task(self._rehold_loop())

        holder.add_termination_listener(lost)
        self._holder = holder

    async def _rehold_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(1.0)
            with contextlib.suppress(*_FAILURES):
                await self._hold()
                self._rehold = None
                return

    async def _run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run `fn` on a pooled database connection; failures become `StoreUnavailable`."""
        try:
            pool = await self._get_pool()
            async with pool.acquire() as db:
                try:
                    return await fn(db)
                except asyncpg.InternalClientError:
                    # Its protocol state is unknown (seen after the server ended the session
                    # under it): close it so the pool opens a fresh one.
                    db.terminate()
                    raise
        except StoreError:
            raise
        except _FAILURES as exc:
            raise StoreUnavailable(_reason(exc)) from None

    async def check_writable(self) -> None:
        async def write(db: asyncpg.Connection) -> None:
            await db.execute(
                "INSERT INTO meta VALUES ('ready_probe', $1) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                str(time.time()).encode(),
            )

        await self._run(write)

    async def sealed_setting(self, name: str, make: Callable[[], bytes]) -> bytes:
        row_name = SEALED_SETTING + name

        async def read(db: asyncpg.Connection) -> bytes | None:
            sealed = await db.fetchval("SELECT value FROM meta WHERE name = $1", row_name)
            return None if sealed is None else self._rows.open_setting(name, sealed)

        found = await self._run(read)
        if found is not None:
            return found
        made = make()

        async def write(db: asyncpg.Connection) -> bytes | None:
            # The first replica's value stays; the others read it back.
            await db.execute(
                "INSERT INTO meta VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                row_name,
                self._rows.seal_setting(name, made),
            )
            return await read(db)

        stored = await self._run(write)
        assert stored is not None
        return stored

    # --- tokens ---

    async def get_token(self, credential_id: str) -> StoredToken | None:
        async def read(db: asyncpg.Connection) -> Any:
            return await db.fetchrow(
                "SELECT sealed, seed_fingerprint, needs_reauthorization, client_auth, "
                "updated_at, version FROM tokens WHERE credential_id = $1",
                credential_id,
            )

        row = await self._run(read)
        if row is None:
            return None
        return self._rows.open_token_record(
            credential_id,
            row["sealed"],
            row["seed_fingerprint"],
            row["needs_reauthorization"],
            row["client_auth"],
            row["updated_at"],
            row["version"],
        )

    async def put_token(
        self, credential_id: str, record: StoredToken, *, expected_version: int | None = None
    ) -> int:
        values = (
            credential_id,
            self._rows.seal_token(credential_id, record),
            record.seed_fingerprint,
            record.needs_reauthorization,
            record.client_auth,
            record.token.expires_at if record.token is not None else None,
            time.time(),
        )
        columns = (
            "sealed = excluded.sealed, seed_fingerprint = excluded.seed_fingerprint, "
            "needs_reauthorization = excluded.needs_reauthorization, "
            "client_auth = excluded.client_auth, expires_at = excluded.expires_at, "
            "updated_at = excluded.updated_at, version = tokens.version + 1"
        )

        async def write(db: asyncpg.Connection) -> int | None:
            if expected_version is None:
                version: int = await db.fetchval(
                    "INSERT INTO tokens VALUES ($1, $2, $3, $4, $5, $6, $7, 1) "
                    f"ON CONFLICT (credential_id) DO UPDATE SET {columns} RETURNING version",
                    *values,
                )
                return version
            if expected_version == 0:
                # No row yet: the insert is the fence (a concurrent one makes this a no-op).
                fenced: int | None = await db.fetchval(
                    "INSERT INTO tokens VALUES ($1, $2, $3, $4, $5, $6, $7, 1) "
                    "ON CONFLICT (credential_id) DO NOTHING RETURNING version",
                    *values,
                )
                return fenced
            fenced = await db.fetchval(
                "UPDATE tokens SET sealed = $2, seed_fingerprint = $3, "
                "needs_reauthorization = $4, client_auth = $5, expires_at = $6, "
                "updated_at = $7, version = version + 1 "
                "WHERE credential_id = $1 AND version = $8 RETURNING version",
                *values,
                expected_version,
            )
            return fenced

        written = await self._run(write)
        if written is None:
            raise StaleToken(credential_id)
        return written

    async def delete_token(self, credential_id: str) -> None:
        async def write(db: asyncpg.Connection) -> None:
            await db.execute("DELETE FROM tokens WHERE credential_id = $1", credential_id)

        await self._run(write)

    async def acquire_refresh_lease(self, credential_id: str, owner: str, ttl: float) -> bool:
        async def write(db: asyncpg.Connection) -> bool:
            async with db.transaction():
                held = await db.fetchval(
                    "SELECT owner FROM refresh_leases WHERE credential_id = $1 "
                    "AND expires_at > now() FOR UPDATE",
                    credential_id,
                )
                dead = held if held is not None and lease_owner_dead(held) else None
                # The upsert decides, not the read above: with no row yet, two replicas both
                # read nothing; the second insert then waits for the first and, finding its
                # live lease, updates nothing and returns no row.
                taken = await db.fetchval(
                    "INSERT INTO refresh_leases VALUES ($1, $2, now() + make_interval(secs => $3)) "
                    "ON CONFLICT (credential_id) DO UPDATE SET owner = excluded.owner, "
                    "expires_at = excluded.expires_at WHERE refresh_leases.owner = $2 "
                    "OR refresh_leases.expires_at <= now() OR refresh_leases.owner = $4 "
                    "RETURNING 1",
                    credential_id,
                    owner,
                    ttl,
                    dead,
                )
                return taken is not None

        return await self._run(write)

    async def release_refresh_lease(self, credential_id: str, owner: str) -> None:
        async def write(db: asyncpg.Connection) -> None:
            await db.execute(
                "DELETE FROM refresh_leases WHERE credential_id = $1 AND owner = $2",
                credential_id,
                owner,
            )

        await self._run(write)

    # --- connections ---

    async def put_connection(self, connection: StoredConnection) -> None:
        sealed = self._rows.seal_connection(connection)

        async def write(db: asyncpg.Connection) -> None:
            now = time.time()
            async with db.transaction():
                clash = await db.fetchrow(
                    "SELECT name = $1 AS same_name FROM connections WHERE template_id = $2 "
                    "AND id != $3 AND (name = $1 OR external_id = $4) LIMIT 1",
                    connection.name,
                    connection.template_id,
                    connection.id,
                    connection.external_id,
                )
                if clash is not None:
                    raise StoreConflict("name" if clash["same_name"] else "externalId")
                await db.execute(
                    "INSERT INTO connections VALUES ($1, $2, $3, $4, $5, $6, $6) "
                    "ON CONFLICT (id) DO UPDATE SET template_id = excluded.template_id, "
                    "name = excluded.name, external_id = excluded.external_id, "
                    "sealed = excluded.sealed, updated_at = excluded.updated_at",
                    connection.id,
                    connection.template_id,
                    connection.name,
                    connection.external_id,
                    sealed,
                    now,
                )
                await db.execute(_BUMP_REVISION)
                await db.execute(_NOTIFY)

        try:
            await self._run(write)
        except StoreUnavailable as exc:
            # Two replicas creating the same name at once: the unique index decides.
            if "connections_template_id_name_key" in exc.reason:
                raise StoreConflict("name") from None
            if "connections_template_id_external_id_key" in exc.reason:
                raise StoreConflict("externalId") from None
            raise

    def _connection(self, row: Any) -> StoredConnection | None:
        return self._rows.open_connection(
            row["id"],
            row["template_id"],
            row["name"],
            row["external_id"],
            row["sealed"],
            row["created_at"],
            row["updated_at"],
        )

    async def get_connection(self, connection_id: str) -> StoredConnection | None:
        async def read(db: asyncpg.Connection) -> Any:
            return await db.fetchrow("SELECT * FROM connections WHERE id = $1", connection_id)

        row = await self._run(read)
        return None if row is None else self._connection(row)

    async def delete_connection(self, connection_id: str) -> bool:
        async def write(db: asyncpg.Connection) -> bool:
            async with db.transaction():
                deleted = await db.fetchval(
                    "DELETE FROM connections WHERE id = $1 RETURNING id", connection_id
                )
                if deleted is None:
                    return False
                await db.execute(_BUMP_REVISION)
                await db.execute(_NOTIFY)
                return True

        return await self._run(write)

    async def list_connections(self) -> list[StoredConnection]:
        async def read(db: asyncpg.Connection) -> list[Any]:
            rows: list[Any] = await db.fetch("SELECT * FROM connections ORDER BY created_at, id")
            return rows

        rows = await self._run(read)
        return [c for row in rows if (c := self._connection(row)) is not None]

    async def connections_revision(self) -> int:
        async def read(db: asyncpg.Connection) -> int:
            revision: int = await db.fetchval("SELECT revision FROM connections_revision")
            return revision

        return await self._run(read)

    async def watch_connections(self, changed: Callable[[], None]) -> bool:
        """LISTEN on a database connection of our own; `changed()` on every NOTIFY. A lost
        listening one is re-established (every second until it works), and `changed()` is called
        then too, for what may have been missed in between."""
        if self._closed:
            raise StoreError("the store is closed")
        return await self._listen(changed)

    async def _listen(self, changed: Callable[[], None]) -> bool:
        try:
            listener = await asyncpg.connect(self._url, timeout=10)
            await listener.add_listener(CHANNEL, lambda *_: changed())
        except _FAILURES as exc:
            log.warning("store: cannot LISTEN for connection changes (%s)", _reason(exc))
            return False

        def lost(_: object) -> None:
            if self._closed:
                return
            log.warning("store: the LISTEN connection was lost; reconnecting")
            self._listener = None
            self._relisten = asyncio.get_running_loop().create_task(self._relisten_loop(changed))

        listener.add_termination_listener(lost)
        self._listener = listener
        return True

    async def _relisten_loop(self, changed: Callable[[], None]) -> None:
        while not self._closed:
            await asyncio.sleep(1.0)
            if await self._listen(changed):
                changed()
                return

    # --- OAuth flow state ---

    async def put_flow(self, flow: FlowState) -> None:
        state_hash = self.fingerprint(flow.state)
        sealed = self._rows.seal_flow(state_hash, flow)

        async def write(db: asyncpg.Connection) -> None:
            async with db.transaction():
                # Expired flows are dropped on the way: the table never grows without bound.
                await db.execute("DELETE FROM flow_states WHERE expires_at <= $1", time.time())
                await db.execute(
                    "INSERT INTO flow_states VALUES ($1, $2, $3) ON CONFLICT (state_hash) "
                    "DO UPDATE SET sealed = excluded.sealed, expires_at = excluded.expires_at",
                    state_hash,
                    sealed,
                    flow.expires_at,
                )

        await self._run(write)

    async def take_flow(self, state: str, now: float | None = None) -> FlowState | None:
        state_hash = self.fingerprint(state)

        async def write(db: asyncpg.Connection) -> Any:
            return await db.fetchrow(
                "DELETE FROM flow_states WHERE state_hash = $1 RETURNING sealed, expires_at",
                state_hash,
            )

        taken = await self._run(write)
        if taken is None:
            return None
        return self._rows.open_flow(state, state_hash, taken["sealed"], taken["expires_at"], now)


async def schema_version(db: asyncpg.Connection) -> int:
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    version: int | None = await db.fetchval("SELECT version FROM schema_version")
    return 0 if version is None else version


async def migrate(db: asyncpg.Connection) -> None:
    """Apply the migrations newer than the database in one transaction, replicas serialised
    by an advisory lock."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        current = await schema_version(db)
        if current > SCHEMA_VERSION:
            raise newer_schema(current, SCHEMA_VERSION)
        for version, script in MIGRATIONS:
            if version <= current:
                continue
            await db.execute(script)
            await db.execute("DELETE FROM schema_version")
            await db.execute("INSERT INTO schema_version VALUES ($1)", version)


async def _fingerprint_key(db: asyncpg.Connection, rows: SealedRows) -> bytes:
    # Random per database and sealed under store.key (as on SQLite): fingerprints survive a
    # key rotation, and opening it proves the key is the right one.
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        sealed = await db.fetchval("SELECT value FROM meta WHERE name = 'fingerprint_key'")
        if sealed is None:
            key = os.urandom(KEY_BYTES)
            await db.execute(
                "INSERT INTO meta VALUES ('fingerprint_key', $1)", rows.seal_fingerprint_key(key)
            )
            return key
    return rows.open_fingerprint_key(sealed)


async def repair(db: asyncpg.Connection, rows: SealedRows) -> None:
    """Apply the value repairs newer than the database (`repairs.py`) in one transaction,
    replicas serialised by the migrations' advisory lock."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        found = await db.fetchval("SELECT value FROM meta WHERE name = $1", REPAIRS_ROW)
        todo = pending(parse_applied(found))
        if not todo:
            return
        changed = False
        for row in await db.fetch("SELECT id, sealed FROM connections FOR UPDATE"):
            try:
                document = rows.open_document(row["id"], row["sealed"])
            except SealError:
                continue  # reported where the connections are read
            if repaired(document, todo):
                await db.execute(
                    "UPDATE connections SET sealed = $1 WHERE id = $2",
                    rows.seal_document(row["id"], document),
                    row["id"],
                )
                changed = True
        if changed:
            await db.execute(_BUMP_REVISION)
            await db.execute(_NOTIFY)
        await db.execute(
            "INSERT INTO meta VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2",
            REPAIRS_ROW,
            str(LAST_REPAIR).encode("ascii"),
        )


def rotate_key(url: str, old_key: bytes, new_key: bytes) -> int:
    """Re-seal every secret under `new_key` in one transaction; the values re-sealed.

    Refuses (`StoreInUse`) while any process holds the store (holders.py): a replica would keep
    writing under the old key.
    """
    old, new = Sealer(old_key), Sealer(new_key)

    async def rotate() -> int:
        try:
            db = await asyncpg.connect(url, timeout=10)
        except _FAILURES as exc:
            raise StoreError(f"store.url: cannot connect ({_reason(exc)})") from None
        try:
            if not await db.fetchval("SELECT pg_try_advisory_lock($1)", PG_HOLDERS_LOCK):
                holders = await db.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = "
                    "current_database()) AND classid = 0 AND objid = $1",
                    PG_HOLDERS_LOCK,
                )
                raise StoreInUse(in_use_message(f"the PostgreSQL store ({holders} holder(s))"))
            await migrate(db)
            count = 0
            async with db.transaction():
                for table, id_column, column, prefix in SEALED_COLUMNS:
                    rows = await db.fetch(
                        f"SELECT {id_column} AS id, {column} AS sealed FROM {table} "
                        f"WHERE {column} IS NOT NULL FOR UPDATE"
                    )
                    for row in rows:
                        if not is_sealed(table, row["id"]):
                            continue
                        await db.execute(
                            f"UPDATE {table} SET {column} = $1 WHERE {id_column} = $2",
                            reseal(old, new, prefix + row["id"], row["sealed"]),
                            row["id"],
                        )
                        count += 1
            return count
        finally:
            await db.close()

    return _run_sync(rotate)
