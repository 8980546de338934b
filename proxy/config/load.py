"""Read proxy.yaml and check it: parse, interpolate, validate (`connections/runtime.py` compiles
what passes).

Every problem is reported with its field path (`connections[1].credentials[0].authSchemeConfig
.apiKey.in: ...`) and all problems are collected, not just the first. No message carries a
value from the file: YAML errors give only line and column, pydantic's `input` is never used.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..errors import FieldError, is_plain_key, loc_to_path
from .address import split_host_port
from .advice import (
    choices_at,
    in_secret_mapping,
    known_field_names,
    unknown_key_message,
)
from .bounds import MAX_FILE_BYTES, BoundedComposer, TooLarge
from .ids import with_ids
from .interpolate import Expansions, interpolate
from .models import ProxyConfig

RESERVED_ROUTES = frozenset({"/healthz"})
# Seed `AuthSchemeType`s this proxy does not implement (named as such, not "unknown").
UNSUPPORTED_SEED_TYPES: frozenset[str] = frozenset()

# Tags of the `type`-discriminated unions; pydantic puts the tag into `loc`, the seed paths don't.
_UNION_FIELDS = frozenset({"authSchemeConfig", "credential", "grant", "authSchemeConfigs"})


class ConfigInvalid(Exception):
    """The configuration cannot be used; `problems` name each field."""

    def __init__(self, problems: Sequence[FieldError], warnings: Sequence[FieldError] = ()) -> None:
        super().__init__(f"{len(problems)} problem(s) in the configuration")
        self.problems = list(problems)
        self.warnings = list(warnings)  # reported too, but alone they never make it invalid


def field_path(loc: Sequence[int | str]) -> str:
    """pydantic `loc` → seed path, dropping the union tag pydantic inserts after a union field."""
    kept: list[int | str] = []
    for i, part in enumerate(loc):
        if i > 0 and isinstance(part, str) and _is_tag_position(loc, i):
            continue
        kept.append(part)
    return loc_to_path(kept)


def _is_tag_position(loc: Sequence[int | str], i: int) -> bool:
    before = loc[i - 1]
    if before in _UNION_FIELDS and before != "authSchemeConfigs":
        return True
    return isinstance(before, int) and i >= 2 and loc[i - 2] == "authSchemeConfigs"


def validation_problems(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        if error["type"] == "extra_forbidden":
            path, message = _unknown_key(error["loc"])
            suffix = ""
        else:
            path = field_path(error["loc"])
            suffix, message = _describe(error)
        path = f"{path}.{suffix}" if path and suffix else path or suffix
        if prefix:
            path = f"{prefix}.{path}" if path and not path.startswith("[") else prefix + path
        problems.append(FieldError(path, message))
    return problems


def _unknown_key(loc: Sequence[int | str]) -> tuple[str, str]:
    """(path of the mapping, message) for an unknown key, printing the key only when safe.

    A mistyped value can become a key (`{value:SECRET}` is one YAML key), so the key is named
    only when it reads as a field name and its mapping holds no secrets.
    """
    *parent, key = loc
    where = field_path(parent)
    if not isinstance(key, str):
        return where, "unknown key"
    if is_plain_key(key) and (not in_secret_mapping(parent) or key in known_field_names()):
        # A field name of another mapping (`basicAuth` under a `string` credential's data).
        return field_path(loc), unknown_key_message(loc)
    if ":" in key or "=" in key:
        return where, "unknown key (not shown: a mistyped value? the space after 'name:' missing?)"
    return where, "unknown key (not shown: it may be a value typed in the wrong place)"


def _describe(error: ErrorDetails) -> tuple[str, str]:
    """(extra path, message) for one pydantic error, in the file's words and without its input.

    pydantic's own text is kept where it carries no input; a union tag error is rewritten because
    pydantic quotes the tag the file gave, and that text may be a mistyped (or misplaced) secret.
    """
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "union_tag_invalid":
        field = ctx["discriminator"].strip("'")
        if ctx.get("tag") in UNSUPPORTED_SEED_TYPES:
            # A fixed seed value, not the file's free text: safe to name.
            return field, (
                f"the seed's {ctx['tag']!r} scheme is not supported by signing-proxy; "
                f"expected {ctx['expected_tags']}"
            )
        return field, f"unknown type; expected {ctx['expected_tags']}"
    if kind == "union_tag_not_found":
        return ctx["discriminator"].strip("'"), "required"
    if kind == "missing":
        key = error["loc"][-1] if error["loc"] else None
        choices = choices_at(error["loc"]) if isinstance(key, str) else ()
        return "", f"required: one of {', '.join(choices)}" if choices else "required"
    if kind == "string_type":
        # YAML reads `12345`, `true` or `2024-01-01` as non-strings (and `0123` as octal).
        return "", "must be a string (put numbers, booleans and dates in quotes)"
    if kind in _TYPE_NAMES:
        # Strict types (docs/configuration.md): no `"true"` for true, no `"10"` for 10.
        return "", f"must be {_TYPE_NAMES[kind]}"
    if kind == "value_error":
        return "", str(ctx.get("error", error["msg"]))
    return "", error["msg"]


# What a strict-type error expects, in the file's words; no input is quoted.
_TYPE_NAMES = {
    "bool_type": "a boolean (true or false, not a string)",
    "int_type": "an integer (a number, not a string)",
    "float_type": "a number (not a string)",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

# A quoted token in a YAML error (an undefined alias or tag) is text from the file.
_QUOTED = re.compile(r"'[^'\s]{3,}'|\"[^\"\s]{3,}\"")


class _UniqueKeyLoader(BoundedComposer, yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (and a file past the bounds of
    `bounds.py`).

    Plain YAML keeps the last of two `credentials:` keys and silently drops the first; like an
    unknown key, that must be an error. Keys brought in by a `<<` merge may still be overridden.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, "duplicate key", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    if len(text) > MAX_FILE_BYTES:
        size = f"{MAX_FILE_BYTES // (1024 * 1024)} MiB"
        raise ConfigInvalid([FieldError("", f"the file is larger than {size}; refused")])
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except TooLarge as exc:
        raise ConfigInvalid([FieldError("", f"{exc}; refused")]) from None
    except yaml.YAMLError as exc:
        # Only the position and the kind of problem: the snippet may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = _QUOTED.sub("'…'", getattr(exc, "problem", None) or "invalid YAML")
        raise ConfigInvalid([FieldError("", f"{where}: {problem}")]) from None


def read_config(path: str | Path) -> Any:
    """The parsed YAML tree of the file at `path`; `ConfigInvalid` when it cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise ConfigInvalid([FieldError("", f"cannot read the file: {reason}")]) from None
    return parse_yaml(text)


