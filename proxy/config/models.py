"""Pydantic models of the seed shapes (docs/configuration.md): camelCase on the wire, snake_case in
Python.

This module is the only place where YAML/JSON names meet Python names. Every model forbids
unknown keys, so a typo is a field error rather than a silently dropped credential. Secret values
are `SecretStr`: they dump as `**********` and never show in a `repr()`.

`authSchemeConfig` and `credential` are unions tagged by `type`, which gives field paths such as
`credentials[0].authSchemeConfig.apiKey.in` (the tag itself is removed from the path by
`config.load.field_path`).
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

from .address import check_host_name, check_host_port
from .clients import Client, Policy
from .hosts import check_host_pattern


class Model(BaseModel):
    # `strict`: the seed's types and nothing else (docs/configuration.md "Types"): `"false"` is
    # not a boolean and `"8080"` not a number, in proxy.yaml and API bodies alike.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True
    )


NonEmpty = Annotated[str, Field(min_length=1)]
HostPort = Annotated[str, AfterValidator(check_host_port)]

# --- seed conventions ---------------------------------------------------------------------

# What a Go exporter writes for an unset time.Time.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def is_go_zero(value: Any) -> bool:
    """`null`, `""`, `0` and the zero time: what a Go exporter writes for an unset field."""
    if value is None or value == "":
        return True
    if type(value) is int and value == 0:  # not `False`: a boolean is never "unset"
        return True
    return isinstance(value, str) and value.startswith("0001-01-01T00:00:00")


class SeedModel(Model):
    """A seed shape (the Versori Platform API is written in Go): a Go zero value given for an
    optional field means "unset", so the field keeps its default (`tokenType: ""` is `Bearer`,
    `digestInputs: null` is `[body]`). A required field keeps the value and reports it."""

    @model_validator(mode="before")
    @classmethod
    def _go_zero_values_are_unset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        optional = _optional_keys(cls)
        return {k: v for k, v in data.items() if not (k in optional and is_go_zero(v))}


@functools.cache
def _optional_keys(cls: type[BaseModel]) -> frozenset[str]:
    keys: set[str] = set()
    for name, info in cls.model_fields.items():
        if info.is_required():
            continue
        keys.update({name, info.alias or name})
        if isinstance(info.validation_alias, AliasChoices):
            keys.update(c for c in info.validation_alias.choices if isinstance(c, str))
        elif isinstance(info.validation_alias, str):
            keys.add(info.validation_alias)
    return frozenset(keys)


def _must_be_empty(value: Any) -> None:
    if _is_zero_tree(value):
        return None
    raise ValueError("only the object named by `type` is read: this one must be {} or null")


def _is_zero_tree(value: Any) -> bool:
    """`null`, `{}`, or what a Go exporter writes for an unset struct: an object whose every
    value is a Go zero (`""`, `0`, `false`, `null`, `[]`, the zero time, or such an object)."""
    if isinstance(value, dict):
        return all(_is_zero_tree(item) for item in value.values())
    return value is False or value == [] or is_go_zero(value)


# A sibling object that `type` does not select (seed 000 shows all seven filled): ignored when
# `{}` or null, an error otherwise, so a credential put in the wrong place is never dropped.
Unselected = Annotated[
    Any,
    AfterValidator(_must_be_empty),
    WithJsonSchema({"anyOf": [{"type": "object", "maxProperties": 0}, {"type": "null"}]}),
]


def _ignored(value: Any) -> None:
    return None


class Message(SeedModel):
    """Seed `Message` (in `validationMessages`)."""

    text: str
    severity: Literal["info", "warning", "error"]
    detail: list[str] = []


class Empty(SeedModel):
    """`{}`: a seed object without properties (`CredentialDataNone`, grant `clientCredentials`)."""


def _mtls(camel: str) -> Any:
    """Either spelling of mTLS (`mtlsEnabled`, `mTLSEnabled`), written back as `camel`."""
    rest = camel[4:]
    other = ("mTLS" if camel.startswith("mtls") else "mtls") + rest
    return Field(
        default=None,
        validation_alias=AliasChoices(camel, other, to_snake("mtls" + rest)),
        serialization_alias=camel,
    )


def url_params(text: str | None) -> list[tuple[str, str]]:
    """A URL-encoded parameter string (`audience=x&foo=bar`) as ordered pairs; None: none."""
    if not text:
        return []
    return parse_qsl(text, keep_blank_values=True, strict_parsing=True)


def _url_params_text(value: Any) -> Any:
    # A mapping is accepted too (what earlier versions read) and written the seed's way.
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return urlencode(list(value.items()), quote_via=quote)
    return value


def _check_url_params(text: str) -> str:
    try:
        pairs = url_params(text)
    except ValueError:
        raise ValueError(
            "must be a URL-encoded query string such as 'audience=x&foo=bar'"
        ) from None
    if any(not name for name, _ in pairs):
        raise ValueError("a parameter has an empty name")
    return text


# A seed "URL-encoded query string" of extra parameters.
UrlParams = Annotated[str, BeforeValidator(_url_params_text), AfterValidator(_check_url_params)]

# --- auth scheme configs ------------------------------------------------------------------


class SchemeBase(SeedModel):
    """Seed `AuthSchemeConfigBase`: on every scheme sub-object."""

    id: str | None = None
    description: str | None = None
    # "This field will be ignored if sent to the API" (seed 001): checked, then dropped.
    validation_messages: Annotated[list[Message] | None, AfterValidator(_ignored)] = None


class SchemeConfigBase(SeedModel):
    """The seed `AuthSchemeConfig`: `type` selects one sub-object, the others stay empty."""

    none: Unselected = None
    api_key: Unselected = None
    basic_auth: Unselected = None
    bearer: Unselected = None
    oauth2: Unselected = None
    oauth1: Unselected = None
    hmac: Unselected = None
    certificate: Unselected = None
    http_signature: Unselected = None
    aws_sig_v4: Unselected = None
    jwt_bearer: Unselected = None
    secret: Unselected = None


class NoneSchemeConfig(SchemeConfigBase):
    type: Literal["none"]
    none: SchemeBase | None = None


class ApiKeyParams(SchemeBase):
    name: NonEmpty
    in_: Literal["header", "query", "cookie"] = Field(alias="in")


class ApiKeySchemeConfig(SchemeConfigBase):
    type: Literal["api-key"]
    api_key: ApiKeyParams


class BasicAuthSchemeConfig(SchemeConfigBase):
    type: Literal["basic-auth"]
    basic_auth: SchemeBase | None = None


class BearerSchemeConfig(SchemeConfigBase):
    """Ours (not in the seeds): `Authorization: Bearer <string credential>`."""

    type: Literal["bearer"]
    bearer: SchemeBase | None = None


class HmacParams(SchemeBase):
    name: NonEmpty
    in_: Literal["header", "query", "cookie"] = Field(alias="in")
    # Required, as in the seed: a guessed algorithm or encoding signs what the upstream rejects.
    algorithm: Literal["sha1", "sha256", "sha512"]
    digest_inputs: Annotated[list[Literal["url", "body"]], Field(min_length=1)] = ["body"]
    encoding: Literal["hex", "base64", "base64url"]


class HmacSchemeConfig(SchemeConfigBase):
    type: Literal["hmac"]
    hmac: HmacParams


class ParameterConfig(SeedModel):
    """Seed `ParameterConfig`: an extra parameter of an OAuth 1.0a endpoint request."""

    parameter_name: NonEmpty
    target_name: str | None = None
    location: Literal[
        "LOCATION_IGNORE",
        "LOCATION_BODY",
        "LOCATION_HEADER",
        "LOCATION_QUERY",
        "LOCATION_ENDPOINT",
        "LOCATION_HEADER_PARAMETER",
    ]
    usages: Literal[
        "USAGE_UNKNOWN", "USAGE_TEMP_CREDENTIAL_ENDPOINT", "USAGE_TOKEN_REQUEST_ENDPOINT"
    ] = "USAGE_UNKNOWN"
    required: bool = False
    modifiable: bool = False


class Endpoint(SeedModel):
    """Seed `Endpoint`: `url` may hold `{placeholders}`."""

    url: NonEmpty
    additional_param_configs: list[ParameterConfig] = []
    parameter_transmission: Literal[
        "AUTH_STYLE_AUTHORIZATION_HEADER", "AUTH_STYLE_FORM", "AUTH_STYLE_QUERY"
    ] = "AUTH_STYLE_AUTHORIZATION_HEADER"


_SIGNATURE_METHODS = {"hmac-sha1": "sha1", "hmac-sha256": "sha256"}


def _signature_method(value: Any) -> Any:
    # The seed says 'sha256' or 'sha1'; RFC 5849 names (`HMAC-SHA256`) are read as the same.
    if isinstance(value, str):
        return _SIGNATURE_METHODS.get(value.lower(), value)
    return value


class OAuth1Params(SchemeBase):
    # Plain configuration in the seed (shown by reads, sent in every request); only the consumer
    # secret is one. Kept out of `repr()` all the same.
    consumer_key: NonEmpty = Field(repr=False)
    consumer_secret: SecretStr
    # Required, as in the seed: the upstream verifies one method only.
    signature_method: Annotated[Literal["sha1", "sha256"], BeforeValidator(_signature_method)]
    # Seed default false: the three endpoints are needed and the connect flow makes the token.
    token_auth: bool = False
    temp_credential_endpoint: Endpoint | None = None
    resource_owner_authorization_endpoint: Endpoint | None = None
    token_endpoint: Endpoint | None = None
    credential_id: str | None = None


class OAuth1SchemeConfig(SchemeConfigBase):
    type: Literal["oauth1"]
    oauth1: OAuth1Params


class GrantClient(SeedModel):
    """Seed `AuthSchemeConfigOAuth2GrantAuthorizationCode` / `...GrantPassword`."""

    credential_id: str | None = None
    organisation_id: str | None = None
    client_id: NonEmpty | None = None
    client_secret: SecretStr = SecretStr("")


class GrantBase(SeedModel):
    authorization_code: Unselected = None
    client_credentials: Unselected = None
    password: Unselected = None


class AuthorizationCodeGrant(GrantBase):
    type: Literal["authorizationCode"]
    authorization_code: GrantClient


class PasswordGrant(GrantBase):
    type: Literal["password"]
    password: GrantClient


class ClientCredentialsGrant(GrantBase):
    """The client comes from the `oauth2-client` credential; `clientCredentials` is `{}`."""

    type: Literal["clientCredentials"]
    client_credentials: Empty | None = None


OAuth2Grant = Annotated[
    AuthorizationCodeGrant | PasswordGrant | ClientCredentialsGrant, Field(discriminator="type")
]


class OAuth2Scope(SeedModel):
    """Seed `OAuth2Scope`: one entry of the scope catalogue."""

    name: NonEmpty
    description: str | None = None


def _scope_object(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "`scopes` is the catalogue of {name, description} objects; "
            "the scopes to request go in `defaultScopes`"
        )
    return value


JwtAlgorithm = Literal["RS256", "ES256", "EdDSA"]
# Seconds a signed assertion is valid; RFC 7523 §3 asks for a limited window.
AssertionLifetime = Annotated[int, Field(gt=0, le=3600)]


class ClientAssertionParams(SeedModel):
    """Ours: the JWT of `clientAuth: private_key_jwt` (RFC 7523 §2.2); all optional."""

    algorithm: JwtAlgorithm | None = None  # by default the one the key signs with
    key_id: str | None = None
    audience: str | None = None  # by default the token URL
    lifetime: AssertionLifetime = 300


class OAuth2Params(SchemeBase):
    authorize_url: str | None = None
    token_url: str | None = None
    # The catalogue of what the application supports (seed); `defaultScopes` are requested.
    scopes: list[Annotated[OAuth2Scope, BeforeValidator(_scope_object)]] = []
    default_scopes: list[NonEmpty] = []
    additional_authorize_params: UrlParams | None = None
    additional_token_params: UrlParams | None = None
    mtls_enabled: bool = _mtls("mtlsEnabled")
    mtls_credential_id: str | None = _mtls("mtlsCredentialId")
    pkce: bool = True
    grant: OAuth2Grant
    # Ours: how the client authenticates at the token endpoint; unset: Basic, then form.
    # `private_key_jwt`: the client secret field holds the client's private key (PEM).
    client_auth: Literal["client_secret_basic", "client_secret_post", "private_key_jwt"] | None = (
        None
    )
    client_assertion: ClientAssertionParams | None = None

    @field_validator("mtls_enabled", mode="before")
    @classmethod
    def _unset_is_false(cls, value: Any) -> Any:
        return False if value is None else value


class OAuth2SchemeConfig(SchemeConfigBase):
    type: Literal["oauth2"]
    oauth2: OAuth2Params


class CertificateSchemeConfig(SchemeConfigBase):
    type: Literal["certificate"]
    certificate: SchemeBase | None = None


def _sf_key(value: str) -> str:
    # RFC 8941 §3.1.2: a Dictionary key (the signature's label in Signature-Input).
    if not re.fullmatch(r"[a-z*][a-z0-9_\-.*]*", value):
        raise ValueError("must be a structured-field key: lowercase letters, digits, _-.* ")
    return value


class HttpSignatureParams(SchemeBase):
    """Ours: RFC 9421 HTTP Message Signatures (docs/http-signature.md); which fields a profile
    needs is checked with the key, in `schemes/http_signature.py`."""

    profile: Literal["web-bot-auth", "custom"] = "custom"
    key_id: NonEmpty | None = None
    algorithm: Literal["ed25519", "ecdsa-p256-sha256", "rsa-pss-sha512", "hmac-sha256"] | None = (
        None
    )
    components: list[NonEmpty] | None = None
    label: Annotated[str, AfterValidator(_sf_key)] = "sig1"
    tag: NonEmpty | None = None
    expires_in: Annotated[int, Field(gt=0)] | None = None
    content_digest: Literal["sha-256", "sha-512"] | None = None


class HttpSignatureSchemeConfig(SchemeConfigBase):
    type: Literal["http-signature"]
    http_signature: HttpSignatureParams


# An AWS SigV4 credential scope part (`us-east-1`, `s3`, `execute-api`): it goes between the
# scope's `/`s, so it is a plain lowercase word.
AwsScopePart = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]


class AwsSigV4Params(SchemeBase):
    """Ours (not in the seeds): AWS Signature Version 4 (docs/aws-sigv4.md). `region` and
    `service` left out are read from the client's own credential scope."""

    region: AwsScopePart | None = None
    service: AwsScopePart | None = None
    in_: Literal["header", "query"] = Field(default="header", alias="in")
    # `X-Amz-Expires` of a presigned (`in: query`) request; AWS allows at most seven days.
    expires: Annotated[int, Field(ge=1, le=604800)] = 3600


