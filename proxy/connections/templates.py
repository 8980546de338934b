"""Connection templates (docs/admin-api.md): a template route, and connections built from a
template.

A template is a connection without secrets: `route`, `baseUrl` and the auth scheme configs. The
management API creates connections for end users from it; they all share the template's route,
and each request picks its connection with the `X-Connection-Id` header (the connection's id or
its `externalId`; the header itself never goes upstream, see `headers.REQUEST_ONLY`).

`TemplateRoute` is what the template's route resolves to in the data-plane router. It is a live set:
a connection added by the API serves traffic from the next request on, without a restart.
`Templates` holds the template routes of one process; the data plane and the management API share
it. Other processes on the same store learn of API changes through `dataplane/sync.py`; an unknown
id makes the route catch up with the store once before it answers 404 (`select_latest`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..config import models as m
from ..config.ids import new_id
from ..errors import FieldError, InvalidRequest, NotFound
from ..store import StoredConnection
from .compiled import (
    CompiledConnection,
    ConnectionProblem,
    compile_connection,
    normalise_route,
)
from .placeholders import api_refusals

if TYPE_CHECKING:
    from ..http1.inbound import InboundRequest

log = logging.getLogger("signing_proxy.templates")

CONNECTION_ID_HEADER = "X-Connection-Id"


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A checked template: its model and its normalised route."""

    model: m.Template
    route: str

    @property
    def id(self) -> str:
        return self.model.id


def compile_template(model: m.Template) -> tuple[CompiledTemplate | None, list[ConnectionProblem]]:
    """Check a template from the file; problems carry paths relative to the template."""
    try:
        route = normalise_route(model.route if model.route is not None else "/" + model.id)
    except ConnectionProblem as exc:
        return None, [exc]
    return CompiledTemplate(model, route), []


