"""oauthlib's signature checks (RFC 5849 §3.2) for one OAuth 1.0a client and token: what the
tests verify a signed request with, independently of the proxy's own signer. The provider that
also issues tokens (the connect flow's) is `tests/oauth1_provider.py`."""

from __future__ import annotations

from typing import Any

from oauthlib.oauth1 import RequestValidator

CONSUMER_KEY = "ckey0123456789abcdefghij"
CONSUMER_SECRET = "canary-consumer-secret-77"
TOKEN = "tok0123456789abcdefghijk"
TOKEN_SECRET = "canary-token-secret-88"


class SingleUseNonces(RequestValidator):
    """What both OAuth 1.0a peers of the tests hold alike: plain HTTP on loopback, and each nonce
    accepted once (RFC 5849 §3.3); the provider of `tests/oauth1_provider.py` builds on it."""

    enforce_ssl = False
    nonces: set[str]

    def validate_timestamp_and_nonce(self, client_key: str, timestamp: str, nonce: str,
                                     request: Any, request_token: Any = None,
                                     access_token: Any = None) -> bool:  # fmt: skip
        if nonce in self.nonces:
            return False
        self.nonces.add(nonce)
        return True


class Validator(SingleUseNonces):
    """Accepts our one client and token; the rest of the checks are oauthlib's own."""

    nonce_length = (20, 64)
    dummy_client = "dummy_client"
    dummy_access_token = "dummy_access_token"

    def __init__(self, consumer_secret: str = CONSUMER_SECRET) -> None:
        super().__init__()
        self._consumer_secret = consumer_secret
        self.nonces: set[str] = set()

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return bool(client_key == CONSUMER_KEY)

    def validate_access_token(self, client_key: str, token: str, request: Any) -> bool:
        return bool(token == TOKEN)

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self._consumer_secret

    def get_access_token_secret(self, client_key: str, token: str, request: Any) -> str:
        return TOKEN_SECRET
