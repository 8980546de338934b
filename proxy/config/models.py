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

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

from .address import check_host_port


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


NonEmpty = Annotated[str, Field(min_length=1)]
HostPort = Annotated[str, AfterValidator(check_host_port)]

# --- auth scheme configs ------------------------------------------------------------------


class NoneSchemeConfig(Model):
    type: Literal["none"]


class ApiKeyParams(Model):
    name: NonEmpty
    in_: Literal["header", "query", "cookie"] = Field(alias="in")


class ApiKeySchemeConfig(Model):
    type: Literal["api-key"]
    api_key: ApiKeyParams


class BasicAuthSchemeConfig(Model):
    type: Literal["basic-auth"]


class BearerSchemeConfig(Model):
    type: Literal["bearer"]


class HmacParams(Model):
    name: NonEmpty
    in_: Literal["header", "query", "cookie"] = Field(alias="in")
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    digest_inputs: Annotated[list[Literal["url", "body"]], Field(min_length=1)] = ["body"]
    encoding: Literal["hex", "base64", "base64url"] = "hex"


class HmacSchemeConfig(Model):
    type: Literal["hmac"]
    hmac: HmacParams


class OAuth1Params(Model):
    consumer_key: SecretStr
    consumer_secret: SecretStr
    signature_method: Literal["sha1", "sha256"] = "sha256"
    token_auth: bool = True
    request_token_url: str | None = None
    authorize_url: str | None = None
    access_token_url: str | None = None


class OAuth1SchemeConfig(Model):
    type: Literal["oauth1"]
    oauth1: OAuth1Params


class ClientSecretPair(Model):
    client_id: NonEmpty
    client_secret: SecretStr = SecretStr("")


class AuthorizationCodeGrant(Model):
    type: Literal["authorizationCode"]
    authorization_code: ClientSecretPair


class PasswordGrant(Model):
    type: Literal["password"]
    password: ClientSecretPair


class ClientCredentialsGrant(Model):
    type: Literal["clientCredentials"]


OAuth2Grant = Annotated[
    AuthorizationCodeGrant | PasswordGrant | ClientCredentialsGrant, Field(discriminator="type")
]


class OAuth2Params(Model):
    authorize_url: str | None = None
    token_url: str | None = None
    scopes: list[str] = []
    default_scopes: list[str] = []
    mtls_enabled: bool = False
    additional_token_params: dict[str, str] = {}
    grant: OAuth2Grant


class OAuth2SchemeConfig(Model):
    type: Literal["oauth2"]
    oauth2: OAuth2Params


class CertificateSchemeConfig(Model):
    type: Literal["certificate"]


AuthSchemeConfig = Annotated[
    NoneSchemeConfig
    | ApiKeySchemeConfig
    | BasicAuthSchemeConfig
    | BearerSchemeConfig
    | HmacSchemeConfig
    | OAuth1SchemeConfig
    | OAuth2SchemeConfig
    | CertificateSchemeConfig,
    Field(discriminator="type"),
]

# --- credentials --------------------------------------------------------------------------


class CredentialBase(Model):
    id: str | None = None
    name: str | None = None
    expires_at: str | None = None


class NoneCredential(CredentialBase):
    type: Literal["none"]
    data: dict[str, None] = {}


class StringValue(Model):
    value: SecretStr


class StringData(Model):
    string: StringValue


class StringCredential(CredentialBase):
    type: Literal["string"]
    data: StringData


class BinaryValue(Model):
    value_base64: SecretStr


class BinaryData(Model):
    binary: BinaryValue


class BinaryCredential(CredentialBase):
    type: Literal["binary"]
    data: BinaryData


class BasicAuthValue(Model):
    # Not a secret by the seed (the management API shows it), but Stripe puts its secret key
    # here, so it is kept out of `repr()` all the same.
    username: str = Field(repr=False)
    password: SecretStr = SecretStr("")


class BasicAuthData(Model):
    basic_auth: BasicAuthValue


class BasicAuthCredential(CredentialBase):
    type: Literal["basic-auth"]
    data: BasicAuthData


class CertificateValue(Model):
    certificate: NonEmpty
    key: SecretStr
    ca: str | None = None


class CertificateData(Model):
    certificate: CertificateValue


class CertificateCredential(CredentialBase):
    type: Literal["certificate"]
    data: CertificateData


class NameValue(Model):
    name: NonEmpty
    value: str


class OAuth1TokenValue(Model):
    token: SecretStr
    token_secret: SecretStr
    additional_params: list[NameValue] = []