def build_connection(
    template: CompiledTemplate,
    *,
    name: str,
    credentials: Sequence[m.ConnectionCredentialInput],
    base_url: str | None = None,
    external_id: str | None = None,
    connection_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[CompiledConnection | None, list[FieldError]]:
    """Build and compile a connection from `template`; field paths are relative to `connection`.

    One credential per template auth scheme config, in order; a credential that leaves out
    `authSchemeConfig` takes the template's at its index, one that gives its own must keep the
    template's scheme type (the template decides how its upstream is authenticated).
    `extra` holds further `Connection` fields (`createdAt`, `systemId`, ...) by Python name.
    A `baseUrl` without a scheme gets `https://` (seed 001).
    """
    configs = template.model.auth_scheme_configs
    problems: list[FieldError] = []
    if configs and len(credentials) != len(configs):
        problems.append(
            FieldError(
                "credentials",
                f"template {template.id!r} needs {len(configs)} credential(s), "
                f"one per auth scheme config, got {len(credentials)}",
            )
        )
        return None, problems
    entries: list[m.ConnectionCredential] = []
    for index, given in enumerate(credentials):
        auth = given.auth_scheme_config
        if auth is None:
            if index >= len(configs):
                problems.append(
                    FieldError(
                        f"credentials[{index}].authSchemeConfig",
                        "required: the template has no auth scheme config at this index",
                    )
                )
                continue
            auth = configs[index]
        elif configs and auth.type != configs[index].type:
            problems.append(
                FieldError(
                    f"credentials[{index}].authSchemeConfig.type",
                    f"the template's scheme at this index is {configs[index].type!r}",
                )
            )
            continue
        # A new credential gets a ULID like the connection; a given one keeps its id.
        ident = given.id or given.credential.id or new_id()
        entries.append(
            m.ConnectionCredential(id=ident, auth_scheme_config=auth, credential=given.credential)
        )
    problems += api_refusals(entries)
    if problems:
        return None, problems
    model = m.Connection(
        id=connection_id or new_id(),
        name=name,
        base_url=with_scheme(base_url) if base_url else template.model.base_url,
        route=template.route,
        external_id=external_id,
        connection_template_id=template.id,
        credentials=entries,
        **dict(extra or {}),
    )
    return check_connection(model)


def check_connection(model: m.Connection) -> tuple[CompiledConnection | None, list[FieldError]]:
    """Compile a connection exactly as the file's are compiled; paths relative to it."""
    compiled, errors = compile_connection(model)
    return compiled, [FieldError(e.field, e.message) for e in errors]


def with_scheme(base_url: str) -> str:
    """Seed 001 `ConnectionCreate.baseUrl`: "If the scheme is missing, then https:// will be
    used"."""
    return base_url if "://" in base_url else "https://" + base_url


class UnknownConnection(NotFound):
    """404 `connection_not_found` from `TemplateRoute.select`; `route` can look again."""

    def __init__(self, route: TemplateRoute) -> None:
        super().__init__(
            "connection_not_found",
            f"no connection of template {route.template.id!r} has this id or externalId",
        )
        self.route = route


class TemplateRoute:
    """The target of a template's route: picks the connection named by `X-Connection-Id`.

    Attributes:
        catch_up: brings the route up to date with the store (`sync.ConnectionSync.catch_up`);
            None when nothing else writes connections.
    """

    def __init__(self, template: CompiledTemplate) -> None:
        self.template = template
        self.catch_up: Callable[[], Awaitable[None]] | None = None
        self._by_id: dict[str, CompiledConnection] = {}
        self._by_external_id: dict[str, CompiledConnection] = {}

    def select(self, request: InboundRequest) -> CompiledConnection:
        values = request.header_values(CONNECTION_ID_HEADER)
        if len(values) > 1:
            # Which one would win is a guess the proxy does not make (the first, the last?).
            raise InvalidRequest(
                "connection_id_ambiguous",
                f"send {CONNECTION_ID_HEADER} once: the request names several connections",
            )
        wanted = values[0].strip() if values else ""
        if not wanted:
            raise InvalidRequest(
                "connection_id_required",
                f"this route serves template {self.template.id!r}: "
                f"name the connection in {CONNECTION_ID_HEADER}",
            )
        connection = self.get(wanted)
        if connection is None:
            raise UnknownConnection(self)
        return connection

    async def select_latest(self, request: InboundRequest) -> CompiledConnection:
        """`select()` again after catching up with the store: after an `UnknownConnection`,
        the id may name a connection another process created a moment ago."""
        if self.catch_up is not None:
            await self.catch_up()
        return self.select(request)

    def by_id(self, connection_id: str) -> CompiledConnection | None:
        return self._by_id.get(connection_id)

    def get(self, id_or_external_id: str) -> CompiledConnection | None:
        """By id first, then by `externalId`."""
        found = self.by_id(id_or_external_id)
        return found if found is not None else self._by_external_id.get(id_or_external_id)

    def add(self, connection: CompiledConnection) -> CompiledConnection | None:
        """Add or replace (same id) a connection; it serves traffic from the next request.

        Returns the connection it replaced, if any.
        """
        old = self.discard(connection.id)
        self._by_id[connection.id] = connection
        if connection.model.external_id:
            self._by_external_id[connection.model.external_id] = connection
        return old

    def discard(self, connection_id: str) -> CompiledConnection | None:
        old = self._by_id.pop(connection_id, None)
        if old is not None and old.model.external_id:
            self._by_external_id.pop(old.model.external_id, None)
        return old

    def __iter__(self) -> Iterator[CompiledConnection]:
        return iter(list(self._by_id.values()))

    def find_name(self, name: str) -> CompiledConnection | None:
        return next((c for c in self._by_id.values() if c.name == name), None)


class Templates:
    """The template routes of one process, by template id (shared by data plane and admin).

    Attributes:
        changing: held while a change is applied to the routes (by the management API or by
            `dataplane/sync.py`), so a reload from the store never undoes a change it did not read.
    """

    def __init__(self, templates: Sequence[CompiledTemplate] = ()) -> None:
        self.routes: dict[str, TemplateRoute] = {t.id: TemplateRoute(t) for t in templates}
        self.changing = asyncio.Lock()

    def get(self, template_id: str) -> TemplateRoute | None:
        return self.routes.get(template_id)

    def connection(self, connection_id: str) -> CompiledConnection | None:
        """A connection created from any template, by id."""
        for route in self.routes.values():
            found = route.by_id(connection_id)
            if found is not None:
                return found
        return None

    def connections(self) -> Iterator[CompiledConnection]:
        for route in self.routes.values():
            yield from route


def stored_model(
    stored: StoredConnection, templates: Templates
) -> tuple[TemplateRoute, m.Connection] | None:
    """A connection created through the API, as read back from the store, with its template's
    route; None (logged by id) when the template is gone from the file or the document is no
    longer valid: the proxy keeps serving everything else."""
    route = templates.get(stored.template_id)
    if route is None:
        log.warning("connection %s: template %r is gone; not served", stored.id, stored.template_id)
        return None
    try:
        model = m.Connection.model_validate(dict(stored.document))
    except ValidationError:
        log.warning("connection %s: stored document no longer valid; not served", stored.id)
        return None
    return route, model.model_copy(update={"route": route.template.route})


def compile_stored(stored: StoredConnection, model: m.Connection) -> CompiledConnection | None:
    """`stored_model()`'s model compiled; None (logged) when it no longer compiles."""
    compiled, problems = check_connection(model)
    if compiled is None:
        fields = ", ".join(p.field for p in problems)
        log.warning("connection %s: does not compile (%s); not served", stored.id, fields)
    return compiled