class AwsSigV4SchemeConfig(SchemeConfigBase):
    type: Literal["aws-sigv4"]
    aws_sig_v4: AwsSigV4Params = AwsSigV4Params()


class JwtBearerParams(SchemeBase):
    """Seed type `jwt-bearer`, whose sub-object the seed leaves undefined (ours,
    docs/jwt-bearer.md): a token obtained with a signed JWT."""

    # Required: each flavor speaks another protocol to another endpoint.
    flavor: Literal["rfc7523", "github-app", "google-service-account"]
    token_url: str | None = None
    issuer: str | None = None
    subject: str | None = None
    audience: str | None = None
    scopes: list[NonEmpty] = []
    algorithm: JwtAlgorithm | None = None
    key_id: str | None = None
    lifetime: AssertionLifetime | None = None


class JwtBearerSchemeConfig(SchemeConfigBase):
    type: Literal["jwt-bearer"]
    jwt_bearer: JwtBearerParams


class SecretParams(SchemeBase):
    """Ours: seed 001 names the `secret` type but gives it no object. The placeholder a client
    holds instead of the secret, and the headers where the proxy swaps it for the secret
    (docs/placeholders.md). The placeholder is not a secret: clients are meant to hold it."""

    placeholder: NonEmpty
    headers: Annotated[list[NonEmpty], Field(min_length=1)]


