"""`oauth1` credentials (seed `CredentialDataOAuth1`: `{state, oauthToken, oauthVerifier}`) in
the file: signs like `oauth1-token`, with the token credentials the verifier was exchanged for.

The exchange itself (RFC 5849 §2.3, once, at start) and the stored token belong to
`tokens/oauth1.py`; this scheme gets the token in `ctx.token`, as an OAuth 2.0 scheme does.

The token record reuses the store's token shape (`TokenSet`): `access_token` is the token,
`refresh_token` its secret (both sealed by the store), `token_type` is `OAuth1`, and `scope`
holds the seed `additionalParams` (a `realm` the token endpoint was given) as JSON.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import models as m
from ..messages import OutboundRequest, RequestPatch, TokenSet
from .base import Scheme, SchemeConfigError, SigningContext
from .oauth1 import METHOD_NAMES, OAuth1Scheme, is_form

TOKEN_TYPE = "OAuth1"


def token_set(value: m.OAuth1TokenValue) -> TokenSet:
    """A seed `CredentialDataOAuth1Token` as the store keeps it."""
    extra = [[p.name, p.value] for p in value.additional_params]
    return TokenSet(
        access_token=value.token.get_secret_value(),
        token_type=TOKEN_TYPE,
        refresh_token=value.token_secret.get_secret_value(),
        scope=json.dumps(extra) if extra else None,
    )


def token_value(token: TokenSet) -> m.OAuth1TokenValue:
    """The stored token back in the seed's `CredentialDataOAuth1Token` shape."""
    extra: list[list[str]] = json.loads(token.scope) if token.scope else []
    return m.OAuth1TokenValue.model_validate(
        {
            "token": token.access_token,
            "tokenSecret": token.refresh_token or "",
            "additionalParams": [{"name": name, "value": value} for name, value in extra],
        }
    )


class OAuth1ExchangedScheme(Scheme):
    """Signs with the `oauth1-token` its `oauth1` credential became (`ctx.token`)."""

    type_name = "oauth1"
    needs_token = True
    sets_headers = frozenset({"authorization"})

    def __init__(
        self, credential_id: str, auth: m.OAuth1SchemeConfig, value: m.OAuth1Value
    ) -> None:
        if auth.oauth1.token_endpoint is None:
            raise SchemeConfigError(
                "authSchemeConfig.oauth1.tokenEndpoint",
                "required to exchange an 'oauth1' credential for its token (RFC 5849 §2.3)",
            )
        self.credential_id = credential_id
        self.auth = auth
        self.value = value
        self.signature_method = auth.oauth1.signature_method
        # The signer of the last token seen: built once per token, not per request.
        self._signer: tuple[str, OAuth1Scheme] | None = None

    def __repr__(self) -> str:
        return f"OAuth1ExchangedScheme({METHOD_NAMES[self.signature_method]})"

    def seed_identity(self) -> str:
        """The credential material a stored token descends from (fingerprinted, never stored)."""
        params = self.auth.oauth1
        return json.dumps(
            [
                "oauth1",
                params.consumer_key,
                self.value.oauth_token,
                self.value.oauth_verifier.get_secret_value(),
            ]
        )

    def reads_body(self, request: OutboundRequest) -> bool:
        return is_form(request.header("Content-Type"))

    def signer(self, token: TokenSet) -> OAuth1Scheme:
        known = self._signer
        if known is not None and known[0] == token.access_token:
            return known[1]
        extra: list[list[str]] = json.loads(token.scope) if token.scope else []
        params = self.auth.oauth1
        signer = OAuth1Scheme(
            self.credential_id,
            consumer_key=params.consumer_key,
            consumer_secret=params.consumer_secret.get_secret_value(),
            token=token.access_token,
            token_secret=token.refresh_token or "",
            signature_method=params.signature_method,
            additional_params=[(name, value) for name, value in extra],
        )
        self._signer = (token.access_token, signer)
        return signer

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        if ctx.token is None:
            raise ValueError("an exchanged oauth1 credential needs its token in the context")
        return self.signer(ctx.token).sign(request, ctx)

    def signed_parts(
        self, request: OutboundRequest, ctx: SigningContext
    ) -> list[tuple[str, bytes]]:
        """What `explain` shows: the §3.4.1 base string, as `oauth1-token` shows it."""
        if ctx.token is None:
            raise ValueError("an exchanged oauth1 credential needs its token in the context")
        return self.signer(ctx.token).signed_parts(request, ctx)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "signatureMethod": METHOD_NAMES[self.signature_method],
            "credential": "oauth1 (exchanged at start for an oauth1-token)",
        }
