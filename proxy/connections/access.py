"""Clients and policy on the request path (docs/security.md, "Clients and policy").

`Access` is built once per loaded config (`compile_access`, which also reports the problems
`check` must refuse) and asked twice per request, before any body is read and before any
upstream or token endpoint is contacted:

1. `authenticate(headers)`, before routing: which client presented which key (401
   `client_unauthorized` when `clients` is configured and none did). Done first so that a
   caller without a key learns nothing about routes or connection ids.
2. `authorize(caller, connection, method, raw_tail)`, right after the connection is known:
   the client's `connections` (403 `client_forbidden`), the connection's or its template's
   `policy` (403 `request_forbidden`), then the client's rate limit (429 `rate_limited`).

Without `clients` and without any `policy` there is no `Access` at all, and the request path
does exactly what it did before. The decisions themselves are in `policy.py`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..config.clients import Client, Policy
from ..config.models import ProxyConfig
from ..errors import PROXY_INTERNAL_RESPONSE, FieldError, ProxyError
from .compiled import CompiledConnection
from .policy import (
    KEY_CARRIERS,
    KeyRing,
    PatternError,
    PolicyMatcher,
    Rule,
    TokenBucket,
    candidate_keys,
    compile_path_pattern,
    first_allowing,
    key_digest,
    method_overrides,
)

REALM = 'Bearer realm="signing-proxy"'
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class AccessDenied(ProxyError):
    """A request refused by the clients and policy checks; nothing was sent upstream."""

    proxy_status = PROXY_INTERNAL_RESPONSE


def client_unauthorized() -> AccessDenied:
    return AccessDenied(
        "client_unauthorized",
        "a client key is required (Authorization: Bearer <key>, X-Api-Key or Basic)",
        status=401,
        headers=(("WWW-Authenticate", REALM),),
    )


def client_forbidden() -> AccessDenied:
    return AccessDenied("client_forbidden", "this client may not use this connection", status=403)


def request_forbidden() -> AccessDenied:
    return AccessDenied(
        "request_forbidden", "the connection's policy does not allow this request", status=403
    )


def rate_limited(wait: float) -> AccessDenied:
    seconds = max(1, math.ceil(wait))
    return AccessDenied(
        "rate_limited",
        "this client's rate limit is used up; retry later",
        status=429,
        headers=(("Retry-After", str(seconds)),),
    )


@dataclass(frozen=True, slots=True, eq=False)
class Caller:
    """A client as the request path sees it: name, reach, rate limit."""

    name: str
    all_connections: bool
    names: frozenset[str]  # connections of the file
    templates: frozenset[str]  # every connection created from these
    instances: frozenset[tuple[str, str]]  # (template id, externalId)
    bucket: TokenBucket | None = field(default=None, repr=False)

    def reach(self, connection: CompiledConnection, file_names: Mapping[str, str]) -> str | None:
        """The `connections` entry that lets this client use `connection`, or None."""
        if self.all_connections:
            return "*"
        name = file_names.get(connection.id)
        if name is not None and name in self.names:
            return name
        template = connection.model.connection_template_id
        if template is not None:
            if template in self.templates:
                return template
            external = connection.model.external_id
            if external is not None and (template, external) in self.instances:
                return f"{template}/{external}"
        return None


class Presented:
    """A client key presented with one request: whose it is, and the headers that carried a
    client key (the first one found, and any other carrier holding a known key too).

    Immutable, and made once per client and carrier when the config is loaded (`Access`), so
    that the usual request's check allocates none; a request with keys in several carriers
    gets its own (`also_in`).
    """

    __slots__ = ("caller", "carrier", "carriers", "carriers_raw", "name")

    def __init__(self, caller: Caller, carrier: str, others: frozenset[str] = frozenset()) -> None:
        self.caller = caller
        self.carrier = carrier  # lowercase header name: where the deciding key was
        self.carriers = frozenset({carrier}) | others
        # The same, for the lean path's raw headers.
        self.carriers_raw = frozenset(name.encode("latin-1") for name in self.carriers)
        self.name = caller.name

    def also_in(self, others: frozenset[str]) -> Presented:
        """The same client, with more carrier headers to remove."""
        return Presented(self.caller, self.carrier, others)

    def without_key(self, headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """`headers` without those that carried a client key: none goes upstream."""
        carriers = self.carriers
        return [pair for pair in headers if pair[0].lower() not in carriers]


@dataclass(frozen=True, slots=True)
class Decision:
    """What `explain --client` prints: allowed or not, and the rule that decided."""

    allowed: bool
    code: str | None
    reason: str


class Access:
    """The clients and policies of one loaded config (one per worker process)."""

    def __init__(
        self,
        callers: Sequence[tuple[bytes, Caller]],
        file_names: Mapping[str, str],
        template_policies: Mapping[str, Policy],
        *,
        clients_required: bool,
    ) -> None:
        # Digest -> the client's `Presented` per carrier header, made once here.
        self._ring: KeyRing[dict[str, Presented]] = KeyRing(
            [
                (digest, {carrier: Presented(caller, carrier) for carrier in KEY_CARRIERS})
                for digest, caller in callers
            ]
        )
        self.callers = {caller.name: caller for _, caller in callers}
        self._file_names = dict(file_names)  # connection id -> name, for the file's connections
        self._template_policies = dict(template_policies)
        # Compiled rules and their matcher per connection id, kept with the policy they came
        # from (a connection replaced through the API or a reload brings another policy object).
        self._rules: dict[str, tuple[Policy, tuple[Rule, ...], PolicyMatcher]] = {}
        self.clients_required = clients_required

    def keep_buckets(self, previous: Access) -> None:
        """Carry the rate-limit state of `previous` (the config before a reload) over to the
        clients of the same name and the same limit, so a reload refills no bucket."""
        for name, caller in self.callers.items():
            before = previous.callers.get(name)
            if caller.bucket is not None and before is not None and before.bucket is not None:
                caller.bucket.continue_from(before.bucket)

    def authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> Presented | None:
        """The client whose key the request presents (raw header bytes); None when no clients
        are configured.

        Raises:
            AccessDenied: 401 `client_unauthorized`, no key or no client has it.
        """
        if not self.clients_required:
            return None
        ring = self._ring
        found: Presented | None = None
        others: set[str] = set()
        # Every candidate is looked at, not just up to the first known key: a key (this
        # client's or another's) in a second carrier must not go upstream either.
        for carrier, key in candidate_keys(headers):
            owner = ring.owner(key)
            if owner is None:
                continue
            if found is None:
                found = owner[carrier]
            elif carrier != found.carrier:
                others.add(carrier)
        if found is None:
            raise client_unauthorized()
        return found.also_in(frozenset(others)) if others else found

    def authorize(
        self,
        presented: Presented | None,
        connection: CompiledConnection,
        method: str,
        raw_tail: str,
        headers: Iterable[tuple[bytes, bytes]] = (),
        query: str = "",
    ) -> None:
        """Raise `AccessDenied` unless the client may make this request now.

        `headers` (raw) and `query` are read for method overrides when the policy restricts
        methods: each method they name must be allowed too (policy.py)."""
        caller = presented.caller if presented is not None else None
        if caller is not None and caller.reach(connection, self._file_names) is None:
            raise client_forbidden()
        compiled = self._compiled(connection)
        if compiled is not None:
            matcher = compiled[2]
            if not matcher.allows(method, raw_tail):
                raise request_forbidden()
            if matcher.restricts_methods:
                for named in method_overrides(headers, query):
                    if not matcher.allows(named, raw_tail):
                        raise request_forbidden()
        if caller is not None and caller.bucket is not None:
            wait = caller.bucket.take()
            if wait:
                raise rate_limited(wait)

    def may_use(self, presented: Presented, connection: CompiledConnection) -> bool:
        """Whether the client's `connections` reach `connection` (a CONNECT asks before TLS)."""
        return presented.caller.reach(connection, self._file_names) is not None

    def restricts_methods(self, connection: CompiledConnection) -> bool:
        """The connection's policy allows some method less than another (a method policy)."""
        compiled = self._compiled(connection)
        return compiled is not None and compiled[2].restricts_methods

    def authorize_methods(
        self, connection: CompiledConnection, methods: Iterable[str], raw_tail: str
    ) -> None:
        """Raise 403 `request_forbidden` unless the policy allows each of `methods` (those a
        form body names in `_method`, read before anything is sent)."""
        compiled = self._compiled(connection)
        if compiled is None:
            return
        for method in methods:
            if not compiled[2].allows(method, raw_tail):
                raise request_forbidden()

    def rules_for(self, connection: CompiledConnection) -> tuple[Rule, ...] | None:
        """The connection's own policy, else its template's; None when neither has one."""
        compiled = self._compiled(connection)
        return compiled[1] if compiled is not None else None

    def _compiled(
        self, connection: CompiledConnection
    ) -> tuple[Policy, tuple[Rule, ...], PolicyMatcher] | None:
        model = connection.model
        policy = model.policy
        if policy is None and model.connection_template_id is not None:
            policy = self._template_policies.get(model.connection_template_id)
        if policy is None:
            return None
        cached = self._rules.get(connection.id)
        if cached is not None and cached[0] is policy:
            return cached
        # Checked by `compile_access` when the file was loaded (API connections inherit their
        # template's policy), so compiling cannot fail here. Once per connection and policy.
        rules = compile_rules(policy, [], "")
        compiled = (policy, rules, PolicyMatcher(rules))
        self._rules[connection.id] = compiled
        return compiled

    def decide(
        self, caller: Caller | None, connection: CompiledConnection, method: str, raw_tail: str
    ) -> Decision:
        """`authorize` as a statement for `explain` (the rate limit is not consulted)."""
        if caller is not None:
            entry = caller.reach(connection, self._file_names)
            if entry is None:
                return Decision(
                    False,
                    "client_forbidden",
                    f"client {caller.name!r} has no `connections` entry for this connection",
                )
            reached = f"client {caller.name!r} reaches it through `connections` entry {entry!r}"
        else:
            reached = "no clients are configured"
        rules = self.rules_for(connection)
        if rules is None:
            return Decision(True, None, f"{reached}; the connection has no policy")
        index = first_allowing(rules, method, raw_tail)
        if index is None:
            return Decision(
                False, "request_forbidden", f"{reached}; no policy rule allows it (default deny)"
            )
        return Decision(True, None, f"{reached}; allowed by policy rule {rules[index].source}")


