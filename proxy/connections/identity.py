"""One credential id, one credential (docs/admin-api.md): connections that carry the same
credential id share that credential — one stored token, refreshed once, used by all — so the id
must name the same secret material wherever it appears.

`material()` is what makes a credential itself: its type and data with their secrets, and for
OAuth 2.0 the grant, client, token endpoint and scopes it refreshes with; the token it was
given is kept apart, since a token the credential has had since (a GET body POSTed back shows
the current one) is still the same credential. `same()` compares; `file_conflicts()` checks the
connections of one proxy.yaml. Values here hold secrets: they are compared, never shown.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretStr

from ..config import models as m
from ..errors import FieldError
from ..messages import TokenSet
from ..schemes.base import Scheme
from ..schemes.oauth2 import OAuth2Scheme
from .compiled import CompiledConnection


@dataclass(frozen=True, slots=True)
class Material:
    """A credential's identity: `fixed` (canonical JSON, secrets included) and the token it
    was given, as (access token, refresh token)."""

    fixed: str = field(repr=False)
    token: tuple[str, str | None] | None = field(default=None, repr=False)


def material(entry: m.ConnectionCredential, scheme: Scheme) -> Material:
    if isinstance(scheme, OAuth2Scheme):
        settings = dataclasses.asdict(dataclasses.replace(scheme.settings, seed_token=None))
        seed = scheme.settings.seed_token
        token = None if seed is None else _pair(seed)
        return Material(_canonical(["oauth2", settings]), token)
    return Material(_canonical([entry.credential.type, _revealed(entry.credential.data)]))


def same(held: Material, given: Material, tokens: Iterable[TokenSet | None] = ()) -> bool:
    """Whether `given` is the credential `held` describes: the same material, and the same
    token or one of `tokens` the credential has had since."""
    if held.fixed != given.fixed:
        return False
    if given.token is None or given.token == held.token:
        return True
    return any(token is not None and _pair(token) == given.token for token in tokens)


def carried(
    connections: Iterable[CompiledConnection],
) -> dict[str, tuple[CompiledConnection, int]]:
    """Each credential id the connections carry → the first connection carrying it, and the
    credential's index there."""
    found: dict[str, tuple[CompiledConnection, int]] = {}
    for connection in connections:
        for index, scheme in enumerate(connection.schemes):
            found.setdefault(scheme.credential_id, (connection, index))
    return found


def file_conflicts(
    connections: Sequence[tuple[int, CompiledConnection]],
) -> list[FieldError]:
    """Credential ids of proxy.yaml's connections (with their indexes) that name different
    material in different places."""
    problems: list[FieldError] = []
    first: dict[str, tuple[int, int, Material]] = {}
    for index, connection in connections:
        for position, (entry, scheme) in enumerate(
            zip(connection.model.credentials, connection.schemes, strict=True)
        ):
            mine = material(entry, scheme)
            seen = first.setdefault(scheme.credential_id, (index, position, mine))
            if seen[2] is not mine and not same(seen[2], mine):
                problems.append(
                    FieldError(
                        f"connections[{index}].credentials[{position}].id",
                        f"credential id {scheme.credential_id!r} is also "
                        f"connections[{seen[0]}].credentials[{seen[1]}], with other secret "
                        "data: one id names one credential",
                    )
                )
    return problems


def _pair(token: TokenSet) -> tuple[str, str | None]:
    return token.access_token, token.refresh_token


def _revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return {
            name: _revealed(getattr(value, name))
            for name in type(value).model_fields
            if getattr(value, name) is not None
        }
    if isinstance(value, list | tuple):
        return [_revealed(item) for item in value]
    if isinstance(value, dict):
        return {key: _revealed(item) for key, item in value.items()}
    return value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
