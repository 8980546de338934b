"""What the two connect flows share at their start (OAuth 2.0 in `oauth2.py`, OAuth 1.0a in
`oauth1_flow.py`): the template the init request names and its validated body, and the flow
remembered in the store under its state until the provider's callback takes it, once, within
`FLOW_TTL` (docs/admin-api.md)."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from ..errors import NotFound
from ..store import FlowState
from ..templates import TemplateRoute
from .context import ADMIN, Admin, ModelT, read_body

FLOW_TTL = 600.0  # a connect flow (OAuth 1.0a: its temporary credentials) expires after 10 min


class FlowTarget(Protocol):
    """The connection an init body says the callback creates or updates."""

    @property
    def connection_name(self) -> str | None: ...

    @property
    def external_id(self) -> str | None: ...


async def init_request(
    request: web.Request, model: type[ModelT]
) -> tuple[Admin, TemplateRoute, ModelT]:
    """POST .../templates/{template_id}/<flow>/init: the admin API of the request's
    organisation, the template (404 if no template has that id) and the body as `model`."""
    admin = request.app[ADMIN]
    admin.check_organisation(request)
    route = admin.templates.get(request.match_info["template_id"])
    if route is None:
        raise NotFound("not_found", "no template has this id")
    return admin, route, await read_body(request, model)


async def remember_flow(
    admin: Admin,
    route: TemplateRoute,
    target: FlowTarget,
    *,
    state: str,
    secret: str,
    redirect_uri: str,
    extra: dict[str, Any],
) -> None:
    """Store the started flow under `state` for the callback; `secret` (the PKCE verifier, the
    temporary token secret) is sealed by the store."""
    await admin.store.put_flow(
        FlowState(
            state=state,
            code_verifier=secret,
            template_id=route.template.id,
            organisation_id=admin.organisation_id,
            redirect_uri=redirect_uri,
            expires_at=admin.clock() + FLOW_TTL,
            connection_name=target.connection_name,
            external_id=target.external_id,
            extra=extra,
        )
    )
