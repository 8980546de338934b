"""The ids of a connection, its credentials and their scheme configs: ULIDs, as the seeds' are.

An id given in the input is kept as given. One left out (or `""`, a Go zero value) is made once: for
a connection created through the management API a fresh ULID, stored with it; for a connection of
proxy.yaml a ULID derived from its name and position, so it is the same at every start
(docs/design.md "Ids"). Each scheme sub-object (`apiKey`, `oauth2`, ... and the placeholder `none`,
`basicAuth`, `certificate`) gets its seed `id` the same way, derived from its credential's id.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable

from ulid import ULID

from . import models as m

# Which field of an `AuthSchemeConfig` holds the sub-object its `type` selects.
SCHEME_FIELDS = {
    "none": "none",
    "api-key": "api_key",
    "basic-auth": "basic_auth",
    "bearer": "bearer",
    "hmac": "hmac",
    "oauth1": "oauth1",
    "oauth2": "oauth2",
    "certificate": "certificate",
    "http-signature": "http_signature",
    "aws-sigv4": "aws_sig_v4",
    "jwt-bearer": "jwt_bearer",
    "secret": "secret",
}
_NAMESPACE = "signing-proxy/ids/v2"


def new_id() -> str:
    """A fresh ULID (time-ordered, 80 random bits, so still unguessable)."""
    return str(ULID())


def derived_id(*parts: str) -> str:
    """A ULID that is a function of `parts` (128 bits of their SHA-256): stable across starts."""
    digest = hashlib.sha256("\x1f".join((_NAMESPACE, *parts)).encode()).digest()
    return str(ULID.from_bytes(digest[:16]))


def with_ids(model: m.Connection, make: Callable[..., str] = derived_id) -> m.Connection:
    """`model` with an id on itself, on each credential entry and on each scheme sub-object;
    `make(kind, *parts)` makes the missing ones. `model` itself when none is missing."""
    connection_id = model.id or make("connection", model.name)
    entries = []
    for index, entry in enumerate(model.credentials):
        credential_id = (
            entry.id or entry.credential.id or make("credential", connection_id, str(index))
        )
        auth = with_scheme_id(entry.auth_scheme_config, make, "scheme", credential_id)
        if credential_id != entry.id or auth is not entry.auth_scheme_config:
            entry = entry.model_copy(update={"id": credential_id, "auth_scheme_config": auth})
        entries.append(entry)
    if connection_id == model.id and all(
        a is b for a, b in zip(entries, model.credentials, strict=True)
    ):
        return model
    return model.model_copy(update={"id": connection_id, "credentials": entries})


def with_scheme_id(
    auth: m.AuthSchemeConfig, make: Callable[..., str], *parts: str
) -> m.AuthSchemeConfig:
    """`auth` whose selected sub-object exists and has an id (`make(*parts)` when it has none)."""
    field = SCHEME_FIELDS[auth.type]
    sub: m.SchemeBase | None = getattr(auth, field)
    if sub is not None and sub.id:
        return auth
    sub = (sub or m.SchemeBase()).model_copy(update={"id": make(*parts)})
    return auth.model_copy(update={field: sub})


# Before ids were ULIDs, the file's were UUIDv5 in this namespace: the store may still hold
# tokens under them (`legacy_token_ids`).
_LEGACY_NAMESPACE = uuid.UUID("6f1c4c52-3a55-4b36-9b0c-2f4f5e8a9d10")


def _legacy_id(*parts: str) -> str:
    return str(uuid.uuid5(_LEGACY_NAMESPACE, "\x1f".join(parts)))


def legacy_token_ids(model: m.Connection) -> dict[str, str]:
    """Credential id → the UUID an earlier version derived for it, for each credential of a
    file connection whose id is derived (`with_ids`), so its stored token can be carried over."""
    assert model.id is not None
    derived_connection = model.id == derived_id("connection", model.name)
    old_connection = _legacy_id("connection", model.name) if derived_connection else model.id
    out = {}
    for index, entry in enumerate(model.credentials):
        if entry.id == derived_id("credential", model.id, str(index)):
            out[entry.id] = _legacy_id("credential", old_connection, str(index))
    return out
