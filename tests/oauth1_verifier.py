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


class Validator(RequestValidator):
    """Accepts our one client and token; the rest of the checks are oauthlib's own."""

    enforce_ssl = False
    nonce_length = (20, 64)

    def __init__(self, consumer_secret: str = CONSUMER_SECRET) -> None:
        super().__init__()
        self._consumer_secret = consumer_secret
        self.nonces: set[str] = set()

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return bool(client_key == CONSUMER_KEY)

    def validate_access_token(self, client_key: str, token: str, request: Any) -> bool:
        return bool(token == TOKEN)

    def validate_timestamp_and_nonce(self, client_key: str, timestamp: str, nonce: str,
                                     request: Any, request_token: Any = None,
                                     access_token: Any = None) -> bool:  # fmt: skip
        if nonce in self.nonces:
            return False
        self.nonces.add(nonce)
        return True

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self._consumer_secret

    def get_access_token_secret(self, client_key: str, token: str, request: Any) -> str:
        return TOKEN_SECRET

    @property
    def dummy_client(self) -> str:
        return "dummy_client"

    @property
    def dummy_access_token(self) -> str:
        return "dummy_access_token"
