"""`oauth2`: `Authorization: <tokenType> <accessToken>` with tokens kept fresh
(docs/request-path.md).

Pure parts only; the token endpoint I/O (`proxy/tokens/endpoint.py`), the refresh lease
(`lease.py`), state and storage (`state.py`, `manager.py`) live in `proxy/tokens/`.

- `OAuth2Scheme.auth_flow`: send with the current token; on a 401 to a request whose body was
  kept, ask the driver for a newer token (`Refresh`) and send once more (RFC 6750 §3.1: a 401
  with `invalid_token` means "expired, revoked, malformed"; tokens get revoked before expiry).
- `build_token_request`: the token request bodies of RFC 6749 §4.1.3 (authorization code, with
  RFC 7636 §4.5 `code_verifier`), §4.3.2 (password), §4.4.2 (client credentials) and §6
  (refresh), with client authentication per §2.3.1 as HTTP Basic or form parameters.
- `parse_token_response`: RFC 6749 §5.1 (success) and §5.2 (error) answers.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote_plus, urlencode, urlsplit

from pydantic import SecretStr

from ..config import models as m
from ..messages import AuthFlow, OutboundRequest, Refresh, RequestPatch, Send, TokenSet
from .base import Scheme, SchemeConfigError, SigningContext
from .bearer import bearer_patch
from .jws import KeyProblem, algorithm_for, check_algorithm, load_signing_key
from .jwt_assertion import JwtAssertion, client_assertion_params

# The seed's three grants, and the JWT bearer flavors of `jwt-bearer` (jwt_bearer.py).
GrantType = Literal["authorizationCode", "clientCredentials", "password", "jwtBearer", "githubApp"]
ClientAuth = Literal["basic", "form"]
# `oauth2.clientAuth`: unset tries Basic, then form (docs/request-path.md).
ClientAuthSetting = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]

# Names the proxy itself puts into a token request; `additionalTokenParams` may not replace them.
RESERVED_TOKEN_PARAMS = frozenset(
    {
        "grant_type",
        "refresh_token",
        "scope",
        "client_id",
        "client_secret",
        "username",
        "password",
        "code",
        "redirect_uri",
        "code_verifier",
        "assertion",
        "client_assertion",
        "client_assertion_type",
    }
)

# RFC 6749 §5.2: `error` values are NQSCHAR = %x20-21 / %x23-5B / %x5D-7E. Anything else (or
# anything long) is not a code and is not repeated.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")


@dataclass(frozen=True, slots=True)
class OAuth2Settings:
    """Everything needed to obtain tokens for one credential; secrets stay out of `repr()`."""

    grant: GrantType
    token_url: str | None
    client_id: str
    client_secret: str = field(default="", repr=False)
    scopes: tuple[str, ...] = ()
    additional_params: Mapping[str, str] = field(default_factory=dict, repr=False)
    mtls: bool = False
    # The certificate credential for the token endpoint; None: the connection's own.
    mtls_credential_id: str | None = None
    seed_token: TokenSet | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # An `oauth2-code` credential's authorization code, exchanged once for the first token.
    code: str | None = field(default=None, repr=False)
    client_auth: ClientAuthSetting | None = None
    # `private_key_jwt`: the client's RFC 7523 §2.2 assertion (its key was the client secret).
    client_assertion: JwtAssertion | None = None
    # `jwt-bearer`: the grant's own JWT (RFC 7523 §2.1, or a GitHub App's).
    assertion: JwtAssertion | None = None

    @property
    def scope(self) -> str | None:
        # RFC 6749 §3.3: space-delimited.
        return " ".join(self.scopes) if self.scopes else None

    def seed_identity(self) -> str:
        """The credential material a stored token descends from (fingerprinted, never stored)."""
        seed = self.seed_token
        identity: list[Any] = [
            self.grant,
            self.token_url,
            self.client_id,
            self.client_secret,
            list(self.scopes),
            self.username,
            self.password,
            self.code,
            None if seed is None else [seed.access_token, seed.refresh_token],
        ]
        jwt = [self.client_auth, self.client_assertion, self.assertion]
        if any(item is not None for item in jwt):
            # Appended only when set: the tokens stored before these settings existed keep
            # their fingerprints.
            identity += [
                item if isinstance(item, str | None) else dataclasses.asdict(item) for item in jwt
            ]
        return json.dumps(identity)


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A token endpoint request: POST `url` with a form body; secrets stay out of `repr()`."""

    url: str
    form: tuple[tuple[str, str], ...] = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(repr=False)

    def body(self) -> bytes:
        return urlencode(self.form).encode()


