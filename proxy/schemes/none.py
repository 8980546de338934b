"""`none`: a connection that adds no credential (a public API behind the same gateway)."""

from __future__ import annotations

from collections.abc import Mapping

from ..messages import OutboundRequest, RequestPatch
from .base import Scheme, SigningContext


class NoneScheme(Scheme):
    type_name = "none"
    authenticates = False

    def __init__(self, credential_id: str) -> None:
        self.credential_id = credential_id

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        return RequestPatch()

    def constant_headers(self) -> Mapping[str, str]:
        return {}
