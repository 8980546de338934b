"""The one function that turns a seed-shaped model into JSON for the management API or the store.

Redaction is the default: every `SecretStr` field (passwords, tokens, client secrets, keys) is
either *left out* of the output or, with `blank_secrets`, written as `""` — the seed's "redacted
when read", which keeps the fields the seed requires present. The other fields stay (username,
clientId, consumerKey, scopes, expiresAt, tokenUrl...). Only two callers reveal secrets: the
store document (encrypted at rest by the store) and OpenInt's `include_secrets`.

Walking the fields ourselves, rather than `model_dump()` with a context flag, makes the secret
test one `isinstance` that cannot be forgotten on a new model: a new secret field is a
`SecretStr`, and a `SecretStr` is never written unless asked for.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr

ModelT = TypeVar("ModelT", bound=BaseModel)


def to_json(
    model: BaseModel, *, include_secrets: bool = False, blank_secrets: bool = False
) -> dict[str, Any]:
    """`model` as camelCase JSON (each field under its serialization alias); secret fields
    left out, or `""` with `blank_secrets`, unless `include_secrets`.

    `None` values are left out too (the seed shapes treat absent and null alike).
    """
    shown = _REVEAL if include_secrets else _BLANK if blank_secrets else _OMIT
    return _model(model, shown)


_OMIT = object()
_BLANK = object()
_REVEAL = object()


def _model(model: BaseModel, shown: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = _value(getattr(model, name), shown)
        if value is not _OMIT:
            out[info.serialization_alias or info.alias or name] = value
    return out


def _value(value: Any, shown: object) -> Any:
    if value is None:
        return _OMIT
    if isinstance(value, SecretStr):
        if shown is _REVEAL:
            return value.get_secret_value()
        return "" if shown is _BLANK else _OMIT
    if isinstance(value, BaseModel):
        return _model(value, shown)
    if isinstance(value, list | tuple):
        items = (_value(item, shown) for item in value)
        return [item for item in items if item is not _OMIT]
    if isinstance(value, dict):
        pairs = ((key, _value(item, shown)) for key, item in value.items())
        return {key: item for key, item in pairs if item is not _OMIT}
    return value


# The identifiers a secret belongs to: a secret is taken from the source only for the same one.
_WHOSE_SECRET = ("client_id", "consumer_key")


def with_secrets_of(given: ModelT, source: BaseModel) -> ModelT:
    """`given` with each secret it has as `""` (a read redacted it) taken from `source`, a
    model of the same shape (a template's auth scheme config), where both name the same client
    or consumer; `given` itself when none is."""
    if type(given) is not type(source):
        return given
    if any(getattr(given, name, None) != getattr(source, name, None) for name in _WHOSE_SECRET):
        return given  # another client's secret is not the template's
    update: dict[str, Any] = {}
    for name in type(given).model_fields:
        mine, theirs = getattr(given, name), getattr(source, name)
        if isinstance(mine, SecretStr) and isinstance(theirs, SecretStr):
            if not mine.get_secret_value() and theirs.get_secret_value():
                update[name] = theirs
        elif isinstance(mine, BaseModel) and isinstance(theirs, BaseModel):
            filled = with_secrets_of(mine, theirs)
            if filled is not mine:
                update[name] = filled
    return given.model_copy(update=update) if update else given


# Secrets a model lets default to `""` that a credential sent through the API still cannot do
# without (the seed requires them): an OAuth 2.0 client_credentials client is confidential (RFC
# 6749 §4.4), and a basic-auth password `""` is what a read shows, so it is refused rather than
# taken for an empty password (proxy.yaml still takes one).
_NEEDED = frozenset({("OAuth2ClientValue", "client_secret"), ("BasicAuthValue", "password")})


def redacted_secrets(model: BaseModel, prefix: str) -> list[str]:
    """The paths of the secrets in `model` still `""` that it cannot do without: what a GET body
    POSTed back without its secrets filled in holds. An `oauth2Token` needs one of its access
    and refresh tokens (reported at `refreshToken`, the seed's required one)."""
    found: list[str] = []
    fields = type(model).model_fields
    for name, info in fields.items():
        path = f"{prefix}.{info.serialization_alias or info.alias or name}"
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            needed = info.is_required() or (type(model).__name__, name) in _NEEDED
            if needed and not value.get_secret_value():
                found.append(path)
        elif isinstance(value, BaseModel):
            found += redacted_secrets(value, path)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found += redacted_secrets(item, f"{path}[{index}]")
    if "access_token" in fields and "refresh_token" in fields:
        tokens = (getattr(model, "access_token", None), getattr(model, "refresh_token", None))
        if not any(isinstance(t, SecretStr) and t.get_secret_value() for t in tokens):
            found.append(f"{prefix}.{fields['refresh_token'].alias or 'refreshToken'}")
    return found
