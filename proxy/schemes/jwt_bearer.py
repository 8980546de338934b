"""`jwt-bearer`: `Authorization: Bearer <access token>`, the token obtained with a signed JWT
(docs/jwt-bearer.md).

The scheme is an `OAuth2Scheme` whose grant is a JWT: the token manager keeps its tokens exactly
as it keeps OAuth 2.0 ones (cached, refreshed ahead, single flight across workers and replicas,
stored before use, one forced refresh and one replay on a 401). What differs is the token call,
built here (pure):

- `rfc7523`: RFC 7523 §2.1 at `tokenUrl`, a JWT with `iss` = `issuer`, `sub` = `subject`
  (default the issuer), `aud` = `audience` (default the token URL), `iat`, `exp`, `jti`;
  `scopes` as the RFC 6749 `scope` parameter.
- `google-service-account`: the same from the service-account JSON: `iss` = `client_email`,
  `aud` and the token URL = `token_uri`, `kid` = `private_key_id`, the scopes as the `scope`
  claim (Google's "OAuth 2.0 for Server to Server Applications"), `sub` only to impersonate.
- `github-app`: the app's JWT (`iss` = the app id, RS256, `iat` 60 s back, `exp` at most
  10 minutes on) as `Authorization: Bearer` on `POST tokenUrl` (default
  `{baseUrl}/app/installations/{subject}/access_tokens`), answered `{"token", "expires_at"}`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import quote

from ..config import models as m
from ..messages import TokenSet
from .base import SchemeConfigError
from .jws import JwsAlgorithm, KeyProblem, algorithm_for, check_algorithm, load_signing_key
from .jwt_assertion import GITHUB_MAX_LIFETIME, JwtAssertion, github_headers, grant_params
from .oauth2 import (
    GrantType,
    OAuth2Scheme,
    OAuth2Settings,
    TokenEndpointError,
    TokenRequest,
    check_token_url,
    parse_expires_at,
    parse_token_response,
)

HERE = "authSchemeConfig.jwtBearer"
DEFAULT_LIFETIME = 300
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"


class JwtBearerScheme(OAuth2Scheme):
    """An access token from a signed JWT, applied as `Authorization: Bearer`."""

    type_name = "jwt-bearer"

    def __repr__(self) -> str:
        return f"JwtBearerScheme({self.credential_id!r}, {self.settings!r})"

    @property
    def assertion(self) -> JwtAssertion:
        assert self.settings.assertion is not None
        return self.settings.assertion

    def describe(self) -> dict[str, Any]:
        a = self.assertion
        return {
            "type": self.type_name,
            "flavor": a.flavor,
            "tokenUrl": self.settings.token_url,
            "issuer": a.issuer,
            "subject": a.subject,
            "audience": a.audience,
            "scopes": list(self.settings.scopes),
            "algorithm": a.algorithm,
            "keyId": a.key_id,
            "lifetime": a.lifetime,
        }


def assertion_token_request(settings: OAuth2Settings, *, now: float, jti: str) -> TokenRequest:
    """The token call of a `jwt-bearer` credential, with a JWT signed now."""
    assertion = settings.assertion
    assert assertion is not None and settings.token_url is not None
    jwt = assertion.sign(now, jti)
    if assertion.flavor == "github-app":
        return TokenRequest(settings.token_url, (), tuple(github_headers(jwt)))
    # Google takes its scopes in the JWT; RFC 7523 servers as the `scope` parameter.
    scope = None if assertion.scope_claim is not None else settings.scope
    headers = (
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
    )
    return TokenRequest(settings.token_url, tuple(grant_params(jwt, scope)), headers)


def parse_assertion_response(
    settings: OAuth2Settings, status: int, body: bytes, *, now: float
) -> TokenSet:
    """The token in the answer to `assertion_token_request`.

    Raises:
        TokenEndpointError: as `parse_token_response`; GitHub's errors (`{"message"}`, free text
            that is never repeated) by status.
    """
    assert settings.assertion is not None
    if settings.assertion.flavor != "github-app":
        return parse_token_response(status, body, now=now, requested_scope=settings.scope)
    if status not in (200, 201):
        # 401: the JWT was refused (a wrong key or app id, or a clock off by minutes); 404: no
        # such installation for this app. RFC 6749's `invalid_grant` is for refresh tokens.
        raise TokenEndpointError(f"token_endpoint_status_{status}", status)
    try:
        data = json.loads(body)
    except ValueError:
        raise TokenEndpointError("not_json", status) from None
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise TokenEndpointError("missing_access_token", status)
    expires_at = None
    if isinstance(data.get("expires_at"), str):
        try:
            expires_at = parse_expires_at(data["expires_at"])
        except ValueError:
            expires_at = None  # used until a 401, as a token of unknown expiry
    lifetime = None if expires_at is None else max(0.0, expires_at - now)
    return TokenSet(access_token=token, expires_at=expires_at, lifetime=lifetime)


# --- building ------------------------------------------------------------------------------


def _key_text(cred: m.StringCredential | m.BinaryCredential) -> tuple[str, str]:
    """(the credential's text, its field): a PEM or a service-account JSON."""
    if isinstance(cred, m.StringCredential):
        return cred.data.string.value.get_secret_value(), "credential.data.string.value"
    here = "credential.data.binary.valueBase64"
    try:
        raw = base64.b64decode(
            cred.data.binary.value_base64.get_secret_value().strip(), validate=True
        )
        return raw.decode("utf-8"), here
    except (binascii.Error, ValueError):
        raise SchemeConfigError(
            here, "is not base64 (RFC 4648 §4) of a UTF-8 PEM or JSON"
        ) from None


def _service_account(text: str, here: str) -> dict[str, str]:
    """The fields of a Google service-account key file that are used."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SchemeConfigError(here, "is not a Google service-account key (JSON) file")
    found: dict[str, str] = {}
    for name in ("client_email", "private_key", "private_key_id", "token_uri"):
        value = data.get(name)
        if isinstance(value, str) and value:
            found[name] = value
        elif name in ("client_email", "private_key"):
            raise SchemeConfigError(here, f"the service-account JSON has no {name!r}")
    return found


def _signing(pem: str, wanted: JwsAlgorithm | None, key_field: str) -> JwsAlgorithm:
    try:
        key = load_signing_key(pem)
    except KeyProblem as exc:
        raise SchemeConfigError(key_field, str(exc)) from None
    algorithm = wanted or algorithm_for(key)
    try:
        check_algorithm(key, algorithm)
    except KeyProblem as exc:
        raise SchemeConfigError(
            f"{HERE}.algorithm", f"does not fit the credential's key, which {exc}"
        ) from None
    return algorithm


def _unused(params: m.JwtBearerParams, names: tuple[str, ...], why: str) -> None:
    for name in names:
        if getattr(params, name):
            camel = "".join(p.title() if i else p for i, p in enumerate(name.split("_")))
            raise SchemeConfigError(
                f"{HERE}.{camel}", f"not used by flavor {params.flavor!r}: {why}"
            )


def build_jwt_bearer_scheme(
    auth: m.JwtBearerSchemeConfig,
    cred: m.StringCredential | m.BinaryCredential,
    credential_id: str,
    base_url: str,
) -> JwtBearerScheme:
    """The scheme of a `jwt-bearer` credential; every key and field problem is found here, so
    `check` reports it at its field.

    Raises:
        SchemeConfigError: a field problem (relative to the connection credential).
    """
    params = auth.jwt_bearer
    text, key_field = _key_text(cred)
    lifetime = params.lifetime or DEFAULT_LIFETIME
    scopes = tuple(params.scopes)
    scope_claim = None
    if params.flavor == "google-service-account":
        account = _service_account(text, key_field)
        pem, key_field = account["private_key"], f"{key_field} (private_key)"
        issuer = params.issuer or account["client_email"]
        token_url = params.token_url or account.get("token_uri") or GOOGLE_TOKEN_URL
        subject = params.subject  # only to act as a user (domain-wide delegation)
        audience = params.audience or token_url
        key_id = params.key_id or account.get("private_key_id")
        if not scopes:
            raise SchemeConfigError(f"{HERE}.scopes", "required: the OAuth scopes to request")
        scope_claim = " ".join(scopes)
    elif params.flavor == "github-app":
        _unused(params, ("audience", "scopes"), "the app's installation has its permissions")
        pem, key_id = text, params.key_id
        if not params.issuer:
            raise SchemeConfigError(
                f"{HERE}.issuer", "required: the GitHub App's id (or client id)"
            )
        if not params.subject:
            raise SchemeConfigError(f"{HERE}.subject", "required: the installation id")
        issuer, subject, audience = params.issuer, params.subject, None
        lifetime = params.lifetime or GITHUB_MAX_LIFETIME
        if lifetime > GITHUB_MAX_LIFETIME:
            raise SchemeConfigError(
                f"{HERE}.lifetime", "at most 600 s: GitHub refuses longer app JWTs"
            )
        if params.algorithm not in (None, "RS256"):
            raise SchemeConfigError(f"{HERE}.algorithm", "GitHub App JWTs are RS256")
        installation = quote(subject, safe="")
        token_url = params.token_url or (
            f"{base_url.rstrip('/')}/app/installations/{installation}/access_tokens"
        )
    else:
        pem, key_id = text, params.key_id
        if not params.issuer:
            raise SchemeConfigError(f"{HERE}.issuer", "required: the JWT's `iss` (RFC 7523 §3)")
        if not params.token_url:
            raise SchemeConfigError(f"{HERE}.tokenUrl", "required for flavor 'rfc7523'")
        issuer, token_url = params.issuer, params.token_url
        subject = params.subject or params.issuer
        audience = params.audience or token_url
    check_token_url(token_url, f"{HERE}.tokenUrl")
    algorithm = _signing(pem, params.algorithm, key_field)
    if params.flavor == "github-app" and algorithm != "RS256":
        raise SchemeConfigError(key_field, "GitHub App JWTs are RS256: give the app's RSA key")
    assertion = JwtAssertion(
        flavor=params.flavor,
        private_key=pem,
        algorithm=algorithm,
        issuer=issuer,
        subject=subject,
        audience=audience,
        lifetime=lifetime,
        key_id=key_id,
        scope_claim=scope_claim,
    )
    grant: GrantType = "githubApp" if params.flavor == "github-app" else "jwtBearer"
    settings = OAuth2Settings(
        grant=grant, token_url=token_url, client_id=issuer, scopes=scopes, assertion=assertion
    )
    return JwtBearerScheme(credential_id, settings)
