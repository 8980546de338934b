"""`signing-proxy rotate-key`: re-seal every secret of the store under a new key
(docs/security.md).

Three set-ups:
- `store.url` (PostgreSQL): as with `store.key` below; every replica stopped.
- `store.key` given: the new key comes from `$SIGNING_PROXY_NEW_STORE_KEY` (never a command-line
  argument, which `ps` shows); after the rotation, put it into `store.key`'s source.
- key file beside the database: a new key is generated and written to `<db>.key.new` (mode
  0600) *before* the database changes, then renamed over `<db>.key` once the re-sealing has
  committed. A crash in between leaves both files; the `.new` one then holds the valid key.

Run it with the proxy stopped: a running proxy would keep writing under the old key.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config.models import StoreSettings
from . import StoreError
from .crypto import load_or_create_key_file, new_key_text, parse_key
from .sqlite import key_file_path, rotate_key

NEW_KEY_ENV = "SIGNING_PROXY_NEW_STORE_KEY"


def rotate_store_key(settings: StoreSettings) -> str:
    """Rotate the key of the store `settings` names; return a one-line report (no key in it).

    Raises:
        StoreError: no database, old key does not open it, bad or missing new key.
    """
    if settings.url is not None:
        return _rotate_postgres(settings)
    db = Path(settings.path)
    if not db.exists():
        raise StoreError(f"{db}: no store to rotate")
    if settings.key is not None:
        old = parse_key(settings.key.get_secret_value())
        new_text = os.environ.get(NEW_KEY_ENV)
        if not new_text:
            raise StoreError(f"store.key is set: give the new key in ${NEW_KEY_ENV}")
        count = rotate_key(db, old, parse_key(new_text))
        return f"{db}: {count} value(s) re-sealed; now set store.key to the new key"
    key_file = key_file_path(db)
    old = load_or_create_key_file(key_file)
    pending = key_file.with_name(key_file.name + ".new")
    if pending.exists():
        raise StoreError(f"{pending} exists: a rotation was interrupted; check which key opens")
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
    return f"{db}: {count} value(s) re-sealed; new key in {key_file}"


def _rotate_postgres(settings: StoreSettings) -> str:
    from .postgres import rotate_key as rotate_postgres

    assert settings.url is not None and settings.key is not None  # the config requires both
    new_text = os.environ.get(NEW_KEY_ENV)
    if not new_text:
        raise StoreError(f"store.url is set: give the new key in ${NEW_KEY_ENV}")
    old = parse_key(settings.key.get_secret_value())
    count = rotate_postgres(settings.url.get_secret_value(), old, parse_key(new_text))
    return f"PostgreSQL store: {count} value(s) re-sealed; now set store.key to the new key"