class TokenEndpointError(Exception):
    """The token endpoint did not give a token.

    Attributes:
        error: the provider's RFC 6749 §5.2 `error` code when it sent one (`invalid_grant`), else
            a code of ours (`token_endpoint_status_503`, `not_json`, `missing_access_token`).
        status: the HTTP status, or 0 when there was no answer.
    """

    def __init__(self, error: str, status: int = 0) -> None:
        super().__init__(error)
        self.error = error
        self.status = status

    def __repr__(self) -> str:
        return f"TokenEndpointError({self.error!r}, status={self.status})"

    @property
    def rejects_client(self) -> bool:
        """RFC 6749 §5.2: `invalid_client` (may come as 401) — try the other client auth."""
        return self.error == "invalid_client" or self.status == 401


def refresh_params(token: TokenSet) -> list[tuple[str, str]]:
    """RFC 6749 §6. `scope` is left out: the refreshed token keeps the original scope."""
    assert token.refresh_token is not None
    return [("grant_type", "refresh_token"), ("refresh_token", token.refresh_token)]


def client_credentials_params(scope: str | None) -> list[tuple[str, str]]:
    """RFC 6749 §4.4.2."""
    params = [("grant_type", "client_credentials")]
    return params + [("scope", scope)] if scope else params


def password_params(username: str, password: str, scope: str | None) -> list[tuple[str, str]]:
    """RFC 6749 §4.3.2."""
    params = [("grant_type", "password"), ("username", username), ("password", password)]
    return params + [("scope", scope)] if scope else params


def authorization_code_params(
    code: str, redirect_uri: str, code_verifier: str | None = None
) -> list[tuple[str, str]]:
    """RFC 6749 §4.1.3, plus RFC 7636 §4.5 `code_verifier` for PKCE."""
    params = [("grant_type", "authorization_code"), ("code", code)]
    params.append(("redirect_uri", redirect_uri))
    return params + [("code_verifier", code_verifier)] if code_verifier else params


def basic_client_auth(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded (Appendix B), then RFC 7617 Basic."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def build_token_request(
    token_url: str,
    params: Sequence[tuple[str, str]],
    *,
    client_id: str,
    client_secret: str,
    client_auth: ClientAuth,
    additional: Mapping[str, str] | None = None,
    client_assertion: str | None = None,
) -> TokenRequest:
    """The token request for the grant `params`, with client authentication in `client_auth`.

    A public client (no secret) always identifies itself with `client_id` in the body
    (RFC 6749 §3.2.1): there is no password to put into Basic. A `client_assertion` (a signed
    JWT, RFC 7523 §2.2) authenticates the client instead of a secret, in the body beside
    `client_id`.
    """
    form = [*params, *(additional or {}).items()]
    if client_assertion is not None:
        form += [("client_id", client_id), *client_assertion_params(client_assertion)]
        return TokenRequest(token_url, tuple(form), _TOKEN_REQUEST_HEADERS)
    headers = list(_TOKEN_REQUEST_HEADERS)
    if client_auth == "basic" and client_secret:
        headers.append(("Authorization", basic_client_auth(client_id, client_secret)))
    else:
        # RFC 6749 §2.3.1: "MAY include the client credentials in the request-body"
        form.append(("client_id", client_id))
        if client_secret:
            form.append(("client_secret", client_secret))
    return TokenRequest(token_url, tuple(form), tuple(headers))