def compile_rules(policy: Policy, problems: list[FieldError], here: str) -> tuple[Rule, ...]:
    """The policy's rules, with a problem for each unusable pattern (paths under `here`)."""
    rules: list[Rule] = []
    for index, rule in enumerate(policy.allow):
        at = f"{here}.allow[{index}]"
        methods = None
        if rule.methods is not None and "*" not in rule.methods:
            methods = frozenset(m.upper() for m in rule.methods)
        patterns = None
        if rule.paths is not None:
            compiled = []
            for position, text in enumerate(rule.paths):
                try:
                    compiled.append(compile_path_pattern(text))
                except PatternError as exc:
                    problems.append(FieldError(f"{at}.paths[{position}]", str(exc)))
            patterns = tuple(compiled)
        source = f"allow[{index}] (methods {_listed(rule.methods)}, paths {_listed(rule.paths)})"
        rules.append(Rule(methods, patterns, source))
    return tuple(rules)


def _listed(values: list[str] | None) -> str:
    return "any" if values is None else ", ".join(values)


def compile_access(
    config: ProxyConfig,
    file_connections: Sequence[CompiledConnection],
    problems: list[FieldError],
    clock: Callable[[], float] = time.monotonic,
) -> Access | None:
    """Check `clients` and every `policy`; None when the file uses neither."""
    template_ids = {template.id for template in config.templates}
    template_policies = {t.id: t.policy for t in config.templates if t.policy is not None}
    for index, template in enumerate(config.templates):
        if template.policy is not None:
            compile_rules(template.policy, problems, f"templates[{index}].policy")
    for index, model in enumerate(config.connections):
        if model.policy is not None:
            compile_rules(model.policy, problems, f"connections[{index}].policy")
    callers = _callers(config, template_ids, problems, clock)
    if (
        not callers
        and not template_policies
        and all(c.model.policy is None for c in file_connections)
    ):
        return None
    return Access(
        callers,
        {c.id: c.name for c in file_connections},
        template_policies,
        clients_required=bool(config.clients),
    )


