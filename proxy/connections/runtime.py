"""A checked `proxy.yaml` compiled for serving: the `Runtime` (connections, templates, clients
and policy), built once per load, never per request.

`config/` reads, interpolates and validates the file; this module compiles what it validated
and collects every problem the compiling finds, with its field path, beside the config's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.advice import empty_secret_warnings
from ..config.load import ConfigInvalid, check_admin, claim_route, read_config, validate_config
from ..config.models import ForwardProxyCA, ProxyConfig
from ..errors import FieldError
from ..intercept.authority import CAError
from ..intercept.ca import config_authority
from .access import Access, compile_access
from .binding import HostBinding, bind_hosts, binding_problems
from .compiled import CompiledConnection, compile_connection
from .identity import file_conflicts
from .placeholders import PlaceholderGuard, build_guard, placeholder_problems
from .templates import CompiledTemplate, compile_template


@dataclass(frozen=True, slots=True)
class Runtime:
    """A validated configuration with its connections compiled."""

    config: ProxyConfig
    connections: tuple[CompiledConnection, ...]
    templates: tuple[CompiledTemplate, ...] = ()
    # Clients and policy (`access.py`); None when the file configures neither.
    access: Access | None = None
    # Usable but worth a word (an expired client certificate): `check` prints them, exit 0.
    warnings: tuple[FieldError, ...] = ()
    # Forward-proxy mode's hosts → connections (`binding.py`); None when the mode is off.
    binding: HostBinding | None = None
    # Where `secret` placeholders may go (`placeholders.py`); None when no connection has one.
    placeholders: PlaceholderGuard | None = None

    @property
    def oauth2_redirect_uri(self) -> str:
        """The OAuth 2.0 callback: `admin.publicUrl` (default `http://` + `admin.listen`) +
        `/connections/oauth2/callback`; codes are exchanged with it."""
        admin = self.config.admin
        listen = admin.listen if admin is not None else "127.0.0.1:8081"
        base = admin.public_url if admin is not None and admin.public_url else f"http://{listen}"
        return base.rstrip("/") + "/connections/oauth2/callback"


def load_runtime(
    path: str | Path, env: Mapping[str, str] | None = None, *, offline: bool = False
) -> Runtime:
    """Read and check the file at `path`; raise `ConfigInvalid` listing every problem.

    `offline`: check the structure without the secrets present (`check --offline`, for CI):
    nothing is read from the environment or secret files, and problems in fields that held an
    expression are not reported, since the value there is only a placeholder.
    """
    return build_runtime(read_config(path), os.environ if env is None else env, offline=offline)


def build_runtime(tree: Any, env: Mapping[str, str], *, offline: bool = False) -> Runtime:
    """Interpolate, validate and compile a parsed YAML tree."""
    config, record = validate_config(tree, env, offline=offline)
    problems: list[FieldError] = []
    connections = compile_all(config, problems)
    templates = compile_templates(config, connections, problems)
    check_admin(config, problems)
    access = compile_access(config, connections, problems)
    binding = None
    if config.forward_proxy.enabled:
        binding = bind_hosts(connections)
        problems += forward_proxy_problems(config, connections)
    if config.forward_proxy.ca is not None:
        problems += ca_problems(config.forward_proxy.ca)
    problems += placeholder_problems(config, connections)
    warnings = (*empty_secret_warnings(record.empty), *scheme_warnings(config, connections))
    if offline:
        problems = [p for p in problems if not record.covers(p.field)]
    if problems:
        raise ConfigInvalid(problems, warnings)
    placeholders = build_guard(connections)
    return Runtime(config, connections, templates, access, warnings, binding, placeholders)


def ca_problems(ca: ForwardProxyCA) -> list[FieldError]:
    """`forwardProxy.ca` that cannot sign (read here, at `check`, not at the first CONNECT)."""
    try:
        config_authority(ca)
    except CAError as exc:
        field, _, message = str(exc).partition(": ")
        return [FieldError(f"forwardProxy.ca.{field}", message)]
    return []


def forward_proxy_problems(
    config: ProxyConfig, connections: Sequence[CompiledConnection]
) -> list[FieldError]:
    """A host bound by two connections (docs/forward-proxy.md)."""
    index_of = {id(model): i for i, model in enumerate(config.connections)}
    indexed = [(index_of[id(c.model)], c) for c in connections]
    return [FieldError(field, message) for field, message in binding_problems(indexed)]


def scheme_warnings(
    config: ProxyConfig, connections: Sequence[CompiledConnection]
) -> tuple[FieldError, ...]:
    """Each scheme's `warnings`, with the full field path of its credential."""
    compiled = {id(c.model): c for c in connections}
    warnings: list[FieldError] = []
    for index, model in enumerate(config.connections):
        connection = compiled.get(id(model))
        for position, scheme in enumerate(connection.schemes if connection else ()):
            here = f"connections[{index}].credentials[{position}]"
            warnings += [FieldError(f"{here}.{field}", text) for field, text in scheme.warnings]
    return tuple(warnings)


def compile_all(config: ProxyConfig, problems: list[FieldError]) -> tuple[CompiledConnection, ...]:
    compiled: list[CompiledConnection] = []
    indexed: list[tuple[int, CompiledConnection]] = []
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
        # A route derived from a duplicate name is that same problem, already reported.
        report_taken = model.route is not None or names[model.name] == index
        claim_route(connection.route, here, routes, problems, report_taken=report_taken)
        compiled.append(connection)
        indexed.append((index, connection))
    # One credential id, one credential: they share one token (docs/configuration.md).
    problems.extend(file_conflicts(indexed))
    return tuple(compiled)


def compile_templates(
    config: ProxyConfig, connections: Sequence[CompiledConnection], problems: list[FieldError]
) -> tuple[CompiledTemplate, ...]:
    """Check `templates:` (docs/admin-api.md): unique ids, routes unique across connections and
    templates."""
    compiled: list[CompiledTemplate] = []
    ids: dict[str, int] = {}
    # Connections that failed to compile are missing from `connections`: index by the model.
    index_of = {id(model): i for i, model in enumerate(config.connections)}
    routes = {c.route: f"connections[{index_of[id(c.model)]}]" for c in connections}
    for index, model in enumerate(config.templates):
        here = f"templates[{index}]"
        if model.id in ids:
            problems.append(FieldError(f"{here}.id", f"duplicate of templates[{ids[model.id]}]"))
        ids.setdefault(model.id, index)
        template, errors = compile_template(model)
        problems.extend(FieldError(f"{here}.{e.field}", e.message) for e in errors)
        if template is None:
            continue
        claim_route(template.route, here, routes, problems)
        compiled.append(template)
    return tuple(compiled)