class SecretSchemeConfig(SchemeConfigBase):
    type: Literal["secret"]
    secret: SecretParams


AuthSchemeConfig = Annotated[
    NoneSchemeConfig
    | ApiKeySchemeConfig
    | BasicAuthSchemeConfig
    | BearerSchemeConfig
    | HmacSchemeConfig
    | OAuth1SchemeConfig
    | OAuth2SchemeConfig
    | CertificateSchemeConfig
    | HttpSignatureSchemeConfig
    | AwsSigV4SchemeConfig
    | JwtBearerSchemeConfig
    | SecretSchemeConfig,
    Field(discriminator="type"),
]

# --- credentials --------------------------------------------------------------------------


class CredentialBase(SeedModel):
    """Seed `Credential` without `type`/`data`."""

    id: str | None = None
    organisation_id: str | None = None
    name: str | None = None
    # "validation errors" the platform computed: ignored on input, like validationMessages.
    errors: Annotated[list[str] | None, AfterValidator(_ignored)] = None
    # Seed: when the credential is deleted; after it, requests get 502 credential_expired.
    expires_at: str | None = None


class DataBase(SeedModel):
    """Seed `CredentialData`: the object named after the credential type is read."""

    binary: Unselected = None
    none: Unselected = None
    string: Unselected = None
    basic_auth: Unselected = None
    oauth2_client: Unselected = Field(default=None, alias="oauth2Client")
    oauth2_token: Unselected = Field(default=None, alias="oauth2Token")
    oauth2_code: Unselected = Field(default=None, alias="oauth2Code")
    oauth2_password: Unselected = Field(default=None, alias="oauth2Password")
    certificate: Unselected = None
    oauth1: Unselected = None
    oauth1_token: Unselected = Field(default=None, alias="oauth1Token")
    aws: Unselected = None


