"""Credential values that go into a header verbatim must be sendable there (RFC 9110 §5.5).

A field value may not contain CR, LF or NUL, and the other C0 controls and DEL are refused here
too: they are never part of a real key or token, and usually come from a pasted value or a
secret file with Windows line endings. Caught at load (`check`, `run`, the management API) as
an error at the credential's field, instead of every request on the connection failing with a
400 that blames the client. The value itself is never quoted, only the position of the first
bad character.

Values that are encoded before they reach the wire are fine as they are: a query placement
(percent-encoded), Basic credentials (base64), HMAC keys (only the digest is sent) and OAuth 1.0a
parameters (percent-encoded, RFC 5849 §3.6).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..config import models as m
from .base import SchemeConfigError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 9110 §5.6.2 `token`: what a header (or cookie) name may be.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_header_values(entry: m.ConnectionCredential) -> None:
    """Raise `SchemeConfigError` at the first credential field that cannot go into a header.

    Field paths are relative to the connection credential, like every `SchemeConfigError`.
    """
    for field, value in _header_values(entry):
        match = _CONTROL.search(value)
        if match is not None:
            raise SchemeConfigError(
                field,
                f"contains a control character (CR, LF, NUL, ...) at position {match.start()},"
                " which cannot be sent in a header (a trailing newline from a file or a paste?)",
            )
    for field, name in _header_names(entry):
        if not _TOKEN.fullmatch(name):
            raise SchemeConfigError(field, "must be a header or cookie name (RFC 9110 token)")


def _header_values(entry: m.ConnectionCredential) -> Iterator[tuple[str, str]]:
    auth, cred = entry.auth_scheme_config, entry.credential
    if isinstance(cred, m.StringCredential):
        sent_raw = isinstance(auth, m.BearerSchemeConfig) or (
            isinstance(auth, m.ApiKeySchemeConfig) and auth.api_key.in_ != "query"
        )
        if sent_raw:
            yield "credential.data.string.value", cred.data.string.value.get_secret_value()
    elif isinstance(cred, m.OAuth2TokenCredential):
        token = cred.data.oauth2_token
        here = "credential.data.oauth2Token"
        yield f"{here}.accessToken", token.access_token.get_secret_value()
        yield f"{here}.tokenType", token.token_type
    elif isinstance(cred, m.OAuth1TokenCredential):
        # `realm` is quoted into the Authorization header, not percent-encoded.
        for index, param in enumerate(cred.data.oauth1_token.additional_params):
            if param.name == "realm":
                here = f"credential.data.oauth1Token.additionalParams[{index}].value"
                yield here, param.value


def _header_names(entry: m.ConnectionCredential) -> Iterator[tuple[str, str]]:
    auth = entry.auth_scheme_config
    if isinstance(auth, m.ApiKeySchemeConfig) and auth.api_key.in_ != "query":
        yield "authSchemeConfig.apiKey.name", auth.api_key.name
    elif isinstance(auth, m.HmacSchemeConfig) and auth.hmac.in_ != "query":
        yield "authSchemeConfig.hmac.name", auth.hmac.name
