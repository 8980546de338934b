"""Repairs of stored values that earlier releases wrote wrongly, applied once per store when it
is opened (after the schema migrations, under the store's key).

Numbered like the migrations, append only; the number of the last one applied is kept in the
`meta` row `repairs` (plain: it is no secret). Each repair is a pure function of one sealed
value's plain JSON, so SQLite and PostgreSQL apply the same logic; the drivers only read, reseal
and write the rows in one transaction.

1. `token_expiry_as_credential_expiry`: connections created through the management API by the
   connect flow, an `oauth2-code` exchange, or a GET body POSTed back got the access token's
   expiry copied into the credential's own `expiresAt` — which seed 001 defines as when the
   credential is deleted, so the connection stopped at its first token's expiry (502
   `credential_expired`) instead of refreshing. A credential `expiresAt` equal to the
   credential's own `data.oauth2Token.expiresAt` is that copy and is removed; any other value
   is what a person wrote and stays (docs/admin-api.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

REPAIRS_ROW = "repairs"


def token_expiry_as_credential_expiry(document: dict[str, Any]) -> bool:
    """Remove, in place, each credential `expiresAt` that is a copy of its token's expiry;
    True when the document changed."""
    changed = False
    for entry in document.get("credentials") or []:
        credential = entry.get("credential") if isinstance(entry, dict) else None
        if not isinstance(credential, dict) or credential.get("type") != "oauth2-token":
            continue
        token = ((credential.get("data") or {}).get("oauth2Token")) or {}
        if _same_moment(credential.get("expiresAt"), token.get("expiresAt")):
            del credential["expiresAt"]
            changed = True
    return changed


def _same_moment(a: Any, b: Any) -> bool:
    if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
        return False
    try:
        return _instant(a) == _instant(b)
    except ValueError:
        return False


def _instant(text: str) -> datetime:
    # RFC 3339 as the API wrote it (`Z` for UTC); the store does not depend on the schemes.
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


# (number, repair of one connection document). Append only.
CONNECTION_REPAIRS: tuple[tuple[int, Callable[[dict[str, Any]], bool]], ...] = (
    (1, token_expiry_as_credential_expiry),
)
LAST_REPAIR = CONNECTION_REPAIRS[-1][0]


def pending(applied: int) -> list[Callable[[dict[str, Any]], bool]]:
    """The repairs newer than `applied`, in order."""
    return [repair for number, repair in CONNECTION_REPAIRS if number > applied]


def repaired(document: dict[str, Any], repairs: list[Callable[[dict[str, Any]], bool]]) -> bool:
    """Apply `repairs` to `document` in place; True when any changed it."""
    changed = False
    for repair in repairs:
        changed = repair(document) or changed
    return changed


def parse_applied(value: bytes | None) -> int:
    return 0 if value is None else int(bytes(value).decode("ascii"))