_TOKEN_REQUEST_HEADERS = (
    ("Content-Type", "application/x-www-form-urlencoded"),
    # GitHub and others answer form-encoded unless JSON is asked for.
    ("Accept", "application/json"),
)


def _error_code(data: Any) -> str | None:
    if isinstance(data, dict):
        code = data.get("error")
        if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
            return code
    return None


def _expires_in(value: Any) -> float | None:
    # RFC 6749 §5.1 says a number of seconds; some providers send it as a string.
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def parse_token_response(
    status: int,
    body: bytes,
    *,
    now: float,
    previous: TokenSet | None = None,
    requested_scope: str | None = None,
) -> TokenSet:
    """Turn a token endpoint answer into a `TokenSet` (RFC 6749 §5.1) or raise (§5.2).

    `error_description` is never kept: providers echo request values in it, which can be a
    secret. Only the `error` code (a fixed vocabulary) travels into our error details.

    Raises:
        TokenEndpointError: an error answer, a server failure, or an unusable success answer.
    """
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status != 200:
        code = _error_code(data)
        raise TokenEndpointError(code or f"token_endpoint_status_{status}", status)
    if not isinstance(data, dict):
        raise TokenEndpointError("not_json", status)
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise TokenEndpointError(_error_code(data) or "missing_access_token", status)
    token_type = data.get("token_type")
    if not isinstance(token_type, str) or not token_type:
        token_type = "Bearer"  # required by §5.1, but some providers leave it out
    elif token_type.lower() == "bearer":
        # §5.1: case-insensitive; some resource servers only accept the RFC 6750 spelling.
        token_type = "Bearer"
    refresh = data.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        # §6: a new refresh token replaces the old one; without one, the old one stays valid.
        refresh = previous.refresh_token if previous is not None else None
    expires_in = _expires_in(data.get("expires_in"))
    scope = data.get("scope")
    if not isinstance(scope, str):
        scope = requested_scope  # §5.1: omitted when identical to the requested scope
    return TokenSet(
        access_token=access,
        token_type=token_type,
        refresh_token=refresh,
        expires_at=None if expires_in is None else now + expires_in,
        scope=scope,
        lifetime=expires_in,
    )


