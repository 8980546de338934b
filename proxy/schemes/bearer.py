"""`bearer`: a static token as `Authorization: Bearer <token>` (RFC 6750 §2.1)."""

from __future__ import annotations

from collections.abc import Mapping

from ..messages import OutboundRequest, RequestPatch
from .base import Scheme, SigningContext


def bearer_patch(token: str, token_type: str = "Bearer") -> RequestPatch:
    """RFC 6750 §2.1: `Authorization: Bearer <b64token>`."""
    return RequestPatch(headers={"Authorization": f"{token_type} {token}"})


class BearerScheme(Scheme):
    type_name = "bearer"
    sets_headers = frozenset({"authorization"})

    def __init__(self, credential_id: str, token: str) -> None:
        self.credential_id = credential_id
        self._patch = bearer_patch(token)

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        return self._patch

    def constant_headers(self) -> Mapping[str, str]:
        return self._patch.headers
