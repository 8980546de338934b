"""Auth schemes, one module each; `build_scheme()` turns a validated credential into a `Scheme`.

Adding a scheme: write `schemes/<type>.py` with a `Scheme` subclass and add one `case` below.
"""

from __future__ import annotations

from ..config import models as m
from .api_key import ApiKeyScheme
from .base import Scheme, SchemeConfigError, SigningContext
from .basic import BasicAuthScheme
from .bearer import BearerScheme
from .none import NoneScheme

__all__ = ["Scheme", "SchemeConfigError", "SigningContext", "build_scheme"]


def build_scheme(entry: m.ConnectionCredential, credential_id: str) -> Scheme:
    """Build the scheme for one connection credential.

    Raises:
        SchemeConfigError: the credential cannot be used (field relative to the credential entry).
    """
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
    raise SchemeConfigError("authSchemeConfig.type", f"scheme {auth.type!r} is not supported")
