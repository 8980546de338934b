"""The default `Store`: one SQLite file (docs/security.md), embedded, no server to run.

Strategy:
- Every call runs on one dedicated worker thread that owns the `sqlite3` connection, so the event
  loop never blocks on disk and calls are serialised without locks of our own.
- WAL journal, `synchronous=FULL`: a write that returned is on disk (a token is committed before
  it is used, docs/request-path.md), and readers in other processes (`run --workers N`) do not
  block writers.
- Writes are explicit `BEGIN IMMEDIATE` transactions: the write lock is taken up front, so two
  processes never both read-then-write the same row.
- `schema_version` holds the number of the last applied migration; `MIGRATIONS` only grows.
- Secret fields are sealed with AES-GCM (`crypto.py`) with the row id as associated data, in
  the format PostgreSQL uses too (`codec.py`).
- Refresh leases (`refresh_leases` table) make a token refresh single-flight across processes; a
  lease of a process that died (SIGKILL) is taken over at once instead of waiting for its expiry.
- Every process serving from the file holds it shared (`holders.py`); `rotate-key` holds it
  alone, so it never runs beside a proxy. A rotation killed between its commit and the rename
  of its new key file is completed by the next open (and one killed before its commit rolled
  back by SQLite): the store always opens.
- A row that does not open under the key (sealed under another one, or damaged) is logged by
  its id and left out (`codec.py`); the other rows serve.
- A failing disk is `StoreUnavailable` with SQLite's reason ("database or disk is full",
  "attempt to write a readonly database"). Before each write the database file is checked to be
  the one opened: SQLite keeps writing to a deleted file through its open descriptor, and those
  writes would vanish at exit, so a deleted or replaced file fails every write instead.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar, cast

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
from .crypto import (
    KEY_BYTES,
    Sealer,
    SealError,
    fingerprint,
    load_or_create_key_file,
    parse_key,
    read_key_file,
)
from .holders import hold_shared
from .repairs import LAST_REPAIR, REPAIRS_ROW, parse_applied, pending, repaired

T = TypeVar("T")
log = logging.getLogger("signing_proxy.store")

_V1 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE tokens (
    credential_id TEXT PRIMARY KEY,
    sealed BLOB,                       -- TokenSet as JSON, AES-GCM, NULL before the first token
    seed_fingerprint TEXT,
    needs_reauthorization INTEGER NOT NULL DEFAULT 0,
    client_auth TEXT,
    expires_at REAL,                   -- copy of the token's expiry, for operators
    updated_at REAL NOT NULL
);
CREATE TABLE refresh_leases (
    credential_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    template_id TEXT NOT NULL,
    name TEXT NOT NULL,
    external_id TEXT,
    sealed BLOB NOT NULL,              -- the seed-shaped document with secrets, AES-GCM
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (template_id, name),
    UNIQUE (template_id, external_id)  -- NULLs are distinct in SQLite (no externalId, no clash)
);
CREATE TABLE flow_states (
    state_hash TEXT PRIMARY KEY,       -- keyed hash of `state` (the state itself is not kept)
    sealed BLOB NOT NULL,
    expires_at REAL NOT NULL
);
"""

# One row, bumped in the transaction of every connection write: other processes on the file
# poll it to learn that the connections changed (`connections_revision`).
_V2 = """
CREATE TABLE connections_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO connections_revision VALUES (1, 0)
"""

# The fence of token writes: bumped by every write, compared by a fenced one.
_V3 = """
ALTER TABLE tokens ADD COLUMN version INTEGER NOT NULL DEFAULT 0
"""

# (version, script). Append only; a released migration is never edited.
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1), (2, _V2), (3, _V3))
SCHEMA_VERSION = MIGRATIONS[-1][0]

_BUMP_REVISION = "UPDATE connections_revision SET revision = revision + 1"


def key_file_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".key")


def pending_key_path(key_file: Path) -> Path:
    """Where `rotate-key` writes the new key before the database changes."""
    return key_file.with_name(key_file.name + ".new")


