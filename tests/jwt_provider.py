"""Token endpoints that take signed JWTs, for tests: each checks what it receives with an
independent JWT library (PyJWT, joserfc), never with the proxy's own code.

- `POST /token`, RFC 7523 §2.1 (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`): the
  assertion is verified with PyJWT against the public key registered for its `iss`, with `aud`
  = the endpoint's URL, `iss`, `sub`, `iat`, `exp`, `jti` all required, `exp - iat` at most
  `max_lifetime`, `iat` not in the future, a `jti` never seen before (RFC 7523 §3, items 7-8).
  A Google-shaped client (`scope_in_claim`) must send its scopes in the JWT instead.
- `POST /token` with `grant_type=client_credentials` (or `refresh_token`, rotating the refresh
  tokens `refresh` holds) and an RFC 7523 §2.2 client assertion (`private_key_jwt`): verified
  with joserfc (the successor of Authlib's JOSE): `iss` = `sub` = `client_id`, `aud` = the
  endpoint, `exp`, `jti` once, the `kid` of the registered key.
- `POST /app/installations/{id}/access_tokens`, GitHub-shaped: `Authorization: Bearer <app JWT>`
  verified with PyJWT as GitHub does (RS256 only, `iss` = the app id, `iat` in the past, `exp`
  at most 10 minutes ahead); answers `201 {"token", "expires_at"}`.
- `GET /resource/...`: 401 `invalid_token` unless `Authorization: Bearer <a live token>`;
  answers which principal the token belongs to.

Tokens live `ttl` seconds. Counters: `hits` per endpoint kind, `refused` with reasons.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt as pyjwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def private_pem(kind: str = "rsa") -> str:
    """A fresh private key (PKCS#8 PEM): `rsa` (2048), `ec` (P-256) or `ed25519`."""
    key: Any
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode()


def _jwk(public: str) -> dict[str, Any]:
    for kind in (RSAKey, ECKey, OKPKey):
        try:
            return dict(kind.import_key(public).as_dict())
        except (ValueError, TypeError, JoseError):
            continue
    raise ValueError("not a public key")


def public_pem(private: str) -> str:
    key = serialization.load_pem_private_key(private.encode(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public.decode()


@dataclass
class Issuer:
    """A registered JWT issuer (an RFC 7523 client, a service account, a GitHub App)."""

    public_key: str
    algorithm: str
    scope_in_claim: bool = False  # Google: scopes in the JWT, not the form
    key_id: str | None = None


@dataclass
class JwtProvider:
    ttl: float = 3600.0
    max_lifetime: int = 3600
    issuers: dict[str, Issuer] = field(default_factory=dict)
    # GitHub Apps: app id → public key; installation ids each app may use.
    apps: dict[str, str] = field(default_factory=dict)
    installations: dict[str, str] = field(default_factory=dict)  # installation → app id
    # private_key_jwt clients: client id → public key, algorithm.
    clients: dict[str, Issuer] = field(default_factory=dict)
    refresh: dict[str, str] = field(default_factory=dict)  # live refresh token → client id
    delay: float = 0.0
    hits: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    seen_jti: set[str] = field(default_factory=set)
    assertions: list[dict[str, Any]] = field(default_factory=list)  # verified claims
    headers: list[dict[str, Any]] = field(default_factory=list)  # their JOSE headers
    forms: list[dict[str, str]] = field(default_factory=list)
    access: dict[str, tuple[float, str]] = field(default_factory=dict)  # token → exp, principal
    resource_hits: int = 0
    base_url: str = ""  # set when serving: `aud` is checked against it

    def issue(self, principal: str) -> tuple[str, float]:
        token = "at-" + secrets.token_urlsafe(18)
        expires = time.time() + self.ttl
        self.access[token] = (expires, principal)
        return token, expires

    def revoke_all(self) -> None:
        self.access.clear()

    def refuse(self, reason: str, status: int = 400, error: str = "invalid_grant") -> web.Response:
        self.refused.append(reason)
        return web.json_response({"error": error, "error_description": reason}, status=status)

    # --- RFC 7523 ---

    async def token(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append(form)
        grant = form.get("grant_type")
        if grant == JWT_BEARER:
            self.hits["jwt-bearer"] += 1
            return self._jwt_grant(form)
        if grant in ("client_credentials", "refresh_token"):
            self.hits[grant] += 1
            return self._client_assertion(form)
        return self.refuse(f"grant {grant}", error="unsupported_grant_type")

    def _audience(self) -> str:
        return self.base_url + "/token"

    def _jwt_grant(self, form: dict[str, str]) -> web.Response:
        assertion = form.get("assertion", "")
        try:
            unverified = pyjwt.decode(assertion, options={"verify_signature": False})
            issuer = self.issuers[unverified["iss"]]
            header = pyjwt.get_unverified_header(assertion)
            claims = pyjwt.decode(
                assertion,
                issuer.public_key,
                algorithms=[issuer.algorithm],
                audience=self._audience(),
                issuer=unverified["iss"],
                options={"require": ["iss", "aud", "iat", "exp", "jti"]},
            )
        except (pyjwt.PyJWTError, KeyError) as exc:
            return self.refuse(f"assertion: {type(exc).__name__}")
        if not issuer.scope_in_claim and "sub" not in claims:
            return self.refuse("no sub")
        if issuer.key_id is not None and header.get("kid") != issuer.key_id:
            return self.refuse("kid")
        problem = self._window(claims)
        if problem:
            return self.refuse(problem)
        if issuer.scope_in_claim:
            if "scope" in form or not claims.get("scope"):
                return self.refuse("scopes belong in the JWT", error="invalid_scope")
            scope = claims["scope"]
        else:
            scope = form.get("scope")
        self.assertions.append(claims)
        self.headers.append(header)
        token, _ = self.issue(claims.get("sub") or claims["iss"])
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.ttl,
        }
        if scope:
            body["scope"] = scope
        return web.json_response(body)

    def _window(self, claims: dict[str, Any]) -> str | None:
        now = time.time()
        if claims["iat"] > now + 5:
            return "iat in the future"
        if claims["exp"] - claims["iat"] > self.max_lifetime:
            return "lifetime too long"
        if claims["jti"] in self.seen_jti:
            return "jti replayed"
        self.seen_jti.add(claims["jti"])
        return None

    # --- RFC 7523 §2.2 client authentication, checked with joserfc ---

    def _client_assertion(self, form: dict[str, str]) -> web.Response:
        if form.get("client_assertion_type") != CLIENT_ASSERTION or "client_secret" in form:
            return self.refuse("client auth", status=401, error="invalid_client")
        client_id = form.get("client_id", "")
        client = self.clients.get(client_id)
        if client is None:
            return self.refuse("unknown client", status=401, error="invalid_client")
        jwk = _jwk(client.public_key) | ({"kid": client.key_id} if client.key_id else {})
        key = KeySet.import_key_set({"keys": [jwk]})
        registry = jose_jwt.JWTClaimsRegistry(
            now=int(time.time()),
            iss={"essential": True, "value": client_id},
            sub={"essential": True, "value": client_id},
            aud={"essential": True, "value": self._audience()},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            token = jose_jwt.decode(form["client_assertion"], key, algorithms=[client.algorithm])
            registry.validate(token.claims)
        except (JoseError, ValueError, KeyError) as exc:
            return self.refuse(f"client assertion: {type(exc).__name__}", 401, "invalid_client")
        claims = dict(token.claims)
        if claims["jti"] in self.seen_jti:
            return self.refuse("jti replayed", 401, "invalid_client")
        self.seen_jti.add(claims["jti"])
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.ttl}
        if form["grant_type"] == "refresh_token":
            if self.refresh.pop(form.get("refresh_token", ""), None) != client_id:
                return self.refuse("refresh token")
            body["refresh_token"] = "rt-" + secrets.token_urlsafe(12)
            self.refresh[body["refresh_token"]] = client_id
        self.assertions.append(claims)
        body["access_token"], _ = self.issue(client_id)
        return web.json_response(body)

    # --- GitHub ---

    async def github(self, request: web.Request) -> web.Response:
        self.hits["github"] += 1
        installation = request.match_info["installation"]
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._github_refuse("no JWT")
        app_jwt = auth[len("Bearer ") :]
        try:
            header = pyjwt.get_unverified_header(app_jwt)
            unverified = pyjwt.decode(app_jwt, options={"verify_signature": False})
            app_id = str(unverified["iss"])
            claims = pyjwt.decode(
                app_jwt,
                self.apps[app_id],
                algorithms=["RS256"],
                options={"require": ["iss", "iat", "exp"]},
            )
        except (pyjwt.PyJWTError, KeyError) as exc:
            return self._github_refuse(type(exc).__name__)
        now = time.time()
        if header.get("alg") != "RS256":
            return self._github_refuse("alg")
        if claims["iat"] > now:
            return self._github_refuse("iat in the future")
        if claims["exp"] > now + 600:
            return self._github_refuse("exp too far in the future")
        if self.installations.get(installation) != app_id:
            self.refused.append("installation")
            return web.json_response({"message": "Not Found"}, status=404)
        if request.headers.get("Accept") != "application/vnd.github+json":
            return self._github_refuse("accept")
        self.assertions.append(claims)
        token, expires = self.issue(f"installation {installation}")
        expires_at = datetime.fromtimestamp(int(expires), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response(
            {"token": token, "expires_at": expires_at, "permissions": {"contents": "read"}},
            status=201,
        )

    def _github_refuse(self, reason: str) -> web.Response:
        self.refused.append(reason)
        return web.json_response(
            {"message": f"A JSON web token could not be decoded ({reason})"}, status=401
        )

    # --- resource server ---

    async def resource(self, request: web.Request) -> web.Response:
        self.resource_hits += 1
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        entry = self.access.get(token) if scheme in ("Bearer", "token") else None
        if entry is None or entry[0] <= time.time():
            return web.json_response(
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return web.json_response({"principal": entry[1], "path": request.path})


def create_jwt_app(provider: JwtProvider) -> web.Application:
    app = web.Application()
    app.router.add_post("/token", provider.token)
    app.router.add_post("/app/installations/{installation}/access_tokens", provider.github)
    app.router.add_get("/resource/{tail:.*}", provider.resource)
    app.router.add_get("/repos/{tail:.*}", provider.resource)  # GitHub's API shape
    return app
