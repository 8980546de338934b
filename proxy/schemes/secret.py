"""`secret`: a placeholder the client holds, swapped for the real secret in declared headers.

The client (an SDK, an agent) is configured with the placeholder as its key; where the
placeholder is the whole value of one of the declared headers, or one whitespace-separated token
of it (`Bearer <placeholder>`), `sign()` puts the secret in its place. A declared header without
the placeholder goes up as the client sent it. Where else a placeholder may not appear (another
header, the request-target, a request to another connection) is decided before anything is sent,
by `connections/placeholders.py`; by the time `sign()` runs the request has passed that check.

Pure: the secret lives in this object only, and never in its `repr()` or `describe()`.
"""

from __future__ import annotations

import re
from typing import Any

from ..config import models as m
from ..messages import OutboundRequest, RequestPatch
from .base import Scheme, SchemeConfigError, SigningContext

# Long enough not to turn up by chance in an unrelated header or URL (a false 403), short
# enough for any SDK's key field.
MIN_PLACEHOLDER_LENGTH = 8
# RFC 9110 §5.6.2 tchar and the token68 extras (`/`, `=`): one token of a header value, ASCII,
# no whitespace, so the swap and the misdirection check see the same bytes in every encoding.
_PLACEHOLDER = re.compile(r"[!#$%&'*+\-./0-9A-Z^_`a-z|~=]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def token_pattern(placeholder: str) -> str:
    """A regex for `placeholder` as one whitespace-separated token of a header value."""
    return rf"(?<!\S){re.escape(placeholder)}(?!\S)"


class SecretScheme(Scheme):
    type_name = "secret"

    def __init__(
        self, credential_id: str, placeholder: str, headers: list[str], secret: str
    ) -> None:
        self.credential_id = credential_id
        self.placeholder = placeholder
        self.header_names = tuple(headers)
        # Not `sets_headers`: the client's copy of these headers is what `sign()` rewrites, so
        # it must reach it (`connections/compiled.py` keeps them from the owned, dropped names).
        self.passes_headers = frozenset(name.lower() for name in headers)
        self._token = re.compile(token_pattern(placeholder))
        self._secret = secret

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        swapped: dict[str, str] = {}
        for name, value in request.headers:
            if name.lower() in self.passes_headers and self.placeholder in value:
                # A function replacement: the secret is inserted as it is, never read as a
                # template (a `\1` or `\g<0>` in it stays text).
                swapped[name] = self._token.sub(lambda _: self._secret, value)
        return RequestPatch(headers=swapped) if swapped else _NOTHING

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "placeholder": self.placeholder,
            "headers": list(self.header_names),
        }


_NOTHING = RequestPatch()


def build_secret_scheme(
    params: m.SecretParams, cred: m.StringCredential, credential_id: str
) -> SecretScheme:
    """Check and build a `secret` credential; fields are relative to the connection credential.

    Raises:
        SchemeConfigError: the placeholder or a header name cannot work as written.
    """
    here = "authSchemeConfig.secret"
    placeholder = params.placeholder
    secret = cred.data.string.value.get_secret_value()
    if not _PLACEHOLDER.fullmatch(placeholder):
        raise SchemeConfigError(
            f"{here}.placeholder",
            "must be one token of visible ASCII (letters, digits, -._~+/= and the like; "
            "no spaces), so it can stand alone in a header value",
        )
    if len(placeholder) < MIN_PLACEHOLDER_LENGTH:
        raise SchemeConfigError(
            f"{here}.placeholder",
            f"must be at least {MIN_PLACEHOLDER_LENGTH} characters, so it never turns up by "
            "chance in another header or a URL",
        )
    if secret == placeholder:
        # The placeholder is handed to clients: it must not be the secret itself.
        raise SchemeConfigError(f"{here}.placeholder", "must differ from the secret")
    for index, name in enumerate(params.headers):
        if not _HEADER_NAME.fullmatch(name):
            raise SchemeConfigError(
                f"{here}.headers[{index}]", "must be a header name (RFC 9110 token)"
            )
    match = _CONTROL.search(secret)
    if match is not None:
        raise SchemeConfigError(
            "credential.data.string.value",
            f"contains a control character (CR, LF, NUL, ...) at position {match.start()},"
            " which cannot be sent in a header (a trailing newline from a file or a paste?)",
        )
    return SecretScheme(credential_id, placeholder, list(params.headers), secret)
