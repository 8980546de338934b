"""`signing-proxy rotate-key`: re-seal every secret of the store under a new key
(docs/security.md).

It refuses while any process serves from the store (`holders.py`: learnt from the store itself,
on SQLite and on PostgreSQL), and holds the store alone while it runs: a proxy that starts
meanwhile waits, then opens under the key the rotation left.

Three set-ups:
- `store.url` (PostgreSQL): the new key comes from `$SIGNING_PROXY_NEW_STORE_KEY`; after the
  rotation, put it into `store.key`'s source.
- `store.key` given: the same, for SQLite (never a command-line argument, which `ps` shows).
- key file beside the database: a new key is generated and written to `<db>.key.new` (mode
  0600) *before* the database changes, then renamed over `<db>.key` once the re-sealing has
  committed. A crash in between leaves both files; the next open of the store (a proxy, or
  rotate-key again) keeps the one that opens the database and completes or drops the rotation.

The re-sealing is one transaction on either database: killed half-way, nothing changed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config.models import StoreSettings
from . import StoreError, require_postgres_driver
from .crypto import load_or_create_key_file, new_key_text, parse_key
from .holders import hold_exclusive
from .sqlite import (
    connect,
    fsync_directory,
    key_file_path,
    pending_key_path,
    rotate_key,
    settle_interrupted_rotation,
)

NEW_KEY_ENV = "SIGNING_PROXY_NEW_STORE_KEY"


def rotate_store_key(settings: StoreSettings) -> str:
    """Rotate the key of the store `settings` names; return a one-line report (no key in it).

    Raises:
        StoreInUse: a process serves from the store.
        StoreError: no database, old key does not open it, bad or missing new key.
    """
    if settings.url is not None:
        return _rotate_postgres(settings)
    db = Path(settings.path)
    if not db.exists():
        raise StoreError(f"{db}: no store to rotate")
    held = hold_exclusive(db)
    try:
        return _rotate_sqlite(db, settings)
    finally:
        os.close(held)  # after every SQLite connection of the rotation is closed


def _rotate_sqlite(db: Path, settings: StoreSettings) -> str:
    if settings.key is not None:
        old = parse_key(settings.key.get_secret_value())
        count = rotate_key(db, old, _new_key_from_env("store.key"))
        return f"{db}: {count} value(s) re-sealed; now set store.key to the new key"
    key_file = key_file_path(db)
    database = connect(db)
    try:
        old = settle_interrupted_rotation(database, key_file, load_or_create_key_file(key_file))
    finally:
        database.close()
    pending = pending_key_path(key_file)
    new_text = new_key_text()
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (new_text + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        count = rotate_key(db, old, parse_key(new_text))
    except BaseException:
        pending.unlink()
        raise
    os.replace(pending, key_file)
    fsync_directory(key_file.parent)
    return f"{db}: {count} value(s) re-sealed; new key in {key_file}"


def _new_key_from_env(setting: str) -> bytes:
    new_text = os.environ.get(NEW_KEY_ENV)
    if not new_text:
        raise StoreError(f"{setting} is set: give the new key in ${NEW_KEY_ENV}")
    return parse_key(new_text)


def _rotate_postgres(settings: StoreSettings) -> str:
    require_postgres_driver()
    from .postgres import rotate_key as rotate_postgres

    assert settings.url is not None and settings.key is not None  # the config requires both
    new = _new_key_from_env("store.url")
    old = parse_key(settings.key.get_secret_value())
    count = rotate_postgres(settings.url.get_secret_value(), old, new)
    return f"PostgreSQL store: {count} value(s) re-sealed; now set store.key to the new key"
