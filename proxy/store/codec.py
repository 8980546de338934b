"""How the backends turn secret-bearing values into the bytes they seal (`crypto.py`): one
format for SQLite and PostgreSQL, so a value means the same thing in either."""

from __future__ import annotations

import json
from typing import Any

from ..messages import TokenSet
from . import FlowState


def token_to_json(token: TokenSet) -> bytes:
    return json.dumps(
        {
            "access_token": token.access_token,
            "token_type": token.token_type,
            "refresh_token": token.refresh_token,
            "expires_at": token.expires_at,
            "scope": token.scope,
        }
    ).encode()


def token_from_json(raw: bytes) -> TokenSet:
    data = json.loads(raw)
    return TokenSet(
        access_token=data["access_token"],
        token_type=data["token_type"],
        refresh_token=data["refresh_token"],
        expires_at=data["expires_at"],
        scope=data["scope"],
    )


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