class NoneData(DataBase):
    none: Empty | None = None


class NoneCredential(CredentialBase):
    type: Literal["none"]
    data: NoneData = NoneData()


class StringValue(SeedModel):
    value: SecretStr


class StringData(DataBase):
    string: StringValue


class StringCredential(CredentialBase):
    type: Literal["string"]
    data: StringData


class BinaryValue(SeedModel):
    value_base64: SecretStr


class BinaryData(DataBase):
    binary: BinaryValue


class BinaryCredential(CredentialBase):
    type: Literal["binary"]
    data: BinaryData


class BasicAuthValue(SeedModel):
    # Not a secret by the seed (the management API shows it), but Stripe puts its secret key
    # here, so it is kept out of `repr()` all the same.
    username: str = Field(repr=False)
    password: SecretStr = SecretStr("")


class BasicAuthData(DataBase):
    basic_auth: BasicAuthValue


class BasicAuthCredential(CredentialBase):
    type: Literal["basic-auth"]
    data: BasicAuthData


class CertificateValue(SeedModel):
    certificate: NonEmpty
    key: SecretStr
    ca: str | None = None


class CertificateData(DataBase):
    certificate: CertificateValue


class CertificateCredential(CredentialBase):
    type: Literal["certificate"]
    data: CertificateData


