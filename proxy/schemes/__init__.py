"""Auth schemes, one module each; `build_scheme()` turns a validated credential into a `Scheme`.

Adding a scheme: write `schemes/<type>.py` with a `Scheme` subclass and add one `case` below.

Pure: no I/O. May import `config/`, `messages` and `errors` only.
"""

from __future__ import annotations

from ..config import models as m
from .api_key import ApiKeyScheme
from .aws_sigv4 import AwsSigV4Scheme
from .base import Scheme, SchemeConfigError, SigningContext
from .basic import BasicAuthScheme
from .bearer import BearerScheme
from .certificate import CertificateScheme
from .header_values import check_header_values
from .hmac import HmacScheme, decode_binary_key
from .http_signature import build_http_signature_scheme
from .jwt_bearer import build_jwt_bearer_scheme
from .none import NoneScheme
from .oauth1 import OAuth1Scheme
from .oauth1_exchanged import OAuth1ExchangedScheme
from .oauth2 import build_oauth2_scheme
from .secret import build_secret_scheme

__all__ = ["Scheme", "SchemeConfigError", "SigningContext", "build_scheme"]


def build_scheme(entry: m.ConnectionCredential, credential_id: str, base_url: str = "") -> Scheme:
    """Build the scheme for one connection credential (`base_url`: its connection's).

    Raises:
        SchemeConfigError: the credential cannot be used (field relative to the credential entry).
    """
    check_header_values(entry)
    auth, cred = entry.auth_scheme_config, entry.credential
    match auth, cred:
        case m.NoneSchemeConfig(), m.NoneCredential():
            return NoneScheme(credential_id)
        case m.ApiKeySchemeConfig(), m.StringCredential():
            value = cred.data.string.value.get_secret_value()
            return ApiKeyScheme(credential_id, auth.api_key.name, auth.api_key.in_, value)
        case m.BearerSchemeConfig(), m.StringCredential():
            return BearerScheme(credential_id, cred.data.string.value.get_secret_value())
        case m.BasicAuthSchemeConfig(), m.BasicAuthCredential():
            basic = cred.data.basic_auth
            return BasicAuthScheme(credential_id, basic.username, basic.password.get_secret_value())
        case m.SecretSchemeConfig(), m.StringCredential():
            return build_secret_scheme(auth.secret, cred, credential_id)
        case m.HmacSchemeConfig(), m.StringCredential() | m.BinaryCredential():
            return _hmac(auth.hmac, cred, credential_id)
        case m.OAuth1SchemeConfig(), m.OAuth1TokenCredential():
            return _oauth1(auth.oauth1, cred.data.oauth1_token, credential_id)
        case m.OAuth1SchemeConfig(), m.OAuth1Credential():
            # Exchanged for its `oauth1-token` at start (tokens/oauth1.py).
            return OAuth1ExchangedScheme(credential_id, auth, cred.data.oauth1)
        case m.CertificateSchemeConfig(), m.CertificateCredential():
            pem = cred.data.certificate
            key = pem.key.get_secret_value()
            return CertificateScheme(credential_id, pem.certificate, key, pem.ca or None)
        case m.OAuth2SchemeConfig(), (
            m.OAuth2TokenCredential()
            | m.OAuth2ClientCredential()
            | m.OAuth2PasswordCredential()
            | m.OAuth2CodeCredential()
        ):
            return build_oauth2_scheme(auth, cred, credential_id)
        case m.HttpSignatureSchemeConfig(), m.StringCredential() | m.BinaryCredential():
            return build_http_signature_scheme(auth.http_signature, cred, credential_id)
        case m.AwsSigV4SchemeConfig(), m.AwsCredential():
            return _aws_sigv4(auth.aws_sig_v4, cred.data.aws, credential_id)
        case m.JwtBearerSchemeConfig(), m.StringCredential() | m.BinaryCredential():
            return build_jwt_bearer_scheme(auth, cred, credential_id, base_url)
    raise SchemeConfigError("authSchemeConfig.type", f"scheme {auth.type!r} is not supported")


def _hmac(
    params: m.HmacParams, cred: m.StringCredential | m.BinaryCredential, credential_id: str
) -> HmacScheme:
    if isinstance(cred, m.BinaryCredential):
        key = decode_binary_key(cred.data.binary.value_base64.get_secret_value())
    else:
        # docs/request-path.md: UTF-8 bytes
        key = cred.data.string.value.get_secret_value().encode()
    return HmacScheme(
        credential_id,
        key,
        name=params.name,
        where=params.in_,
        algorithm=params.algorithm,
        digest_inputs=params.digest_inputs,
        encoding=params.encoding,
    )


def _oauth1(params: m.OAuth1Params, token: m.OAuth1TokenValue, credential_id: str) -> OAuth1Scheme:
    if not params.token_auth:
        # Seed: with tokenAuth false (its default) the three endpoints of the browser flow are
        # required; `tokenAuth: true` says the token is given and they are optional.
        endpoints = {
            "tempCredentialEndpoint": params.temp_credential_endpoint,
            "resourceOwnerAuthorizationEndpoint": params.resource_owner_authorization_endpoint,
            "tokenEndpoint": params.token_endpoint,
        }
        for name, endpoint in endpoints.items():
            if endpoint is None:
                raise SchemeConfigError(
                    f"authSchemeConfig.oauth1.{name}",
                    "required when tokenAuth is false (set tokenAuth: true to give the token)",
                )
    return OAuth1Scheme(
        credential_id,
        consumer_key=params.consumer_key,
        consumer_secret=params.consumer_secret.get_secret_value(),
        token=token.token.get_secret_value(),
        token_secret=token.token_secret.get_secret_value(),
        signature_method=params.signature_method,
        additional_params=[(p.name, p.value) for p in token.additional_params],
    )


def _aws_sigv4(params: m.AwsSigV4Params, key: m.AwsValue, credential_id: str) -> AwsSigV4Scheme:
    token = key.session_token.get_secret_value() if key.session_token is not None else None
    return AwsSigV4Scheme(
        credential_id,
        access_key_id=key.access_key_id,
        secret_access_key=key.secret_access_key.get_secret_value(),
        session_token=token,
        region=params.region,
        service=params.service,
        where=params.in_,
        expires=params.expires,
    )
