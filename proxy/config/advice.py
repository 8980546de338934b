"""Advice on a config that loads but is probably not what was meant: an empty secret, and a
suggestion for a mistyped key.

Both only ever quote names (a field path, a variable, a known key), never a value from the file.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from ..errors import HIDDEN_KEY, FieldError
from . import models
from .clients import AccessModel

# Fields whose value a scheme sends or signs with: empty, they authenticate nobody. An empty
# basic-auth password and an empty access token are left out on purpose (Stripe puts its key in
# the username; an access token may be fetched with the refresh token).
_NEEDS_VALUE = (
    ".data.string.value",
    ".data.binary.valueBase64",
    ".clientSecret",
    ".consumerKey",
    ".consumerSecret",
    ".oauth2Password.password",
    ".data.certificate.certificate",
    ".data.certificate.key",
)
_ALSO = {"admin.token": "the management API is then open to every local process"}


def empty_secret_warnings(empty: Sequence[tuple[str, str]]) -> list[FieldError]:
    """Warnings for secret fields that were one expression which resolved to an empty string."""
    warnings = []
    for path, source in empty:
        if path in _ALSO:
            warnings.append(FieldError(path, f"{source} is empty: {_ALSO[path]}"))
        elif path.endswith(_NEEDS_VALUE):
            warnings.append(
                FieldError(path, f"{source} is empty, so this credential sends an empty secret")
            )
    return warnings


def unknown_key_message(loc: Sequence[int | str]) -> str:
    """`unknown key`, with the closest key accepted at that place when one is close enough to be
    a typo (`baseurl` → `baseUrl`, `credentails` → `credentials`)."""
    key = loc[-1] if loc else None
    if not isinstance(key, str):
        return "unknown key"
    vocabulary = _keys_at(tuple(loc[:-1])) or known_field_names()
    folded = {_fold(name): name for name in vocabulary}
    match = folded.get(_fold(key))
    if match is None:
        close = difflib.get_close_matches(key, vocabulary, n=1, cutoff=0.75)
        match = close[0] if close else None
    return f"unknown key (did you mean {match}?)" if match and match != key else "unknown key"


def _fold(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _keys_at(parent: tuple[int | str, ...]) -> tuple[str, ...]:
    """The keys accepted at `parent` in proxy.yaml (empty when the path is not a file path)."""
    fields = [
        (name, info) for model in _models_at(parent) for name, info in model.model_fields.items()
    ]
    return tuple(sorted({info.alias or name for name, info in fields}))


def _models_at(parent: tuple[int | str, ...]) -> set[type[BaseModel]]:
    """The models that may be at `parent` in proxy.yaml (none when it is not a file path).

    Walks the models from the top; list indexes are skipped, and so are the union tags pydantic
    puts into the path (`api-key`), where every member of the union stays a candidate.
    """
    candidates: set[type[BaseModel]] = {models.ProxyConfig}
    for depth, part in enumerate(parent):
        if isinstance(part, int):
            continue
        inner: set[type[BaseModel]] = set()
        for model in candidates:
            for name, info in model.model_fields.items():
                if part in (info.alias, name):
                    inner |= _models_in(info.annotation)
        if inner:
            candidates = inner
        elif depth == 0:
            return set()  # not a path of the file: another document's body
    return candidates


def _models_in(annotation: Any) -> set[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    found: set[type[BaseModel]] = set()
    for arg in get_args(annotation):
        found |= _models_in(arg)
    return found


@functools.cache
def known_field_names() -> tuple[str, ...]:
    """Every key any model of the file or the management API accepts, as spelled there."""
    names: set[str] = set()
    pending: list[type[BaseModel]] = [models.Model, AccessModel]
    while pending:
        model = pending.pop()
        pending += model.__subclasses__()
        names.update(f.alias or name for name, f in model.model_fields.items())
    return tuple(sorted(names))


def choices_at(loc: Sequence[int | str]) -> tuple[str, ...]:
    """The values the field at `loc` allows when it is a choice: those of the models that can be
    at its place in the file (`hmac.algorithm` and `jwtBearer.algorithm` differ), else those of
    `choices_of` its name."""
    *parent, key = loc
    if not isinstance(key, str):
        return ()
    found = {
        _literal_values(info.annotation)
        for model in _models_at(tuple(parent))
        for name, info in model.model_fields.items()
        if key in (info.alias, name)
    }
    found.discard(())
    if len(found) == 1:
        return found.pop()
    return choices_of(key)


@functools.cache
def choices_of(key: str) -> tuple[str, ...]:
    """The values a field spelled `key` allows, when it is a choice (`algorithm`: sha1, sha256,
    sha512) and every model that has such a field agrees on them; else ()."""
    found: set[tuple[str, ...]] = set()
    pending: list[type[BaseModel]] = [models.Model, AccessModel]
    while pending:
        model = pending.pop()
        pending += model.__subclasses__()
        for name, info in model.model_fields.items():
            if key in (info.alias, name):
                found.add(_literal_values(info.annotation))
    return found.pop() if len(found) == 1 else ()


def _literal_values(annotation: Any) -> tuple[str, ...]:
    if get_origin(annotation) is Literal:
        return tuple(str(value) for value in get_args(annotation))
    for arg in get_args(annotation):  # through Annotated[...]
        values = _literal_values(arg)
        if values:
            return values
    return ()


# Mappings that hold secrets: a key there that is not one of the fields may be a secret pasted
# in the wrong place (`{string: {sk_live_...}}`, or key and value swapped in JSON), so even a
# key that reads as a name is printed only when it is a field name.
SECRET_MAPPINGS = frozenset({"credential", "grant", "oauth1", "admin", "store", "clients"})


def in_secret_mapping(loc: Sequence[int | str]) -> bool:
    return any(isinstance(part, str) and part in SECRET_MAPPINGS for part in loc)


def shown_loc(loc: Sequence[int | str]) -> tuple[int | str, ...]:
    """`loc` of the parsed file for a message: inside a secret-bearing mapping, a key that is
    no field name is shown as `<key>` (`loc_to_path` hides keys that do not read as names)."""
    shown: list[int | str] = []
    secret = False
    for part in loc:
        if isinstance(part, str):
            if secret and part not in known_field_names():
                part = HIDDEN_KEY
            secret = secret or part in SECRET_MAPPINGS
        shown.append(part)
    return tuple(shown)