class NameValue(SeedModel):
    """Seed `AdditionalParam`."""

    name: NonEmpty
    value: str = ""


class OAuth1TokenValue(SeedModel):
    token: SecretStr
    token_secret: SecretStr
    additional_params: list[NameValue] = []


class OAuth1TokenData(DataBase):
    oauth1_token: OAuth1TokenValue = Field(alias="oauth1Token")


class OAuth1TokenCredential(CredentialBase):
    type: Literal["oauth1-token"]
    data: OAuth1TokenData


class OAuth1Value(SeedModel):
    """Seed `CredentialDataOAuth1`: the callback of a three-legged flow, to be exchanged."""

    state: str
    oauth_token: NonEmpty
    oauth_verifier: SecretStr


class OAuth1Data(DataBase):
    oauth1: OAuth1Value


class OAuth1Credential(CredentialBase):
    type: Literal["oauth1"]
    data: OAuth1Data


class OAuth2TokenValue(SeedModel):
    access_token: SecretStr = SecretStr("")
    refresh_token: SecretStr | None = None
    # Seed: "Defaults to Bearer if not set"; a Go exporter writes "" for unset.
    token_type: str = "Bearer"
    expires_at: str | None = None
    scopes: list[str] = []


class OAuth2TokenData(DataBase):
    oauth2_token: OAuth2TokenValue = Field(alias="oauth2Token")


class OAuth2TokenCredential(CredentialBase):
    type: Literal["oauth2-token"]
    data: OAuth2TokenData


class OAuth2ClientValue(SeedModel):
    client_id: NonEmpty
    client_secret: SecretStr = SecretStr("")
    token_url: str | None = None
    scopes: list[str] | None = None
    additional_params: UrlParams | None = None
    mtls_enabled: bool | None = _mtls("mTLSEnabled")
    mtls_credential_id: str | None = _mtls("mTLSCredentialId")


class OAuth2ClientData(DataBase):
    oauth2_client: OAuth2ClientValue = Field(alias="oauth2Client")


class OAuth2ClientCredential(CredentialBase):
    type: Literal["oauth2-client"]
    data: OAuth2ClientData


class OAuth2CodeValue(SeedModel):
    """Seed `CredentialDataOAuth2Code`: an authorization code, to be exchanged once."""

    code: SecretStr
    state: str = ""
    additional_params: UrlParams | None = None


