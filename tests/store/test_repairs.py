"""A credential's `expiresAt` is only ever what a person wrote: stores written by the releases
that copied the access token's expiry into it are repaired when opened (proxy/store/repairs.py).

`tests/data/stores/pre-expiry-fix.db` (with its key file) was written by signing-proxy at commit
34524eb, before the fix, through its own admin API against tests/oauth_server.py: four
connections of one `oauth2` template — `by-flow` (the connect flow's callback), `by-code` (an
`oauth2-code` credential exchanged at create), `by-get` (that connection's GET body POSTed back)
and `by-user` (the same, with a credential `expiresAt` a person chose, 2031-05-06T07:08:09Z).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from proxy.config import models as m
from proxy.connections.templates import Templates, compile_stored, compile_template, stored_model
from proxy.store import StoredConnection, open_store
from proxy.store.crypto import new_key_text
from proxy.store.repairs import REPAIRS_ROW, token_expiry_as_credential_expiry
from proxy.store.sqlite import SqliteStore
from tests.pg import PgServer

FIXTURE = Path(__file__).parent.parent / "data" / "stores" / "pre-expiry-fix.db"
USER_WRITTEN = "2031-05-06T07:08:09Z"


def copy_fixture(tmp_path: Path) -> Path:
    db = tmp_path / "proxy.db"
    shutil.copy(FIXTURE, db)
    key = shutil.copy(FIXTURE.with_name(FIXTURE.name + ".key"), tmp_path / "proxy.db.key")
    Path(key).chmod(0o600)  # git keeps no modes; the store refuses a key file others can read
    return db


def credential_of(record: StoredConnection) -> dict[str, Any]:
    credential: dict[str, Any] = record.document["credentials"][0]["credential"]
    return credential


def test_the_fixture_holds_the_old_copies(tmp_path: Path) -> None:
    # Read without the store (which would repair it): the defect is really in the file.
    db = copy_fixture(tmp_path)
    database = sqlite3.connect(db)
    try:
        assert database.execute("SELECT version FROM schema_version").fetchone() == (3,)
        assert database.execute("SELECT count(*) FROM connections").fetchone() == (4,)
        assert (
            database.execute("SELECT value FROM meta WHERE name = ?", (REPAIRS_ROW,)).fetchone()
            is None
        )
    finally:
        database.close()


async def test_an_old_sqlite_store_is_repaired_on_open(tmp_path: Path) -> None:
    db = copy_fixture(tmp_path)
    store = SqliteStore.open(db)
    try:
        records = {c.name: c for c in await store.list_connections()}
        assert sorted(records) == ["by-code", "by-flow", "by-get", "by-user"]
        for name in ("by-code", "by-flow", "by-get"):
            credential = credential_of(records[name])
            assert "expiresAt" not in credential, name
            assert credential["data"]["oauth2Token"]["expiresAt"]  # the token's stays
        assert credential_of(records["by-user"])["expiresAt"] == USER_WRITTEN
        revision = await store.connections_revision()
    finally:
        await store.close()
    # Once: reopening changes nothing more (the revision would move).
    again = SqliteStore.open(db)
    try:
        assert await again.connections_revision() == revision
    finally:
        await again.close()


async def test_repaired_connections_compile_without_an_expiry(tmp_path: Path) -> None:
    db = copy_fixture(tmp_path)
    store = SqliteStore.open(db)
    try:
        records = await store.list_connections()
    finally:
        await store.close()
    template_doc = records[0].document["credentials"][0]["authSchemeConfig"]
    template, _ = compile_template(
        m.Template.model_validate(
            {
                "id": "gdrive",
                "route": "/gdrive",
                "baseUrl": records[0].document["baseUrl"],
                "authSchemeConfigs": [template_doc],
            }
        )
    )
    assert template is not None
    templates = Templates([template])
    for record in records:
        found = stored_model(record, templates)
        assert found is not None, record.name
        compiled = compile_stored(record, found[1])
        assert compiled is not None, record.name
        # The data plane answers credential_expired only after a person's expiresAt.
        if record.name == "by-user":
            assert compiled.expires_at is not None
        else:
            assert compiled.expires_at is None, record.name


async def test_an_old_postgresql_store_is_repaired_on_open(
    tmp_path: Path, postgres: PgServer
) -> None:
    # The documents the old release wrote, put into a PostgreSQL store as it would have:
    # the repair marker removed, as in a store that release had written.
    url, key = postgres.new_database(), new_key_text()
    store = open_store(None, key, url=url)
    try:
        for record in await _unrepaired(tmp_path):
            await store.put_connection(record)
    finally:
        await store.close()
    postgres.sql(f"DELETE FROM meta WHERE name = '{REPAIRS_ROW}'", url.rsplit("/", 1)[1])
    reopened = open_store(None, key, url=url)
    try:
        records = {c.name: c for c in await reopened.list_connections()}
        for name in ("by-code", "by-flow", "by-get"):
            assert "expiresAt" not in credential_of(records[name]), name
        assert credential_of(records["by-user"])["expiresAt"] == USER_WRITTEN
    finally:
        await reopened.close()


async def _unrepaired(tmp_path: Path) -> list[StoredConnection]:
    """The fixture's connections as written (read with the repair number set back)."""
    db = tmp_path / "raw.db"
    shutil.copy(FIXTURE, db)
    shutil.copy(FIXTURE.with_name(FIXTURE.name + ".key"), tmp_path / "raw.db.key")
    (tmp_path / "raw.db.key").chmod(0o600)
    database = sqlite3.connect(db)
    database.execute("INSERT INTO meta VALUES (?, ?)", (REPAIRS_ROW, b"999"))
    database.commit()
    database.close()
    store = SqliteStore.open(db)
    try:
        records = await store.list_connections()
    finally:
        await store.close()
    assert all(credential_of(r).get("expiresAt") for r in records)
    return records


def test_the_repair_rule() -> None:
    def document(credential: dict[str, Any]) -> dict[str, Any]:
        return {"credentials": [{"credential": credential}]}

    token = {"oauth2Token": {"accessToken": "a", "expiresAt": "2026-12-07T14:16:45Z"}}
    copied = document(
        {"type": "oauth2-token", "expiresAt": "2026-12-07T14:16:45+00:00", "data": token}
    )
    assert token_expiry_as_credential_expiry(copied)
    assert "expiresAt" not in copied["credentials"][0]["credential"]
    for kept in (
        document({"type": "oauth2-token", "expiresAt": USER_WRITTEN, "data": token}),
        document({"type": "string", "expiresAt": "2026-12-07T14:16:45Z", "data": {}}),
        document({"type": "oauth2-token", "data": token}),
    ):
        before = repr(kept)
        assert not token_expiry_as_credential_expiry(kept)
        assert repr(kept) == before
