"""Encryption at rest for the store (docs/security.md): AES-256-GCM with the row id as associated
data.

Each sealed value is `version byte | 12-byte random nonce | ciphertext+tag`. Binding the row id
as associated data (NIST SP 800-38D §5.2.1.1: "additional authenticated data") means a sealed
value copied into another row fails to open instead of silently becoming another credential's
secret. Random 96-bit nonces are fine for the write volume of a proxy's token table (far below
the 2^32 messages per key SP 800-38D §8.3 allows).

The key is 32 random bytes, given as base64 in `store.key`, or kept in a key file (mode 0600)
beside the database when none is given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import StoreError

KEY_BYTES = 32
NONCE_BYTES = 12
_VERSION = b"\x01"


class SealError(StoreError):
    """A sealed value does not open: wrong key, or moved to another row, or corrupted."""


def parse_key(text: str) -> bytes:
    """Decode a base64 (standard or URL-safe) 32-byte key; the message never holds the value."""
    try:
        raw = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise StoreError("store.key: not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise StoreError(f"store.key: must decode to {KEY_BYTES} bytes, not {len(raw)}")
    return raw


def new_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def load_or_create_key_file(path: Path) -> bytes:
    """Read the key file at `path`, creating it (mode 0600, exclusive) when missing.

    Refuses a key file that group or others may read: like ssh with a private key, a key anyone
    on the host can read protects nothing, and saying so beats pretending.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_key_file(path)
    try:
        os.write(fd, (new_key_text() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return parse_key(path.read_text(encoding="ascii"))


def read_key_file(path: Path) -> bytes:
    """The key in the existing key file at `path`, refused when group or others may read it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise StoreError(
            f"{path}: key file mode is {mode:o}; it must be readable by its owner only "
            f"(chmod 600 {path})"
        )
    return parse_key(path.read_text(encoding="ascii"))


class Sealer:
    """AES-GCM seal/open under one key, plus a keyed fingerprint; `repr()` shows no key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise StoreError(f"store key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Sealer(<key>)"

    def seal(self, plaintext: bytes, row_id: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, row_id.encode())

    def open(self, sealed: bytes, row_id: str) -> bytes:
        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != _VERSION:
            raise SealError(f"sealed value of {row_id!r} is malformed")
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, row_id.encode())
        except InvalidTag:
            raise SealError(
                f"sealed value of {row_id!r} does not open: wrong store.key, or tampered"
            ) from None


def fingerprint(key: bytes, secret: str) -> str:
    """HMAC-SHA256 of `secret` under `key`, hex; without the key it reveals nothing useful."""
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()