def _callers(
    config: ProxyConfig,
    template_ids: set[str],
    problems: list[FieldError],
    clock: Callable[[], float],
) -> list[tuple[bytes, Caller]]:
    connection_names = {c.name for c in config.connections}
    names: dict[str, int] = {}
    digests: dict[bytes, int] = {}
    callers: list[tuple[bytes, Caller]] = []
    for index, client in enumerate(config.clients):
        here = f"clients[{index}]"
        if client.name in names:
            duplicate = f"duplicate of clients[{names[client.name]}]"
            problems.append(FieldError(f"{here}.name", duplicate))
        names.setdefault(client.name, index)
        digest = _digest(client, here, problems)
        if digest is None:
            continue
        if digest in digests:
            # Which client a request is would depend on the order: refused, key not shown.
            field_name = "key" if client.key is not None else "keySha256"
            problems.append(
                FieldError(f"{here}.{field_name}", f"the same key as clients[{digests[digest]}]")
            )
        digests.setdefault(digest, index)
        reach = _reach(client, connection_names, template_ids, problems, here)
        bucket = None
        if client.rate_limit is not None:
            bucket = TokenBucket(client.rate_limit.requests, client.rate_limit.per, clock)
        callers.append((digest, Caller(client.name, *reach, bucket=bucket)))
    return callers


