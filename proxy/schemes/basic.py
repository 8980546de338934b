"""`basic-auth`: RFC 7617 HTTP Basic authentication."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from ..messages import OutboundRequest, RequestPatch
from .base import Scheme, SchemeConfigError, SigningContext


def basic_credentials(username: str, password: str) -> str:
    """RFC 7617 §2: base64 of `user-id ":" password`, UTF-8 (the §2.1 `charset` the spec allows).

    A user-id containing a colon cannot be represented (§2: "a user-id containing a colon
    character is invalid"), so it is refused rather than sent ambiguously.
    """
    if ":" in username:
        raise SchemeConfigError("credential.data.basicAuth.username", "must not contain ':'")
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class BasicAuthScheme(Scheme):
    type_name = "basic-auth"
    sets_headers = frozenset({"authorization"})

    def __init__(self, credential_id: str, username: str, password: str) -> None:
        self.credential_id = credential_id
        self.username = username
        header = f"Basic {basic_credentials(username, password)}"
        self._patch = RequestPatch(headers={"Authorization": header})

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        return self._patch

    def constant_headers(self) -> Mapping[str, str]:
        return self._patch.headers