def parse_expires_at(text: str) -> float:
    """RFC 3339 / ISO 8601 with an offset (`Z` accepted) → unix seconds."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no time zone offset")
    return parsed.timestamp()


class OAuth2Scheme(Scheme):
    """Applies the current token; asks for one refresh and one retry on a 401."""

    type_name = "oauth2"
    needs_token = True
    wants_replayable_body = True
    sets_headers = frozenset({"authorization"})

    def __init__(self, credential_id: str, settings: OAuth2Settings) -> None:
        self.credential_id = credential_id
        self.settings = settings

    def __repr__(self) -> str:
        return f"OAuth2Scheme({self.credential_id!r}, {self.settings!r})"

    def can_refresh(self, token: TokenSet | None) -> bool:
        """Whether a new token can be had without a person: a grant, or a refresh token."""
        if self.settings.token_url is None:
            return False
        if self.settings.grant == "authorizationCode":
            if self.settings.code is not None and (token is None or not token.access_token):
                return True  # the code is exchanged for the first token
            return token is not None and token.refresh_token is not None
        return True

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        token = ctx.token
        if token is None:
            raise ValueError("oauth2 needs a token in the signing context")
        return bearer_patch(token.access_token, token.token_type)

    def auth_flow(self, request: OutboundRequest, ctx: SigningContext) -> AuthFlow:
        reply = yield Send(request.patched(self.sign(request, ctx)))
        stale = ctx.token
        # Retry only when the request can be sent again as it was (body kept, docs/request-path.md).
        if reply.status != 401 or not request.replayable or not self.can_refresh(stale):
            return
        assert stale is not None
        fresh = yield Refresh(stale=stale)
        yield Send(request.patched(bearer_patch(fresh.access_token, fresh.token_type)))

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "type": self.type_name,
            "grant": s.grant,
            "tokenUrl": s.token_url,
            "clientId": s.client_id,
            "scopes": list(s.scopes),
            "mtlsEnabled": s.mtls,
            **({"clientAuth": s.client_auth} if s.client_auth else {}),
        }


def check_token_url(url: str | None, field_name: str) -> None:
    """Raise `SchemeConfigError` at `field_name` unless `url` is an absolute http(s) URL."""
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SchemeConfigError(field_name, "must be an absolute http(s) URL")


def _grant_client(client: m.GrantClient, here: str) -> tuple[str, SecretStr]:
    if client.client_id is None:
        raise SchemeConfigError(f"{here}.clientId", "required")
    return client.client_id, client.client_secret


def seed_token(value: m.OAuth2TokenValue) -> TokenSet:
    """The token an `oauth2Token` credential brings (a Go zero `tokenType` is already Bearer)."""
    expires_at = None
    if value.expires_at:
        try:
            expires_at = parse_expires_at(value.expires_at)
        except ValueError:
            raise SchemeConfigError(
                "credential.data.oauth2Token.expiresAt",
                "must be an RFC 3339 time with an offset (2030-01-31T12:00:00Z)",
            ) from None
    refresh = value.refresh_token.get_secret_value() if value.refresh_token else None
    token = TokenSet(
        access_token=value.access_token.get_secret_value(),
        token_type=value.token_type,
        refresh_token=refresh or None,
        expires_at=expires_at,
        scope=" ".join(value.scopes) or None,
    )
    if not token.access_token and token.refresh_token is None:
        raise SchemeConfigError(
            "credential.data.oauth2Token", "needs an accessToken or a refreshToken"
        )
    return token


def token_params(params: m.OAuth2Params, cred: m.Credential | None = None) -> dict[str, str]:
    """`additionalTokenParams` of the scheme, then the credential's own `additionalParams`
    (`oauth2Client`, `oauth2Code`), which win for a name both give.

    Raises:
        SchemeConfigError: a parameter the proxy sets itself.
    """
    sources: list[tuple[str, str | None]] = [
        ("authSchemeConfig.oauth2.additionalTokenParams", params.additional_token_params)
    ]
    if isinstance(cred, m.OAuth2ClientCredential):
        own = cred.data.oauth2_client.additional_params
        sources.append(("credential.data.oauth2Client.additionalParams", own))
    elif isinstance(cred, m.OAuth2CodeCredential):
        sources.append(
            ("credential.data.oauth2Code.additionalParams", cred.data.oauth2_code.additional_params)
        )
    merged: dict[str, str] = {}
    for field_name, text in sources:
        for name, value in m.url_params(text):
            if name in RESERVED_TOKEN_PARAMS:
                raise SchemeConfigError(f"{field_name}.{name}", "is set by the proxy itself")
            merged[name] = value
    return merged


def build_oauth2_scheme(
    auth: m.OAuth2SchemeConfig,
    cred: m.OAuth2TokenCredential
    | m.OAuth2ClientCredential
    | m.OAuth2PasswordCredential
    | m.OAuth2CodeCredential,
    credential_id: str,
) -> OAuth2Scheme:
    """Build an `OAuth2Scheme` from a compatible (already checked) scheme config and credential.

    Raises:
        SchemeConfigError: missing token URL, bad `expiresAt`, reserved additional parameter.
    """
    params = auth.oauth2
    here = "authSchemeConfig.oauth2"
    additional = token_params(params, cred)
    scopes = tuple(params.default_scopes)  # `scopes` is the catalogue, these are requested
    token_url = params.token_url
    mtls, mtls_credential_id = params.mtls_enabled, params.mtls_credential_id
    seed: TokenSet | None = None
    username = password = code = None
    grant = params.grant
    if isinstance(grant, m.AuthorizationCodeGrant) and isinstance(cred, m.OAuth2TokenCredential):
        client_id, secret = _grant_client(
            grant.authorization_code, f"{here}.grant.authorizationCode"
        )
        seed = seed_token(cred.data.oauth2_token)
        need_url = seed.refresh_token is not None
    elif isinstance(grant, m.ClientCredentialsGrant) and isinstance(cred, m.OAuth2ClientCredential):
        client = cred.data.oauth2_client
        client_id, secret = client.client_id, client.client_secret
        # docs/configuration.md: the credential's own tokenUrl/scopes/mTLS settings win.
        token_url = client.token_url or token_url
        scopes = tuple(client.scopes) if client.scopes is not None else scopes
        if client.mtls_enabled is not None:
            mtls = client.mtls_enabled
        mtls_credential_id = client.mtls_credential_id or mtls_credential_id
        need_url = True
    elif isinstance(grant, m.PasswordGrant) and isinstance(cred, m.OAuth2PasswordCredential):
        client_id, secret = _grant_client(grant.password, f"{here}.grant.password")
        username = cred.data.oauth2_password.username
        password = cred.data.oauth2_password.password.get_secret_value()
        need_url = True
    elif isinstance(grant, m.AuthorizationCodeGrant) and isinstance(cred, m.OAuth2CodeCredential):
        pair = grant.authorization_code
        client_id, secret = _grant_client(pair, f"{here}.grant.authorizationCode")
        code = cred.data.oauth2_code.code.get_secret_value()
        need_url = True
    else:  # pragma: no cover - compatibility is checked before schemes are built
        raise SchemeConfigError("credential.type", "does not fit the grant")
    if token_url is None and need_url:
        raise SchemeConfigError(f"{here}.tokenUrl", f"is required for grant {grant.type!r}")
    check_token_url(token_url, f"{here}.tokenUrl")
    client_assertion = client_assertion_of(params, client_id, secret, token_url, cred)
    settings = OAuth2Settings(
        grant=grant.type,
        token_url=token_url,
        client_id=client_id,
        client_secret=secret.get_secret_value(),
        scopes=scopes,
        additional_params=additional,
        mtls=mtls or mtls_credential_id is not None,
        mtls_credential_id=mtls_credential_id,
        seed_token=seed,
        username=username,
        password=password,
        code=code,
        client_auth=params.client_auth,
        client_assertion=client_assertion,
    )
    return OAuth2Scheme(credential_id, settings)


def _client_secret_field(cred: m.Credential | None, grant: m.OAuth2Grant) -> str:
    if isinstance(cred, m.OAuth2ClientCredential):
        return "credential.data.oauth2Client.clientSecret"
    return f"authSchemeConfig.oauth2.grant.{grant.type}.clientSecret"


def client_assertion_of(
    params: m.OAuth2Params,
    client_id: str,
    secret: SecretStr,
    token_url: str | None,
    cred: m.Credential | None,
) -> JwtAssertion | None:
    """With `clientAuth: private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9), how to make
    the client's assertion: the client secret field holds the client's private key; `iss` =
    `sub` = the client id, `aud` = the token endpoint unless `clientAssertion.audience` names
    another (some servers want their issuer URL). None for the other client authentications.

    Raises:
        SchemeConfigError: no key, or one that cannot sign with the algorithm named.
    """
    if params.client_auth != "private_key_jwt":
        return None
    here = _client_secret_field(cred, params.grant)
    options = params.client_assertion or m.ClientAssertionParams()
    pem = secret.get_secret_value()
    if not pem:
        raise SchemeConfigError(
            here, "required with clientAuth private_key_jwt: the client's private key (PEM)"
        )
    try:
        key = load_signing_key(pem)
        algorithm = options.algorithm or algorithm_for(key)
        check_algorithm(key, algorithm)
    except KeyProblem as exc:
        raise SchemeConfigError(here, f"{exc} (clientAuth private_key_jwt)") from None
    return JwtAssertion(
        flavor="client-assertion",
        private_key=pem,
        algorithm=algorithm,
        issuer=client_id,
        subject=client_id,
        audience=options.audience or token_url,
        lifetime=options.lifetime,
        key_id=options.key_id,
    )
