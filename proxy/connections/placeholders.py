"""Where a `secret` placeholder may appear: the `PlaceholderGuard`, and the checks at load.

A client holds a placeholder instead of a secret (`schemes/secret.py` swaps it). The placeholder
may go in exactly one place: a declared header of its own connection, as the whole value or one
whitespace-separated token. Anywhere else — another header, the request-target (raw or
percent-decoded), a request to another connection — the client is sending it somewhere the
secret was never meant to go, so the request is refused with 403 `placeholder_misdirected`
before anything is read or sent (docs/placeholders.md). Bodies are not scanned.

The guard is built once per configuration, and only when a connection has a `secret`
credential: a proxy without one pays nothing per request. With one, every request (to any
connection) is checked: a placeholder sent toward another connection's route must be refused
there too.

Placeholders are bound to connections of `proxy.yaml`; a template or an API-created connection
with a `secret` scheme is refused (its route serves many connections, picked per request, so a
placeholder could not name one).

Imports `config/`, `schemes/`, `errors` and modules of its own package only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_plus

from ..config import models as m
from ..errors import PROXY_INTERNAL_RESPONSE, FieldError, ProxyError
from ..schemes.secret import SecretScheme
from .compiled import CompiledConnection
from .headers import FORWARDED, FRAMING, HOP_BY_HOP, REQUEST_ONLY

# Headers the proxy never sends on as the client wrote them: a placeholder there could not
# be swapped into anything that reaches the upstream.
_NEVER_FORWARDED = HOP_BY_HOP | REQUEST_ONLY | FORWARDED | FRAMING | {"cookie"}


class PlaceholderMisdirected(ProxyError):
    status = 403
    proxy_status = PROXY_INTERNAL_RESPONSE

    def __init__(self, where: str) -> None:
        # `where` is written here (a header name or "the request-target"), never a value.
        super().__init__(
            "placeholder_misdirected",
            "a secret placeholder may only be sent in its own connection's declared header; "
            "nothing was sent",
            details=where,
        )


@dataclass(frozen=True, slots=True)
class Binding:
    """Where one placeholder may go: a connection, its declared headers (lowercase bytes)."""

    connection_id: str
    headers: frozenset[bytes]


class PlaceholderGuard:
    """Refuses a request that carries a placeholder anywhere but its own declared header."""

    def __init__(self, bindings: dict[str, Binding]) -> None:
        self._bindings = {placeholder.encode("ascii"): b for placeholder, b in bindings.items()}
        # Longest first: where one placeholder begins another, the longer one is the match.
        ordered = sorted(bindings, key=len, reverse=True)
        self._any = re.compile("|".join(re.escape(p) for p in ordered).encode("ascii"))
        self._any_text = re.compile("|".join(re.escape(p) for p in ordered))

    def check(
        self, connection_id: str, target: str, raw_headers: Iterable[tuple[bytes, bytes]]
    ) -> None:
        """Raise `PlaceholderMisdirected` unless every placeholder in the request is in a
        declared header of `connection_id`, as a whole value or token.

        `target` is the raw request-target (latin-1 text), `raw_headers` the header fields as
        received."""
        found_in = self._any_text.search
        if found_in(target) or (
            ("%" in target or "+" in target) and found_in(unquote_plus(target))
        ):
            raise PlaceholderMisdirected("the request-target")
        search = self._any.search
        for name, value in raw_headers:
            if search(name):
                raise PlaceholderMisdirected("a header name")
            found = search(value)
            if found is None:
                continue
            self._check_header(connection_id, name, value, found)

    def _check_header(
        self, connection_id: str, name: bytes, value: bytes, found: re.Match[bytes]
    ) -> None:
        low = name.lower()
        shown = low.decode("latin-1") if _PLAIN_NAME.fullmatch(low) else "a header"
        match: re.Match[bytes] | None = found
        while match is not None:
            binding = self._bindings[match.group()]
            if binding.connection_id != connection_id:
                raise PlaceholderMisdirected(f"{shown}: the placeholder of another connection")
            if low not in binding.headers:
                raise PlaceholderMisdirected(f"{shown}: not a header declared for it")
            # The whole value or one token (what `SecretScheme.sign` swaps): else a placeholder
            # would go upstream as it is.
            start, end = match.span()
            if value[start - 1 : start].strip() or value[end : end + 1].strip():
                raise PlaceholderMisdirected(f"{shown}: not the whole value or one token of it")
            match = self._any.search(value, end)


_PLAIN_NAME = re.compile(rb"[a-z0-9-]{1,64}")


def secret_schemes(connection: CompiledConnection) -> Iterable[tuple[int, SecretScheme]]:
    """Each `secret` scheme with the index of its entry in the connection's `credentials`
    (the compiled order may differ: a scheme that signs last is moved to the end)."""
    position = {entry.id: index for index, entry in enumerate(connection.model.credentials)}
    for scheme in connection.schemes:
        if isinstance(scheme, SecretScheme):
            yield position.get(scheme.credential_id, 0), scheme


def build_guard(connections: Sequence[CompiledConnection]) -> PlaceholderGuard | None:
    """The guard for `connections`; None when none has a `secret` credential (no cost)."""
    bindings: dict[str, Binding] = {}
    for connection in connections:
        for _, scheme in secret_schemes(connection):
            placeholder = scheme.placeholder
            bindings[placeholder] = Binding(
                connection.id, frozenset(name.encode("ascii") for name in scheme.passes_headers)
            )
    return PlaceholderGuard(bindings) if bindings else None


def placeholder_problems(
    config: m.ProxyConfig, connections: Sequence[CompiledConnection]
) -> list[FieldError]:
    """What makes the file's placeholders ambiguous or unusable, with full field paths: one
    placeholder bound twice, a declared header the proxy never forwards or another credential
    sets, a `secret` scheme in a template."""
    problems: list[FieldError] = []
    index_of = {id(model): i for i, model in enumerate(config.connections)}
    first: dict[str, str] = {}
    for connection in connections:
        here = f"connections[{index_of[id(connection.model)]}]"
        for position, scheme in secret_schemes(connection):
            field = f"{here}.credentials[{position}].authSchemeConfig.secret"
            earlier = first.setdefault(scheme.placeholder, field)
            if earlier != field:
                problems.append(
                    FieldError(f"{field}.placeholder", f"already the placeholder of {earlier}")
                )
            problems += _header_problems(connection, scheme, field)
    for index, template in enumerate(config.templates):
        for position, auth in enumerate(template.auth_scheme_configs):
            if isinstance(auth, m.SecretSchemeConfig):
                problems.append(
                    FieldError(
                        f"templates[{index}].authSchemeConfigs[{position}].type",
                        TEMPLATE_REFUSAL,
                    )
                )
    return problems


TEMPLATE_REFUSAL = (
    "'secret' is bound to a connection of proxy.yaml, not to a template: a template's "
    "route serves many connections, so a placeholder could not name its own"
)


def _header_problems(
    connection: CompiledConnection, scheme: SecretScheme, field: str
) -> list[FieldError]:
    problems: list[FieldError] = []
    position_of = {entry.id: index for index, entry in enumerate(connection.model.credentials)}
    set_by = {
        name: position_of.get(peer.credential_id, 0)
        for peer in connection.schemes
        if peer is not scheme
        for name in peer.sets_headers
    }
    for index, name in enumerate(scheme.header_names):
        low = name.lower()
        if low in _NEVER_FORWARDED:
            problems.append(
                FieldError(f"{field}.headers[{index}]", "a header the proxy never forwards as sent")
            )
        elif low in set_by:
            problems.append(
                FieldError(
                    f"{field}.headers[{index}]",
                    f"set by credentials[{set_by[low]}] of this connection",
                )
            )
    return problems


def api_refusals(entries: Sequence[m.ConnectionCredential]) -> list[FieldError]:
    """A connection created through the management API may not use `secret` (see above)."""
    return [
        FieldError(f"credentials[{index}].authSchemeConfig.type", TEMPLATE_REFUSAL)
        for index, entry in enumerate(entries)
        if isinstance(entry.auth_scheme_config, m.SecretSchemeConfig)
    ]
