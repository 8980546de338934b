"""Which connection serves a host in forward-proxy mode (docs/forward-proxy.md): pure, no I/O.

`HostBinding` is built once per load from the compiled connections' `hosts`; `lookup` answers a
CONNECT target (or an absolute-form request's authority) with one dict probe per label: an
exact entry wins over a wildcard, a longer wildcard domain over a shorter one. Two connections
binding the same entry is a config error (`binding_problems`): a host has one set of
credentials, never a choice between two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..config.hosts import HostPattern, is_ip_literal
from .compiled import CompiledConnection


@dataclass(frozen=True, slots=True)
class HostBinding:
    """Bound hosts → connection. `exact` keys `(host, port)`, `wildcards` `(domain, port)`."""

    exact: dict[tuple[str, int], CompiledConnection] = field(default_factory=dict)
    wildcards: dict[tuple[str, int], CompiledConnection] = field(default_factory=dict)

    def lookup(self, host: str, port: int) -> CompiledConnection | None:
        """The connection bound to `host` (`config.hosts.normal_host` form) and `port`."""
        found = self.exact.get((host, port))
        if found is not None or not self.wildcards or is_ip_literal(host):
            return found
        rest = host
        while True:
            dot = rest.find(".")
            if dot < 0:
                return None
            rest = rest[dot + 1 :]
            found = self.wildcards.get((rest, port))
            if found is not None:
                return found

    def patterns(self) -> tuple[HostPattern, ...]:
        """Every bound entry (what the forward-proxy CA's name constraints permit)."""
        exact = (HostPattern(h, p, is_ip=is_ip_literal(h)) for h, p in self.exact)
        wild = (HostPattern(d, p, wildcard=True) for d, p in self.wildcards)
        return tuple(sorted({*exact, *wild}, key=str))

    def __bool__(self) -> bool:
        return bool(self.exact or self.wildcards)


def bind_hosts(connections: Iterable[CompiledConnection]) -> HostBinding:
    """The binding of `connections` (the first to claim an entry keeps it; `binding_problems`
    reports the others)."""
    binding = HostBinding()
    for connection in connections:
        for pattern in connection.hosts:
            table = binding.wildcards if pattern.wildcard else binding.exact
            table.setdefault((pattern.name, pattern.port), connection)
    return binding


def binding_problems(
    indexed: Sequence[tuple[int, CompiledConnection]],
) -> list[tuple[str, str]]:
    """`(field, message)` for each entry already bound by an earlier connection."""
    claimed: dict[tuple[bool, str, int], int] = {}
    problems: list[tuple[str, str]] = []
    for index, connection in indexed:
        explicit = connection.model.hosts is not None
        for position, pattern in enumerate(connection.hosts):
            key = (pattern.wildcard, pattern.name, pattern.port)
            owner = claimed.setdefault(key, index)
            if owner != index:
                where = (
                    f"connections[{index}].hosts[{position}]"
                    if explicit
                    else (f"connections[{index}].baseUrl")
                )
                problems.append(
                    (where, f"{pattern} is bound by connections[{owner}] already (set hosts)")
                )
    return problems
