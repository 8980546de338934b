"""Load proxy.yaml into a checked `Runtime`: read, parse, interpolate, validate, compile.

Every problem is reported with its field path (`connections[1].credentials[0].authSchemeConfig
.apiKey.in: ...`) and all problems are collected, not just the first. No message carries a
value from the file: YAML errors give only line and column, pydantic's `input` is never used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..connection import CompiledConnection, compile_connection
from ..errors import FieldError, loc_to_path
from .interpolate import interpolate
from .models import ProxyConfig

RESERVED_ROUTES = frozenset({"/healthz"})

# Tags of the `type`-discriminated unions; pydantic puts the tag into `loc`, the seed paths don't.
_UNION_FIELDS = frozenset({"authSchemeConfig", "credential", "grant", "authSchemeConfigs"})


class ConfigInvalid(Exception):
    """The configuration cannot be used; `problems` name each field."""

    def __init__(self, problems: Sequence[FieldError]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the configuration")
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Runtime:
    """A validated configuration with its connections compiled."""

    config: ProxyConfig
    connections: tuple[CompiledConnection, ...]


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
        path = field_path(error["loc"])
        suffix, message = _describe(error)
        path = f"{path}.{suffix}" if path and suffix else path or suffix
        if prefix:
            path = f"{prefix}.{path}" if path and not path.startswith("[") else prefix + path
        problems.append(FieldError(path, message))
    return problems


def _describe(error: ErrorDetails) -> tuple[str, str]:
    """(extra path, message) for one pydantic error, in the file's words and without its input.

    pydantic's own text is kept where it carries no input; a union tag error is rewritten because
    pydantic quotes the tag the file gave, and that text may be a mistyped (or misplaced) secret.
    """
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "union_tag_invalid":
        return ctx["discriminator"].strip("'"), f"unknown type; expected {ctx['expected_tags']}"
    if kind == "union_tag_not_found":
        return ctx["discriminator"].strip("'"), "required"
    if kind == "missing":
        return "", "required"
    if kind == "extra_forbidden":
        return "", "unknown key"
    if kind == "string_type":
        # YAML reads `12345`, `true` or `2024-01-01` as non-strings (and `0123` as octal).
        return "", "must be a string (put numbers, booleans and dates in quotes)"
    if kind == "value_error":
        return "", str(ctx.get("error", error["msg"]))
    return "", error["msg"]


# A quoted token in a YAML error (an undefined alias or tag) is text from the file.
_QUOTED = re.compile(r"'[^'\s]{3,}'|\"[^\"\s]{3,}\"")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping.

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
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        # Only the position and the kind of problem: the snippet may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = _QUOTED.sub("'…'", getattr(exc, "problem", None) or "invalid YAML")
        raise ConfigInvalid([FieldError("", f"{where}: {problem}")]) from None


def load_runtime(path: str | Path, env: Mapping[str, str] | None = None) -> Runtime:
    """Read and check the file at `path`; raise `ConfigInvalid` listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise ConfigInvalid([FieldError("", f"cannot read the file: {reason}")]) from None
    return build_runtime(parse_yaml(text), os.environ if env is None else env)


def build_runtime(tree: Any, env: Mapping[str, str]) -> Runtime:
    """Interpolate, validate and compile a parsed YAML tree."""
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigInvalid([FieldError("", "the file must be a mapping of settings")])
    problems: list[FieldError] = []
    tree = interpolate(tree, env, problems)
    if problems:
        raise ConfigInvalid(problems)
    try:
        config = ProxyConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigInvalid(validation_problems(exc)) from None
    connections = compile_all(config, problems)
    if problems:
        raise ConfigInvalid(problems)
    return Runtime(config, connections)


def compile_all(config: ProxyConfig, problems: list[FieldError]) -> tuple[CompiledConnection, ...]:
    compiled: list[CompiledConnection] = []
    names: dict[str, int] = {}
    routes: dict[str, str] = {}
    for index, model in enumerate(config.connections):
        here = f"connections[{index}]"
        if model.name in names:
            problems.append(
                FieldError(f"{here}.name", f"duplicate of connections[{names[model.name]}]")
            )
        names.setdefault(model.name, index)
        connection, errors = compile_connection(model)
        problems.extend(FieldError(f"{here}.{e.field}", e.message) for e in errors)
        if connection is None:
            continue
        if connection.route in RESERVED_ROUTES:
            problems.append(FieldError(f"{here}.route", f"{connection.route} is reserved"))
        elif connection.route in routes and (model.route is not None or names[model.name] == index):
            # A route derived from a duplicate name is that same problem, already reported.
            problems.append(
                FieldError(f"{here}.route", f"route already used by {routes[connection.route]}")
            )
        routes.setdefault(connection.route, here)
        compiled.append(connection)
    return tuple(compiled)
