"""The one function that turns a seed-shaped model into JSON for the management API or the store.

Redaction is the default: every `SecretStr` field (passwords, tokens, client secrets, keys) is
*left out* of the output, not masked, so a client can tell "no value shown" from a value. The
other fields stay (username, clientId, scopes, expiresAt, tokenUrl...). Only two callers reveal
secrets: the store document (encrypted at rest by the store) and OpenInt's `include_secrets`.

Walking the fields ourselves, rather than `model_dump()` with a context flag, makes the secret
test one `isinstance` that cannot be forgotten on a new model: a new secret field is a
`SecretStr`, and a `SecretStr` is never written unless asked for.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr


def to_json(model: BaseModel, *, include_secrets: bool = False) -> dict[str, Any]:
    """`model` as camelCase JSON; secret fields left out unless `include_secrets`.

    `None` values are left out too (the seed shapes treat absent and null alike).
    """
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = _value(getattr(model, name), include_secrets)
        if value is not _OMIT:
            out[info.alias or name] = value
    return out


_OMIT = object()


def _value(value: Any, include_secrets: bool) -> Any:
    if value is None:
        return _OMIT
    if isinstance(value, SecretStr):
        return value.get_secret_value() if include_secrets else _OMIT
    if isinstance(value, BaseModel):
        return to_json(value, include_secrets=include_secrets)
    if isinstance(value, list | tuple):
        items = (_value(item, include_secrets) for item in value)
        return [item for item in items if item is not _OMIT]
    if isinstance(value, dict):
        pairs = ((key, _value(item, include_secrets)) for key, item in value.items())
        return {key: item for key, item in pairs if item is not _OMIT}
    return value