class SqliteStore:
    """`Store` on one SQLite file; use `SqliteStore.open()`."""

    def __init__(
        self,
        db: sqlite3.Connection,
        sealer: Sealer,
        fingerprint_key: bytes,
        key_file: Path | None = None,
        held: int | None = None,
    ) -> None:
        self._db = db
        self._held = held  # the descriptor holding the file shared (holders.py)
        self._rows = SealedRows(sealer)
        self._fingerprint_key = fingerprint_key
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._closed = False
        self.path = Path(db.execute("PRAGMA database_list").fetchone()[2])
        self._identity = _file_identity(self.path)
        self._key_file = key_file

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # --- opening, migrations, keys ---

    @classmethod
    def open(cls, path: str | Path, key: str | None = None) -> SqliteStore:
        """Open (creating and migrating) the database; see `open_store`."""
        db_path = Path(path)
        key_file = None if key else key_file_path(db_path)
        key_path = key_file_path(db_path)
        held: int | None = None
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            # Held before the key is read: a rotation running now finishes first.
            held = hold_shared(db_path)
            raw_key = parse_key(key) if key else load_or_create_key_file(key_path)
            db = connect(db_path)
        except OSError as exc:
            _release(held)
            raise StoreError(f"{db_path}: {exc.strerror or 'cannot open'}") from None
        except sqlite3.Error as exc:
            _release(held)
            raise StoreError(f"{db_path}: {exc}{_read_only_hint(db_path)}") from None
        except BaseException:
            _release(held)
            raise
        try:
            migrate(db)
            if key_file is not None:
                raw_key = settle_interrupted_rotation(db, key_file, raw_key)
            sealer = Sealer(raw_key)
            fp_key = _fingerprint_key(db, SealedRows(sealer))
            repair(db, SealedRows(sealer))
        except sqlite3.Error as exc:
            db.close()
            _release(held)
            raise StoreError(f"{db_path}: {exc}{_read_only_hint(db_path)}") from None
        except OSError as exc:
            db.close()
            _release(held)
            raise StoreError(f"{db_path}: {exc.strerror or 'cannot open'}") from None
        except BaseException:
            db.close()
            _release(held)
            raise
        return cls(db, sealer, fp_key, key_file, held)

    @staticmethod
    def verify(path: str | Path, key: str | None = None) -> None:
        """Refuse what `open` would refuse, with its messages, creating and changing nothing
        (`signing-proxy check`)."""
        db_path = Path(path)
        key_path = key_file_path(db_path)
        try:
            raw_key = parse_key(key) if key else None
            if raw_key is None and key_path.exists():
                raw_key = read_key_file(key_path)
            if not db_path.exists():
                _check_creatable(db_path)
                return
            db = connect(db_path)
        except OSError as exc:
            raise StoreError(f"{db_path}: {exc.strerror or 'cannot open'}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"{db_path}: {exc}{_read_only_hint(db_path)}") from None
        try:
            # The write lock `open`'s migration takes; everything in it is rolled back.
            db.execute("BEGIN IMMEDIATE")
            try:
                current = schema_version(db)
                if current > SCHEMA_VERSION:
                    raise newer_schema(current, SCHEMA_VERSION)
                row = None
                if current > 0:
                    row = db.execute(
                        "SELECT value FROM meta WHERE name = 'fingerprint_key'"
                    ).fetchone()
            finally:
                db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(f"{db_path}: {exc}{_read_only_hint(db_path)}") from None
        finally:
            db.close()
        if row is None:
            return
        # Without a key file, `open` would make a new one: a key the store was not written with.
        keys = [raw_key or os.urandom(KEY_BYTES)]
        pending = pending_key_path(key_path)
        if key is None and pending.exists():
            keys.append(read_key_file(pending))  # an interrupted rotation `open` completes
        if not any(_opens(candidate, row[0]) for candidate in keys):
            SealedRows(Sealer(keys[0])).open_fingerprint_key(row[0])  # raises, as `open` would

    def fingerprint(self, secret: str) -> str:
        return fingerprint(self._fingerprint_key, secret)

    async def close(self) -> None:
        """Close the database and its thread; idempotent (several owners may say goodbye)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)
        # After SQLite's connection: closing a descriptor of the file drops its POSIX locks.
        held, self._held = self._held, None
        _release(held)

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            # Not the executor's "cannot schedule new futures after shutdown": say what it is.
            raise StoreError("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, _guarded(fn))

    def _check_files(self) -> None:
        if _file_identity(self.path) != self._identity:
            raise StoreUnavailable(
                f"the database file {self.path} was deleted or replaced while open; "
                "restart the proxy to recreate it"
            )
        if self._key_file is not None and not self._key_file.exists():
            raise StoreUnavailable(
                f"the key file {self._key_file} was deleted; the store will not open again "
                "without it"
            )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._check_files()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL does); a failed COMMIT leaves
            # the transaction open. Either way the original error is the one to report.
            if db.in_transaction:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    async def check_writable(self) -> None:
        def write() -> None:
            with self._write() as db:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('ready_probe', ?)", (str(time.time()),)
                )

        await self._run(write)

    async def sealed_setting(self, name: str, make: Callable[[], bytes]) -> bytes:
        row_name = SEALED_SETTING + name

        def read() -> bytes | None:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (row_name,)).fetchone()
            return None if row is None else self._rows.open_setting(name, row[0])

        found = await self._run(read)
        if found is not None:
            return found
        made = make()  # (outside the write: a key pair takes a moment to make)

        def write() -> bytes:
            with self._write() as db:
                row = db.execute("SELECT value FROM meta WHERE name = ?", (row_name,)).fetchone()
                if row is not None:
                    return self._rows.open_setting(name, row[0])  # another process was first
                db.execute(
                    "INSERT INTO meta VALUES (?, ?)",
                    (row_name, self._rows.seal_setting(name, made)),
                )
                return made

        return await self._run(write)

    # --- tokens ---

    async def get_token(self, credential_id: str) -> StoredToken | None:
        return await self._run(lambda: self._get_token(credential_id))

    def _get_token(self, credential_id: str) -> StoredToken | None:
        row = self._db.execute(
            "SELECT sealed, seed_fingerprint, needs_reauthorization, client_auth, updated_at, "
            "version FROM tokens WHERE credential_id = ?",
            (credential_id,),
        ).fetchone()
        if row is None:
            return None
        sealed, seed, reauth, client_auth, updated_at, version = row
        return self._rows.open_token_record(
            credential_id, sealed, seed, bool(reauth), client_auth, updated_at, version
        )

    async def put_token(
        self, credential_id: str, record: StoredToken, *, expected_version: int | None = None
    ) -> int:
        sealed = self._rows.seal_token(credential_id, record)
        expires_at = record.token.expires_at if record.token is not None else None

        def write() -> int:
            with self._write() as db:
                row = db.execute(
                    "SELECT version FROM tokens WHERE credential_id = ?", (credential_id,)
                ).fetchone()
                version = 0 if row is None else int(row[0])
                if expected_version is not None and version != expected_version:
                    raise StaleToken(credential_id)
                db.execute(
                    "INSERT OR REPLACE INTO tokens (credential_id, sealed, seed_fingerprint, "
                    "needs_reauthorization, client_auth, expires_at, updated_at, version) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        credential_id,
                        sealed,
                        record.seed_fingerprint,
                        int(record.needs_reauthorization),
                        record.client_auth,
                        expires_at,
                        time.time(),
                        version + 1,
                    ),
                )
                return version + 1

        return await self._run(write)

    async def delete_token(self, credential_id: str) -> None:
        def write() -> None:
            with self._write() as db:
                db.execute("DELETE FROM tokens WHERE credential_id = ?", (credential_id,))

        await self._run(write)

    async def acquire_refresh_lease(self, credential_id: str, owner: str, ttl: float) -> bool:
        def write() -> bool:
            now = time.time()
            with self._write() as db:
                row = db.execute(
                    "SELECT owner, expires_at FROM refresh_leases WHERE credential_id = ?",
                    (credential_id,),
                ).fetchone()
                if (
                    row is not None
                    and row[0] != owner
                    and row[1] > now
                    and not lease_owner_dead(row[0])
                ):
                    return False
                db.execute(
                    "INSERT OR REPLACE INTO refresh_leases VALUES (?, ?, ?)",
                    (credential_id, owner, now + ttl),
                )
                return True

        return await self._run(write)

    async def release_refresh_lease(self, credential_id: str, owner: str) -> None:
        def write() -> None:
            with self._write() as db:
                db.execute(
                    "DELETE FROM refresh_leases WHERE credential_id = ? AND owner = ?",
                    (credential_id, owner),
                )

        await self._run(write)

    # --- connections ---

    async def put_connection(self, connection: StoredConnection) -> None:
        sealed = self._rows.seal_connection(connection)

        def write() -> None:
            now = time.time()
            with self._write() as db:
                clash = db.execute(
                    "SELECT name = ? FROM connections WHERE template_id = ? AND id != ? "
                    "AND (name = ? OR external_id = ?)",
                    (
                        connection.name,
                        connection.template_id,
                        connection.id,
                        connection.name,
                        connection.external_id,
                    ),
                ).fetchone()
                if clash is not None:
                    raise StoreConflict("name" if clash[0] else "externalId")
                db.execute(
                    "INSERT INTO connections VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO "
                    "UPDATE SET template_id = excluded.template_id, name = excluded.name, "
                    "external_id = excluded.external_id, sealed = excluded.sealed, "
                    "updated_at = excluded.updated_at",
                    (
                        connection.id,
                        connection.template_id,
                        connection.name,
                        connection.external_id,
                        sealed,
                        now,
                        now,
                    ),
                )
                db.execute(_BUMP_REVISION)

        await self._run(write)

    def _connection(self, row: tuple[Any, ...]) -> StoredConnection | None:
        return self._rows.open_connection(*row)  # SELECT *: the columns in their order

    async def get_connection(self, connection_id: str) -> StoredConnection | None:
        def read() -> StoredConnection | None:
            row = self._db.execute(
                "SELECT * FROM connections WHERE id = ?", (connection_id,)
            ).fetchone()
            return None if row is None else self._connection(row)

        return await self._run(read)

    async def delete_connection(self, connection_id: str) -> bool:
        def write() -> bool:
            with self._write() as db:
                cursor = db.execute("DELETE FROM connections WHERE id = ?", (connection_id,))
                if cursor.rowcount == 0:
                    return False
                db.execute(_BUMP_REVISION)
                return True

        return await self._run(write)

    async def list_connections(self) -> list[StoredConnection]:
        def read() -> list[StoredConnection]:
            rows = self._db.execute("SELECT * FROM connections ORDER BY created_at, id")
            return [c for row in rows.fetchall() if (c := self._connection(row)) is not None]

        return await self._run(read)

    async def connections_revision(self) -> int:
        def read() -> int:
            row = self._db.execute("SELECT revision FROM connections_revision").fetchone()
            return int(row[0])

        return await self._run(read)

    async def watch_connections(self, changed: Callable[[], None]) -> bool:
        return False  # a file has no push: the workers poll `connections_revision`

    # --- OAuth flow state ---

    async def put_flow(self, flow: FlowState) -> None:
        state_hash = self.fingerprint(flow.state)
        sealed = self._rows.seal_flow(state_hash, flow)

        def write() -> None:
            with self._write() as db:
                # Expired flows are dropped on the way: the table never grows without bound.
                db.execute("DELETE FROM flow_states WHERE expires_at <= ?", (time.time(),))
                db.execute(
                    "INSERT OR REPLACE INTO flow_states VALUES (?, ?, ?)",
                    (state_hash, sealed, flow.expires_at),
                )

        await self._run(write)

    async def take_flow(self, state: str, now: float | None = None) -> FlowState | None:
        state_hash = self.fingerprint(state)

        def write() -> tuple[bytes, float] | None:
            with self._write() as db:
                row = db.execute(
                    "DELETE FROM flow_states WHERE state_hash = ? RETURNING sealed, expires_at",
                    (state_hash,),
                ).fetchone()
                return None if row is None else (row[0], row[1])

        taken = await self._run(write)
        return None if taken is None else self._rows.open_flow(state, state_hash, *taken, now)


def _check_creatable(db_path: Path) -> None:
    """Raise the OSError `open` would meet creating `db_path` (its directories, then the file),
    trying it in a temporary name that is removed at once."""
    existing = db_path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        code = errno.EEXIST if existing == db_path.parent else errno.ENOTDIR
        raise OSError(code, os.strerror(code))
    if existing == db_path.parent:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".signing-proxy-check-")
        os.close(fd)
        os.unlink(probe)
    else:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".signing-proxy-check-"))


def _release(held: int | None) -> None:
    if held is not None:
        os.close(held)


def settle_interrupted_rotation(db: sqlite3.Connection, key_file: Path, key: bytes) -> bytes:
    """The key that opens the store when a rotation was killed half-way; else `key`.

    `rotate-key` writes the new key to `<key file>.new`, re-seals in one transaction, then
    renames the new key over the old. Killed before its commit, SQLite rolled the re-sealing
    back and the `.new` file is dropped; killed after it, the `.new` file holds the key and the
    rename is completed. Only with the file held (holders.py): no rotation runs meanwhile.
    """
    pending = pending_key_path(key_file)
    if not pending.exists():
        return key
    row = db.execute("SELECT value FROM meta WHERE name = 'fingerprint_key'").fetchone()
    if row is None or _opens(key, row[0]):
        pending.unlink(missing_ok=True)
        log.warning("store: %s was left by an interrupted key rotation; removed", pending)
        return key
    new = load_or_create_key_file(pending)
    if not _opens(new, row[0]):
        return key  # neither opens: the caller says that the key does not match
    os.replace(pending, key_file)
    fsync_directory(key_file.parent)
    log.warning("store: an interrupted key rotation was completed; the key is in %s", key_file)
    return new


def _opens(key: bytes, sealed_fingerprint_key: bytes) -> bool:
    try:
        SealedRows(Sealer(key)).open_fingerprint_key(sealed_fingerprint_key)
    except StoreError:
        return False
    return True


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (the rename itself is atomic, not yet on disk)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _guarded(fn: Callable[[], T]) -> Callable[[], T]:
    # SQLite's and the OS's failures become StoreUnavailable with their (value-free) message;
    # StoreError (a conflict, a bad seal) passes as it is.
    def call() -> T:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from None
        except OSError as exc:
            raise StoreUnavailable(exc.strerror or type(exc).__name__) from None

    return call


def _read_only_hint(db_path: Path) -> str:
    try:
        read_only = bool(os.statvfs(db_path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return ""
    return " (its file system is mounted read-only)" if read_only else ""


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: autocommit; transactions are the explicit BEGIN IMMEDIATE above.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    if path.exists():
        os.chmod(path, 0o600)
    return db


def schema_version(db: sqlite3.Connection) -> int:
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations newer than the database, each in its own transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(db)
        if current > SCHEMA_VERSION:
            raise newer_schema(current, SCHEMA_VERSION)
        for version, script in MIGRATIONS:
            if version <= current:
                continue
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version VALUES (?)", (version,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _fingerprint_key(db: sqlite3.Connection, rows: SealedRows) -> bytes:
    # The fingerprint key is random per database and sealed under store.key, so rotating
    # store.key keeps every fingerprint valid. Opening it also proves the key is the right one.
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT value FROM meta WHERE name = 'fingerprint_key'").fetchone()
        if row is None:
            key = os.urandom(KEY_BYTES)
            db.execute(
                "INSERT INTO meta VALUES ('fingerprint_key', ?)", (rows.seal_fingerprint_key(key),)
            )
        else:
            key = rows.open_fingerprint_key(cast(bytes, row[0]))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return key


def repair(db: sqlite3.Connection, rows: SealedRows) -> None:
    """Apply the value repairs newer than the database (`repairs.py`) in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        found = db.execute("SELECT value FROM meta WHERE name = ?", (REPAIRS_ROW,)).fetchone()
        todo = pending(parse_applied(None if found is None else found[0]))
        if todo:
            changed = False
            for id_, sealed in db.execute("SELECT id, sealed FROM connections").fetchall():
                try:
                    document = rows.open_document(id_, sealed)
                except SealError:
                    continue  # reported where the connections are read; repaired if ever
                if repaired(document, todo):
                    db.execute(
                        "UPDATE connections SET sealed = ? WHERE id = ?",
                        (rows.seal_document(id_, document), id_),
                    )
                    changed = True
            if changed:
                db.execute(_BUMP_REVISION)
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                (REPAIRS_ROW, str(LAST_REPAIR).encode("ascii")),
            )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def rotate_key(path: str | Path, old_key: bytes, new_key: bytes) -> int:
    """Re-seal every secret under `new_key` in one transaction; return the values re-sealed.

    The caller holds the file alone (`rotate.py`, `holders.py`): another process would keep
    writing under the old key.
    """
    old, new = Sealer(old_key), Sealer(new_key)
    db = connect(Path(path))
    try:
        migrate(db)
        count = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for table, id_column, column, prefix in SEALED_COLUMNS:
                rows = db.execute(
                    f"SELECT {id_column}, {column} FROM {table} WHERE {column} IS NOT NULL"
                ).fetchall()
                for row_key, sealed in rows:
                    if not is_sealed(table, row_key):
                        continue
                    db.execute(
                        f"UPDATE {table} SET {column} = ? WHERE {id_column} = ?",
                        (reseal(old, new, prefix + row_key, sealed), row_key),
                    )
                    count += 1
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return count
    finally:
        db.close()