class OAuth2CodeData(DataBase):
    oauth2_code: OAuth2CodeValue = Field(alias="oauth2Code")


class OAuth2CodeCredential(CredentialBase):
    type: Literal["oauth2-code"]
    data: OAuth2CodeData


class OAuth2PasswordValue(SeedModel):
    username: str
    password: SecretStr


class OAuth2PasswordData(DataBase):
    oauth2_password: OAuth2PasswordValue = Field(alias="oauth2Password")


class OAuth2PasswordCredential(CredentialBase):
    type: Literal["oauth2-password"]
    data: OAuth2PasswordData


class AwsValue(SeedModel):
    """Ours (not in the seeds): an AWS access key, and the session token of temporary ones."""

    # Not a secret (it is sent in every request's credential scope); out of `repr()` anyway.
    access_key_id: NonEmpty = Field(repr=False)
    secret_access_key: SecretStr
    session_token: SecretStr | None = None


class AwsData(DataBase):
    aws: AwsValue


class AwsCredential(CredentialBase):
    type: Literal["aws"]
    data: AwsData


Credential = Annotated[
    NoneCredential
    | StringCredential
    | BinaryCredential
    | BasicAuthCredential
    | CertificateCredential
    | OAuth1TokenCredential
    | OAuth1Credential
    | OAuth2TokenCredential
    | OAuth2ClientCredential
    | OAuth2CodeCredential
    | OAuth2PasswordCredential
    | AwsCredential,
    Field(discriminator="type"),
]

# Which credential types each scheme accepts (docs/configuration.md); oauth2 also depends on the
# grant.
COMPATIBLE_CREDENTIALS: dict[str, frozenset[str]] = {
    "none": frozenset({"none"}),
    "api-key": frozenset({"string"}),
    "bearer": frozenset({"string"}),
    "basic-auth": frozenset({"basic-auth"}),
    "hmac": frozenset({"string", "binary"}),
    "certificate": frozenset({"certificate"}),
    "oauth1": frozenset({"oauth1-token", "oauth1"}),
    "http-signature": frozenset({"string", "binary"}),
    "aws-sigv4": frozenset({"aws"}),
    "jwt-bearer": frozenset({"string", "binary"}),
    "secret": frozenset({"string"}),
}
OAUTH2_GRANT_CREDENTIALS: dict[str, frozenset[str]] = {
    "authorizationCode": frozenset({"oauth2-token", "oauth2-code"}),
    "clientCredentials": frozenset({"oauth2-client"}),
    "password": frozenset({"oauth2-password"}),
}

# --- connections and the file -------------------------------------------------------------


class ConnectionCredential(SeedModel):
    id: str | None = None
    auth_scheme_config: AuthSchemeConfig
    credential: Credential


class ConnectionCredentialInput(SeedModel):
    """A credential given to the management API for a template: `authSchemeConfig` may be left
    out, and then the template's at the same index is used (docs/admin-api.md)."""

    id: str | None = None
    auth_scheme_config: AuthSchemeConfig | None = None
    credential: Credential


class Connection(SeedModel):
    """Seed `Connection` (000/001), plus our `route`, `externalId` and two switches."""

    id: str | None = None
    name: NonEmpty
    base_url: NonEmpty
    route: str | None = None
    external_id: str | None = None
    connection_template_id: str | None = None
    credentials: list[ConnectionCredential] = []
    # Kept and echoed (RFC 3339); the API sets them on the connections it creates.
    created_at: str | None = None
    updated_at: str | None = None
    system_id: str | None = None
    # Ours: let the client's own Authorization header through (a per-user token), and switch off
    # the rewrite of Location/Content-Location/Link URLs under baseUrl.
    forward_client_authorization: bool = False
    rewrite_response_urls: bool = True
    policy: Policy | None = None  # clients.py: methods and paths allowed through it
    # Forward-proxy mode (hosts.py): the hosts whose CONNECT this connection serves; None: the
    # baseUrl's host.
    hosts: list[Annotated[str, AfterValidator(check_host_pattern)]] | None = None


class Template(SeedModel):
    id: NonEmpty
    name: str | None = None
    route: str | None = None
    base_url: NonEmpty
    auth_scheme_configs: list[AuthSchemeConfig] = []
    policy: Policy | None = None  # inherited by the connections created from the template


ListedHost = Annotated[str, AfterValidator(check_host_name)]


