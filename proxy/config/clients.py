"""Config models of clients and policy (docs/security.md, "Clients and policy").

`clients` (top level) says who may use the proxy and which connections each may reach; `policy` (on
a connection or a template) says which methods and paths may be used through it. Kept apart from
`models.py`, which holds the seed shapes; checks that need the whole file (one key per client,
duplicate keys, `connections` entries naming nothing, pattern syntax) are in
`proxy/connections/access.py`, where `check --offline` can tell a placeholder's field from the
structure.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
)
from pydantic.alias_generators import to_camel


class AccessModel(BaseModel):
    # The same conventions as `models.Model` (camelCase, unknown keys are errors, frozen,
    # strict types).
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True
    )


# A name that may appear in a log line and a metrics label as it is.
ClientName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# RFC 9110 §5.6.2 token, or `*` for any method.
Method = Annotated[str, StringConstraints(pattern=r"^(\*|[!#$%&'*+.^_`|~0-9A-Za-z-]+)$")]


class RateLimit(AccessModel):
    """A token bucket: `requests` per `per` seconds, bursts up to `requests`."""

    requests: Annotated[int, Field(gt=0)]
    per: Annotated[float, Field(gt=0)] = 1.0


class Client(AccessModel):
    name: ClientName
    key: SecretStr | None = None
    key_sha256: str | None = None  # 64 hex digits, checked with the rest in `connections/access.py`
    # Connection names, template ids, `template-id/externalId`, or `*` for all.
    connections: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    rate_limit: RateLimit | None = None


class PolicyRule(AccessModel):
    """One allow rule; a missing `methods` or `paths` means any."""

    methods: Annotated[list[Method], Field(min_length=1)] | None = None
    paths: Annotated[list[str], Field(min_length=1)] | None = None


class Policy(AccessModel):
    """Present = default deny: only what a rule of `allow` matches goes through."""

    allow: list[PolicyRule] = []