class OAuth1TokenData(Model):
    oauth1_token: OAuth1TokenValue = Field(alias="oauth1Token")


class OAuth1TokenCredential(CredentialBase):
    type: Literal["oauth1-token"]
    data: OAuth1TokenData


class OAuth2TokenValue(Model):
    access_token: SecretStr = SecretStr("")
    refresh_token: SecretStr | None = None
    token_type: str = "Bearer"
    expires_at: str | None = None
    scopes: list[str] = []


class OAuth2TokenData(Model):
    oauth2_token: OAuth2TokenValue = Field(alias="oauth2Token")


class OAuth2TokenCredential(CredentialBase):
    type: Literal["oauth2-token"]
    data: OAuth2TokenData


class OAuth2ClientValue(Model):
    client_id: NonEmpty
    client_secret: SecretStr = SecretStr("")
    token_url: str | None = None
    scopes: list[str] | None = None


class OAuth2ClientData(Model):
    oauth2_client: OAuth2ClientValue = Field(alias="oauth2Client")


class OAuth2ClientCredential(CredentialBase):
    type: Literal["oauth2-client"]
    data: OAuth2ClientData


class OAuth2PasswordValue(Model):
    username: str
    password: SecretStr


class OAuth2PasswordData(Model):
    oauth2_password: OAuth2PasswordValue = Field(alias="oauth2Password")


class OAuth2PasswordCredential(CredentialBase):
    type: Literal["oauth2-password"]
    data: OAuth2PasswordData


Credential = Annotated[
    NoneCredential
    | StringCredential
    | BinaryCredential
    | BasicAuthCredential
    | CertificateCredential
    | OAuth1TokenCredential
    | OAuth2TokenCredential
    | OAuth2ClientCredential
    | OAuth2PasswordCredential,
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
    "oauth1": frozenset({"oauth1-token"}),
}
OAUTH2_GRANT_CREDENTIAL = {
    "authorizationCode": "oauth2-token",
    "clientCredentials": "oauth2-client",
    "password": "oauth2-password",
}

# --- connections and the file -------------------------------------------------------------


class ConnectionCredential(Model):
    id: str | None = None
    auth_scheme_config: AuthSchemeConfig
    credential: Credential


class ConnectionCredentialInput(Model):
    """A credential given to the management API for a template: `authSchemeConfig` may be left
    out, and then the template's at the same index is used (docs/admin-api.md)."""

    id: str | None = None
    auth_scheme_config: AuthSchemeConfig | None = None
    credential: Credential


class Connection(Model):
    id: str | None = None
    name: NonEmpty
    base_url: NonEmpty
    route: str | None = None
    external_id: str | None = None
    connection_template_id: str | None = None
    credentials: list[ConnectionCredential] = []
    # Ours: let the client's own Authorization header through (a per-user token), and switch off
    # the rewrite of Location/Content-Location/Link URLs under baseUrl.
    forward_client_authorization: bool = False
    rewrite_response_urls: bool = True


class Template(Model):
    id: NonEmpty
    name: str | None = None
    route: str | None = None
    base_url: NonEmpty
    auth_scheme_configs: list[AuthSchemeConfig] = []


class AdminSettings(Model):
    listen: HostPort = "127.0.0.1:8081"
    token: SecretStr | None = None
    public_url: str | None = None


class StoreSettings(Model):
    path: str = ".signing-proxy/state.db"
    key: SecretStr | None = None


class Limits(Model):
    max_body_bytes: Annotated[int, Field(gt=0)] = 100 * 1024 * 1024
    memory_body_bytes: Annotated[int, Field(ge=0)] = 1024 * 1024
    replay_body_bytes: Annotated[int, Field(ge=0)] = 1024 * 1024


class Timeouts(Model):
    connect: Annotated[float, Field(gt=0)] = 10.0
    read: Annotated[float, Field(gt=0)] = 60.0
    shutdown_grace: Annotated[float, Field(ge=0)] = 30.0


class LogSettings(Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


# The one organisation a single proxy serves unless the file names another (README).
DEFAULT_ORGANISATION_ID = "01JAAAAAAAAAAAAAAAAAAAAAAA"


class ProxyConfig(Model):
    listen: HostPort = "127.0.0.1:8080"
    admin: AdminSettings | None = None
    store: StoreSettings = StoreSettings()
    organisation_id: str = DEFAULT_ORGANISATION_ID
    connections: list[Connection] = []
    templates: list[Template] = []
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    forwarded_headers: bool = False
    log: LogSettings = LogSettings()