class AdminSettings(Model):
    listen: HostPort = "127.0.0.1:8081"
    token: SecretStr | None = None
    public_url: str | None = None
    # More names the management API answers as `Host` (hosts.py: DNS rebinding); 421 for others.
    allowed_hosts: list[ListedHost] = []
    # Required at GET /metrics when set; the metrics hold no secret, so none is needed by default.
    metrics_token: SecretStr | None = None


def check_store_url(url: SecretStr | None) -> SecretStr | None:
    # The URL may hold a password: the message never repeats it.
    if url is not None and not url.get_secret_value().startswith(("postgresql://", "postgres://")):
        raise ValueError("must be a postgresql:// URL")
    return url


class StoreSettings(Model):
    path: str = ".signing-proxy/state.db"
    key: SecretStr | None = None
    # PostgreSQL for several replicas (docs/operations.md "Several replicas"); wins over `path`.
    url: Annotated[SecretStr | None, AfterValidator(check_store_url)] = None

    @model_validator(mode="after")
    def _key_for_postgres(self) -> StoreSettings:
        if self.url is not None and self.key is None:
            raise ValueError(
                "store.key is required with store.url (a PostgreSQL store has no directory to "
                "keep a key file in)"
            )
        return self


class Limits(Model):
    max_body_bytes: Annotated[int, Field(gt=0)] = 100 * 1024 * 1024
    memory_body_bytes: Annotated[int, Field(ge=0)] = 1024 * 1024
    replay_body_bytes: Annotated[int, Field(ge=0)] = 1024 * 1024
    # A message head (start line and header section) beyond this is refused: a request head by
    # the inbound server, an upstream response head by the upstream client (flat memory).
    max_header_bytes: Annotated[int, Field(gt=0)] = 64 * 1024
    # Client connections served at once; one more is answered 503 and closed.
    max_client_connections: Annotated[int, Field(gt=0)] = 4096


class Timeouts(Model):
    connect: Annotated[float, Field(gt=0)] = 10.0
    read: Annotated[float, Field(gt=0)] = 60.0
    shutdown_grace: Annotated[float, Field(ge=0)] = 30.0
    # A client must send a whole request head within this (408 once bytes arrived).
    client_head: Annotated[float, Field(gt=0)] = 10.0
    # An idle keep-alive client connection is closed after this.
    client_idle: Annotated[float, Field(gt=0)] = 60.0
    # A request body (and its trailers) must make progress within each window of this long.
    client_body: Annotated[float, Field(gt=0)] = 30.0
    # A WebSocket with no byte either way for this long is closed (docs/request-path.md).
    websocket_idle: Annotated[float, Field(gt=0)] = 300.0


class LogSettings(Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


# The one organisation a single proxy serves unless the file names another (docs/design.md).
DEFAULT_ORGANISATION_ID = "01JAAAAAAAAAAAAAAAAAAAAAAA"


class ForwardProxyCA(Model):
    """The CA that signs the forward proxy's leaves, when not generated: PEM text (or
    `${file:...}`), or the path of a PEM file."""

    cert: NonEmpty
    key: SecretStr


class ForwardProxy(Model):
    """docs/forward-proxy.md: the data-plane listener as an `HTTPS_PROXY`."""

    enabled: bool = False
    # A CONNECT to a host no connection binds: 403 host_not_allowed, or a blind tunnel.
    unmatched: Literal["deny", "tunnel"] = "deny"
    # A blind tunnel reaches public addresses only unless this is set (loopback, private,
    # link-local such as cloud metadata, and other special addresses are refused).
    tunnel_private_addresses: bool = False
    ca: ForwardProxyCA | None = None


class ProxyConfig(Model):
    listen: HostPort = "127.0.0.1:8080"
    # When set, the data plane answers only these names as `Host` (plus localhost and IP
    # literals, hosts.py); off by default: sidecars are reached by whatever name a platform gives.
    listen_hosts: list[ListedHost] | None = None
    admin: AdminSettings | None = None
    store: StoreSettings = StoreSettings()
    organisation_id: str = DEFAULT_ORGANISATION_ID
    connections: list[Connection] = []
    templates: list[Template] = []
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    forwarded_headers: bool = False
    log: LogSettings = LogSettings()
    clients: list[Client] = []  # clients.py: when present, every request needs a client key
    forward_proxy: ForwardProxy = ForwardProxy()
