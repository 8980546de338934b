"""What only the SQLite store has: encryption at rest, the key file, migrations, key rotation."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from proxy.messages import TokenSet
from proxy.store import StoredConnection, StoredToken, StoreError, open_store
from proxy.store.crypto import Sealer, SealError, parse_key
from proxy.store.sqlite import SCHEMA_VERSION, key_file_path, rotate_key
from tests.store.rotation import check_rotation

CANARY = "canary-sqlite-refresh-93c1d"


def all_bytes(db: Path) -> bytes:
    # The database and its WAL: a secret must be in neither.
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


async def test_secrets_are_encrypted_at_rest(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = open_store(str(db))
    await store.put_token("c1", StoredToken(TokenSet(CANARY, refresh_token=CANARY + "-r")))
    document = {"credentials": [{"value": CANARY + "-database"}]}
    await store.put_connection(StoredConnection("id1", "tpl", "n", None, document))
    await store.close()
    assert CANARY.encode() not in all_bytes(db)
    reopened = open_store(str(db))
    got = await reopened.get_token("c1")
    assert got is not None and got.token is not None and got.token.access_token == CANARY
    await reopened.close()


async def test_generated_key_file_is_private(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "state.db"
    store = open_store(str(db))
    await store.close()
    key_file = key_file_path(db)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(parse_key(key_file.read_text())) == 32


async def test_loose_key_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    await open_store(str(db)).close()
    os.chmod(key_file_path(db), 0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        open_store(str(db))


async def test_wrong_key_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    key_a = base64.b64encode(os.urandom(32)).decode()
    key_b = base64.b64encode(os.urandom(32)).decode()
    await open_store(str(db), key_a).close()
    with pytest.raises(StoreError, match="does not match") as caught:
        open_store(str(db), key_b)
    assert key_a not in str(caught.value) and key_b not in str(caught.value)
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(StoreError, match="store.key"):
            open_store(str(db), bad)


async def test_schema_version_recorded_and_newer_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    await open_store(str(db)).close()
    with sqlite3.connect(db) as database:
        assert database.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        database.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        open_store(str(db))


async def test_sealed_value_bound_to_its_row() -> None:
    sealer = Sealer(os.urandom(32))
    sealed = sealer.seal(b"secret", "token:a")
    assert sealer.open(sealed, "token:a") == b"secret"
    with pytest.raises(SealError):
        sealer.open(sealed, "token:b")  # copied into another row: refused
    # Independent check of the format: version byte, 12-byte nonce, AES-GCM with the row id.
    key = os.urandom(32)
    sealed = Sealer(key).seal(b"x", "row")
    assert AESGCM(key).decrypt(sealed[1:13], sealed[13:], b"row") == b"x"


async def test_rotate_key(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    await check_rotation(
        lambda key: open_store(str(db), key), lambda old, new: rotate_key(db, old, new), CANARY
    )


async def test_rotate_key_command_with_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxy.cli import main

    db = tmp_path / "state.db"
    store = open_store(str(db))
    await store.put_token("c1", StoredToken(TokenSet(CANARY)))
    await store.close()
    old_key = key_file_path(db).read_text()
    config = tmp_path / "proxy.yaml"
    config.write_text(f"store: {{path: {db}}}\n")
    assert main(["rotate-key", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    new_key = key_file_path(db).read_text()
    assert new_key != old_key and new_key.strip() not in out and "2 value(s)" in out
    assert stat.S_IMODE(key_file_path(db).stat().st_mode) == 0o600
    store = open_store(str(db))  # opens with the new key file
    got = await store.get_token("c1")
    assert got is not None and got.token is not None and got.token.access_token == CANARY
    await store.close()


async def test_rotate_key_command_with_store_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxy.cli import main

    db = tmp_path / "state.db"
    old_text = base64.b64encode(os.urandom(32)).decode()
    new_text = base64.b64encode(os.urandom(32)).decode()
    await open_store(str(db), old_text).close()
    config = tmp_path / "proxy.yaml"
    config.write_text(f"store: {{path: {db}, key: '{old_text}'}}\n")
    assert main(["rotate-key", "--config", str(config)]) == 1  # no new key given
    monkeypatch.setenv("SIGNING_PROXY_NEW_STORE_KEY", new_text)
    assert main(["rotate-key", "--config", str(config)]) == 0
    await open_store(str(db), new_text).close()
