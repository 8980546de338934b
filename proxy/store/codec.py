"""How the backends turn secret-bearing values into the bytes they seal (`crypto.py`), and under
which row id: one format for SQLite and PostgreSQL, so a value means the same thing in either.
Only the drivers' own work (SQL, connections, transactions) stays in `sqlite.py`/`postgres.py`.

A row whose value does not open (sealed under another key, or damaged) is logged by its id, once
per process, and left out: the rest of the store keeps serving. An unreadable connection is not
served (as if absent); an unreadable token is a credential that needs re-authorisation (its newest
refresh token is lost with the key it was sealed under); an unreadable flow state is unknown."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ..messages import TokenSet
from . import ClientAuthStyle, FlowState, StoredConnection, StoredToken, StoreError, TokenHistory
from .crypto import Sealer, SealError

log = logging.getLogger("signing_proxy.store")
_reported: set[str] = set()


def report_unreadable(row: str, consequence: str) -> None:
    """Log once per process that `row` does not open; names the row, never a value."""
    if row in _reported:
        return
    _reported.add(row)
    log.error(
        "store: %s does not open under store.key (sealed under another key, or damaged); %s",
        row,
        consequence,
        extra={"event": "store_row_unreadable", "row": row},
    )


def token_to_json(token: TokenSet | None, history: TokenHistory | None = None) -> bytes:
    """The token (absent: `access_token` null) and the history of its credential; values
    written before the history existed read back with an empty one."""
    document: dict[str, Any] = {"access_token": None}
    if token is not None:
        document = {
            "access_token": token.access_token,
            "token_type": token.token_type,
            "refresh_token": token.refresh_token,
            "expires_at": token.expires_at,
            "scope": token.scope,
            "lifetime": token.lifetime,
        }
    if history is not None and (history.seeds or history.issued):
        document["history"] = {"seeds": list(history.seeds), "issued": list(history.issued)}
    return json.dumps(document).encode()


def token_from_json(raw: bytes) -> tuple[TokenSet | None, TokenHistory]:
    data = json.loads(raw)
    kept = data.get("history") or {}
    history = TokenHistory(tuple(kept.get("seeds", ())), tuple(kept.get("issued", ())))
    if data["access_token"] is None:
        return None, history
    token = TokenSet(
        access_token=data["access_token"],
        token_type=data["token_type"],
        refresh_token=data["refresh_token"],
        expires_at=data["expires_at"],
        scope=data["scope"],
        lifetime=data.get("lifetime"),
    )
    return token, history


def flow_to_json(flow: FlowState) -> bytes:
    """The flow's secrets and choices; `state` itself is not kept (the row is keyed by its
    fingerprint) nor `expires_at` (a plain column, for the clean-up)."""
    document: dict[str, Any] = {
        "code_verifier": flow.code_verifier,
        "template_id": flow.template_id,
        "organisation_id": flow.organisation_id,
        "redirect_uri": flow.redirect_uri,
        "connection_name": flow.connection_name,
        "external_id": flow.external_id,
        "extra": dict(flow.extra),
    }
    return json.dumps(document).encode()


def flow_from_json(raw: bytes, state: str, expires_at: float) -> FlowState:
    data = json.loads(raw)
    return FlowState(
        state=state,
        code_verifier=data["code_verifier"],
        template_id=data["template_id"],
        organisation_id=data["organisation_id"],
        redirect_uri=data["redirect_uri"],
        expires_at=expires_at,
        connection_name=data["connection_name"],
        external_id=data["external_id"],
        extra=data["extra"],
    )


FINGERPRINT_ROW = "meta:fingerprint_key"
# `meta` rows named with this prefix hold sealed store-wide settings (`sealed_setting`: the
# forward proxy's CA).
SEALED_SETTING = "sealed:"
# (table, key column, sealed column, row id prefix): every sealed value, for a key rotation. In
# `meta` only the fingerprint key and the sealed settings are sealed (the readiness probe's row
# is a plain timestamp).
SEALED_COLUMNS = (
    ("tokens", "credential_id", "sealed", "token:"),
    ("connections", "id", "sealed", "connection:"),
    ("flow_states", "state_hash", "sealed", "flow:"),
    ("meta", "name", "value", "meta:"),
)


def is_sealed(table: str, key: str) -> bool:
    """Whether row `key` of `table` (one of `SEALED_COLUMNS`) holds a sealed value."""
    return table != "meta" or key == "fingerprint_key" or key.startswith(SEALED_SETTING)


class SealedRows:
    """A store's secret-bearing columns sealed (`crypto.py`) under their row id as associated
    data — `token:<credential id>`, `connection:<id>`, `flow:<state fingerprint>` — so a sealed
    value copied into another row does not open; and those rows opened back into values. The
    same for every driver: SQLite and PostgreSQL hand it the bytes and columns they read."""

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer

    def seal_token(self, credential_id: str, record: StoredToken) -> bytes | None:
        """The record's token and history, sealed; None when it has neither."""
        if record.token is None and not (record.history.seeds or record.history.issued):
            return None
        plain = token_to_json(record.token, record.history)
        return self._sealer.seal(plain, f"token:{credential_id}")

    def open_token(
        self, credential_id: str, sealed: bytes | None
    ) -> tuple[TokenSet | None, TokenHistory]:
        if sealed is None:
            return None, TokenHistory()
        return token_from_json(self._sealer.open(bytes(sealed), f"token:{credential_id}"))

    def open_token_record(
        self,
        credential_id: str,
        sealed: bytes | None,
        seed_fingerprint: str | None,
        needs_reauthorization: bool,
        client_auth: ClientAuthStyle | None,
        updated_at: float,
        version: int,
    ) -> StoredToken:
        """The stored token state; an unreadable token is one that needs re-authorisation.

        Its seed fingerprint (not sealed) is kept: a person who replaces the credential (a new
        seed) puts it back in service, while the unchanged seed does not resurrect a refresh
        token the unreadable row has replaced."""
        try:
            token, history = self.open_token(credential_id, sealed)
        except SealError:
            report_unreadable(
                f"token of credential {credential_id}",
                "the credential answers credential_reauthorization_required until replaced",
            )
            return StoredToken(None, seed_fingerprint, True, client_auth, updated_at, version)
        return StoredToken(
            token,
            seed_fingerprint,
            needs_reauthorization,
            client_auth,
            updated_at,
            version,
            history,
        )

    def seal_connection(self, connection: StoredConnection) -> bytes:
        document = json.dumps(dict(connection.document)).encode()
        return self._sealer.seal(document, f"connection:{connection.id}")

    def open_connection(
        self,
        id_: str,
        template_id: str,
        name: str,
        external_id: str | None,
        sealed: bytes,
        created_at: float,
        updated_at: float,
    ) -> StoredConnection | None:
        """The connection; None (logged) when its row does not open."""
        try:
            document = json.loads(self._sealer.open(bytes(sealed), f"connection:{id_}"))
        except SealError:
            report_unreadable(
                f"connection {id_} (template {template_id}, name {name})",
                "it is not served; delete it through the admin API and create it again",
            )
            return None
        return StoredConnection(
            id_, template_id, name, external_id, document, created_at, updated_at
        )

    def open_document(self, id_: str, sealed: bytes) -> dict[str, Any]:
        """A stored connection's document alone (for repairs.py)."""
        document: dict[str, Any] = json.loads(self._sealer.open(bytes(sealed), f"connection:{id_}"))
        return document

    def seal_document(self, id_: str, document: dict[str, Any]) -> bytes:
        return self._sealer.seal(json.dumps(document).encode(), f"connection:{id_}")

    def seal_flow(self, state_hash: str, flow: FlowState) -> bytes:
        return self._sealer.seal(flow_to_json(flow), f"flow:{state_hash}")

    def open_flow(
        self, state: str, state_hash: str, sealed: bytes, expires_at: float, now: float | None
    ) -> FlowState | None:
        """The taken flow; None once expired (at `now`, or the clock's now)."""
        if expires_at <= (time.time() if now is None else now):
            return None
        try:
            raw = self._sealer.open(bytes(sealed), f"flow:{state_hash}")
        except SealError:
            report_unreadable(f"connect flow {state_hash[:12]}", "the flow must be started again")
            return None
        return flow_from_json(raw, state, expires_at)

    def seal_setting(self, name: str, value: bytes) -> bytes:
        """A store-wide setting, sealed under its `meta` row name (`SEALED_SETTING` + name)."""
        return self._sealer.seal(value, "meta:" + SEALED_SETTING + name)

    def open_setting(self, name: str, sealed: bytes) -> bytes:
        return self._sealer.open(bytes(sealed), "meta:" + SEALED_SETTING + name)

    def seal_fingerprint_key(self, key: bytes) -> bytes:
        return self._sealer.seal(key, FINGERPRINT_ROW)

    def open_fingerprint_key(self, sealed: bytes) -> bytes:
        """The store's fingerprint key; opening it is also the check that `store.key` is the
        key the store was written with."""
        try:
            return self._sealer.open(bytes(sealed), FINGERPRINT_ROW)
        except SealError:
            raise StoreError(
                "store.key does not match the key this store was written with"
            ) from None


def reseal(old: Sealer, new: Sealer, row_id: str, sealed: bytes) -> bytes:
    """One value of a key rotation: opened under `old`, sealed under `new`, same row id."""
    try:
        plain = old.open(bytes(sealed), row_id)
    except SealError:
        raise StoreError("the old key does not open this store; nothing was changed") from None
    return new.seal(plain, row_id)


def newer_schema(current: int, known: int) -> StoreError:
    """The store was migrated by a newer release than this one."""
    return StoreError(
        f"the store has schema version {current}; this version of signing-proxy "
        f"knows up to {known} (was it written by a newer release?)"
    )