def _digest(client: Client, here: str, problems: list[FieldError]) -> bytes | None:
    """The client's key digest, or None with a problem (never quoting the key or digest)."""
    if (client.key is None) == (client.key_sha256 is None):
        problems.append(FieldError(here, "give exactly one of key and keySha256"))
        return None
    if client.key is not None:
        key = client.key.get_secret_value()
        if not key:
            problems.append(FieldError(f"{here}.key", "must not be empty"))
            return None
        return key_digest(key)
    assert client.key_sha256 is not None
    if not _SHA256_HEX.fullmatch(client.key_sha256):
        problems.append(FieldError(f"{here}.keySha256", "must be 64 hex digits (SHA-256)"))
        return None
    return bytes.fromhex(client.key_sha256)


def _reach(
    client: Client,
    connection_names: set[str],
    template_ids: set[str],
    problems: list[FieldError],
    here: str,
) -> tuple[bool, frozenset[str], frozenset[str], frozenset[tuple[str, str]]]:
    all_connections = False
    names: set[str] = set()
    templates: set[str] = set()
    instances: set[tuple[str, str]] = set()
    for position, entry in enumerate(client.connections):
        template, slash, external = entry.partition("/")
        if entry == "*":
            all_connections = True
        elif slash and template in template_ids and external:
            instances.add((template, external))
        elif not slash and (entry in connection_names or entry in template_ids):
            # Connection names and template ids are apart: one text may name both.
            if entry in connection_names:
                names.add(entry)
            if entry in template_ids:
                templates.add(entry)
        else:
            problems.append(
                FieldError(
                    f"{here}.connections[{position}]",
                    "names no connection, template or template-id/externalId of this file",
                )
            )
    return all_connections, frozenset(names), frozenset(templates), frozenset(instances)
