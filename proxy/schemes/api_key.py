"""`api-key`: a static key in a header, a query parameter or a cookie (docs/request-path.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ..messages import OutboundRequest, RequestPatch
from .base import Scheme, SigningContext


class ApiKeyScheme(Scheme):
    type_name = "api-key"

    def __init__(
        self, credential_id: str, name: str, where: Literal["header", "query", "cookie"], value: str
    ) -> None:
        self.credential_id = credential_id
        self.name = name
        self.where = where
        self.sets_headers = frozenset({name.lower()}) if where == "header" else frozenset()
        # The patch never changes, so it is built once rather than per request.
        pair = {name: value}
        self._patch = {
            "header": RequestPatch(headers=pair),
            "query": RequestPatch(query=pair),
            "cookie": RequestPatch(cookies=pair),
        }[where]

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        return self._patch

    def constant_headers(self) -> Mapping[str, str] | None:
        # In the query or a cookie it merges with what the client sent: the general path.
        return self._patch.headers if self.where == "header" else None

    def describe(self) -> dict[str, Any]:
        return {"type": self.type_name, "name": self.name, "in": self.where}
