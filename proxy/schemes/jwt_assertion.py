"""JWT assertions for token endpoints (docs/jwt-bearer.md): what is signed, and the requests and
answers around it. Pure: time and the `jti` come in as arguments.

- RFC 7523 §2.1, the JWT bearer *grant*: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
  with `assertion` (and `scope`); the flavors `rfc7523` and `google-service-account`.
- RFC 7523 §2.2, JWT *client authentication* (OpenID Connect's `private_key_jwt`):
  `client_assertion_type` + `client_assertion` beside any grant's parameters.
- The GitHub App installation token: the app's JWT as `Authorization: Bearer` on
  `POST /app/installations/{id}/access_tokens`, answered `201 {"token", "expires_at"}`.

Claims (RFC 7523 §3): `iss`, `sub`, `aud`, `iat`, `exp` = `iat` + `lifetime`, `jti`. A GitHub App
JWT has `iss`, `iat` 60 s back (GitHub's advice against clock drift) and `exp`, nothing else;
Google's has `scope` as a claim and `sub` only when impersonating a user.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal

from .jws import JwsAlgorithm, load_signing_key, sign_jwt

Flavor = Literal["rfc7523", "github-app", "google-service-account", "client-assertion"]

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # RFC 7523 §2.1
JWT_CLIENT_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2

# GitHub: "set this 60 seconds in the past to allow for clock drift"; `exp` at most 10 minutes.
GITHUB_BACKDATE = 60
GITHUB_MAX_LIFETIME = 600
GITHUB_ACCEPT = "application/vnd.github+json"
GITHUB_API_VERSION = "2022-11-28"


@dataclass(frozen=True, slots=True)
class JwtAssertion:
    """How to make one credential's JWTs; the key stays out of `repr()`."""

    flavor: Flavor
    private_key: str = field(repr=False)  # PEM
    algorithm: JwsAlgorithm
    issuer: str
    subject: str | None
    audience: str | None
    lifetime: int
    key_id: str | None = None
    scope_claim: str | None = None  # Google: the scopes go into the JWT

    def claims(self, now: float, jti: str) -> dict[str, Any]:
        issued = int(now)
        if self.flavor == "github-app":
            issued -= GITHUB_BACKDATE
            return {"iat": issued, "exp": issued + self.lifetime, "iss": self.issuer}
        claims: dict[str, Any] = {"iss": self.issuer}
        if self.subject is not None:
            claims["sub"] = self.subject
        if self.audience is not None:
            claims["aud"] = self.audience
        if self.scope_claim is not None:
            claims["scope"] = self.scope_claim
        claims.update(iat=issued, exp=issued + self.lifetime, jti=jti)
        return claims

    def sign(self, now: float, jti: str) -> str:
        """A fresh signed JWT.

        Raises:
            KeyProblem: the key cannot sign (checked when the scheme was built: not expected).
        """
        key = _parsed_key(self.private_key)
        return sign_jwt(self.claims(now, jti), key, self.algorithm, key_id=self.key_id)


def grant_params(jwt: str, scope: str | None) -> list[tuple[str, str]]:
    """RFC 7523 §2.1 (RFC 7521 §4.1: `scope` as in RFC 6749)."""
    params = [("grant_type", JWT_BEARER_GRANT), ("assertion", jwt)]
    return params + [("scope", scope)] if scope else params


def client_assertion_params(jwt: str) -> list[tuple[str, str]]:
    """RFC 7523 §2.2 (RFC 7521 §4.2)."""
    return [("client_assertion_type", JWT_CLIENT_ASSERTION), ("client_assertion", jwt)]


def github_headers(jwt: str) -> list[tuple[str, str]]:
    """The installation token request's headers (docs.github.com, "Authenticating as a GitHub
    App installation")."""
    return [
        ("Authorization", f"Bearer {jwt}"),
        ("Accept", GITHUB_ACCEPT),
        ("X-GitHub-Api-Version", GITHUB_API_VERSION),
    ]


# Parsing a PEM (an RSA key is validated as it loads) once per key, not at every token call; the
# key is not kept on the frozen assertion itself, whose fields are fingerprinted as they are.
_parsed_key = functools.lru_cache(maxsize=32)(load_signing_key)