def validate_config(
    tree: Any, env: Mapping[str, str], *, offline: bool = False
) -> tuple[ProxyConfig, Expansions]:
    """Interpolate and validate a parsed YAML tree: the model, and what interpolation expanded
    (`offline`: see `connections.runtime.load_runtime`). Raise `ConfigInvalid` listing every
    problem found so far."""
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigInvalid([FieldError("", "the file must be a mapping of settings")])
    problems: list[FieldError] = []
    record = Expansions(offline=offline)
    tree = interpolate(tree, env, problems, record=record)
    if problems:
        raise ConfigInvalid(problems)
    config = _validate(tree, record)
    # The ids the file leaves out, derived once here (stable across starts, `ids.py`), so the
    # models compiled from it are the config's own.
    config = config.model_copy(update={"connections": [with_ids(c) for c in config.connections]})
    return config, record


def _validate(tree: dict[str, Any], record: Expansions) -> ProxyConfig:
    """The validated model; offline, a placeholder that is not a valid value (a port, a number)
    is dropped from the tree so the rest of the structure is still checked."""
    for _ in range(3):
        try:
            return ProxyConfig.model_validate(tree)
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False)
            problems = validation_problems(exc)
            # A key that is unknown or missing is structure, whatever value it holds.
            held = {
                index
                for index, (error, problem) in enumerate(zip(errors, problems, strict=True))
                if record.offline
                and record.covers(problem.field)
                and error["type"] not in ("extra_forbidden", "missing")
            }
            if len(held) < len(problems):
                raise ConfigInvalid([p for i, p in enumerate(problems) if i not in held]) from None
            for index in held:
                _drop(tree, errors[index]["loc"])
    raise ConfigInvalid([FieldError("", "placeholders left the structure unverifiable")])


def _drop(tree: Any, loc: Sequence[int | str]) -> None:
    """Remove the value at a pydantic `loc` (its union tags, absent from the tree, are skipped)."""
    parent: Any = None
    key: int | str | None = None
    node = tree
    for part in loc:
        if isinstance(node, dict) and part in node:
            parent, key, node = node, part, node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            parent, key, node = node, part, node[part]
    if isinstance(parent, dict):
        parent.pop(key, None)


def claim_route(
    route: str,
    here: str,
    routes: dict[str, str],
    problems: list[FieldError],
    *,
    report_taken: bool = True,
) -> None:
    """Record that `here` serves `route`; a reserved or already taken route is a problem."""
    if route in RESERVED_ROUTES:
        problems.append(FieldError(f"{here}.route", f"{route} is reserved"))
    elif route in routes and report_taken:
        problems.append(FieldError(f"{here}.route", f"route already used by {routes[route]}"))
    routes.setdefault(route, here)


def check_admin(config: ProxyConfig, problems: list[FieldError]) -> None:
    """The management API holds every secret: off loopback it must require a token."""
    admin = config.admin
    if admin is None or is_loopback_listen(admin.listen):
        return
    if admin.token is None or not admin.token.get_secret_value():
        problems.append(
            FieldError("admin.token", "required when admin.listen is not a loopback address")
        )


def is_loopback_listen(address: str) -> bool:
    """True for `127.x.x.x`, `[::1]` and `localhost` listen addresses."""
    host, _ = split_host_port(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
