"""The management API (docs/admin-api.md) on its own listener: `create_admin_app()`.

Paths:
    GET    /healthz, /readyz, /openapi.json               no token
    GET    /connections/oauth2/callback                    no token (a browser redirect; `state`)
    POST   /o/{organisation_id}/connections                CreateConnection
    GET    /o/{organisation_id}/connections                list
    GET    /o/{organisation_id}/connections/{id}           GetConnection
    DELETE /o/{organisation_id}/connections/{id}
    POST   /o/{organisation_id}/templates/{id}/oauth2/init InitialiseOAuth2Connection
    POST   /o/{organisation_id}/templates/{id}/oauth1/init OAuth 1.0a three-legged flow
    GET    /connections/oauth1/callback                    no token (a browser redirect)
    GET    /connection/{id}                                OpenInt getConnection
    GET    /.well-known/http-message-signatures-directory  no token: Web Bot Auth public keys

Every other path needs `Authorization: Bearer <admin.token>`, compared in constant time. Every path,
public ones too, answers only a `Host` the listener is known by (`dataplane/hosts.py`: the
listener's address, `localhost`, `admin.publicUrl`'s host, `admin.allowedHosts`), else 421: a web
page that rebinds its name to a loopback admin reads nothing. Errors are the docs/errors.md JSON
with `Proxy-Status`, including aiohttp's own 404/405/413 and its parser's refusals (`listener.py`).

May import every package below it (the data plane, tokens, connections, ...); only `cli/`
imports it. Within it, `connections.py` and the two flows (`oauth2.py`, `oauth1_flow.py`) build
on `connect_flow.py`; `connections.py` also uses the flows' exchange of a seed credential given
to create. Nothing imports back up that chain.
"""

from __future__ import annotations

import hmac
import logging
import time
import traceback
from collections.abc import Callable

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from .. import metrics
from ..config.address import split_host_port
from ..connections.compiled import CompiledConnection
from ..connections.runtime import Runtime
from ..connections.templates import Templates
from ..dataplane.hosts import HostCheck, listener_check, misdirected
from ..dataplane.middleware import error_response
from ..dataplane.plane import DataPlane
from ..errors import InvalidRequest, NotFound, PayloadTooLarge, ProxyError
from ..store import Store, StoreUnavailable
from ..tokens.manager import TokenManager
from . import connections, oauth1_flow, oauth2
from .context import ADMIN, CALLBACK_PATH, Admin, json_response
from .key_directory import DIRECTORY_PATH, serve_directory
from .openapi import openapi_document

log = logging.getLogger("signing_proxy.admin")

PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/openapi.json",
        CALLBACK_PATH,
        oauth1_flow.CALLBACK_PATH,
        DIRECTORY_PATH,  # public by design: verifiers fetch the Web Bot Auth keys there
    }
)
METRICS_PATH = "/metrics"
# Management bodies are small; a bigger one is a mistake or an attack.
MAX_BODY_BYTES = 1024 * 1024


class Unauthorized(ProxyError):
    status = 401

    def __init__(self) -> None:
        super().__init__(
            "unauthorized", "a valid admin token is required (Authorization: Bearer ...)"
        )


def _authorize(request: web.Request, token: str | None) -> None:
    if token is None:
        # Only possible on a loopback listener (`config.load.check_admin`).
        return
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    # hmac.compare_digest: the time taken does not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise Unauthorized()


def _admin_middleware(
    token: str | None, metrics_token: str | None = None, hosts: HostCheck | None = None
) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if hosts is not None and not hosts.allows(request.headers.get(hdrs.HOST)):
                raise misdirected()
            if request.path == METRICS_PATH:
                # No secret in it, so open unless `admin.metricsToken` asks for its own token.
                _authorize(request, metrics_token)
            elif request.path not in PUBLIC_PATHS:
                _authorize(request, token)
            return await handler(request)
        except ProxyError as error:
            response = error_response(error)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(_from_http(exc))
        except Exception as exc:
            # Type and traceback only: an exception's text may quote a secret.
            log.error(
                "unexpected %s while serving %s %s\n%s",
                type(exc).__name__,
                request.method,
                request.path,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            response = error_response(
                ProxyError("proxy_internal_error", "the proxy failed to handle the request")
            )
        if response.status == 401:
            response.headers[hdrs.WWW_AUTHENTICATE] = "Bearer"
        return response

    return middleware


def _from_http(exc: web.HTTPException) -> ProxyError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(MAX_BODY_BYTES)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return ProxyError(
            "method_not_allowed",
            "this route does not take this method",
            status=405,
            proxy_status="proxy_internal_response",
        )
    if exc.status == 404:
        return NotFound("not_found", "no such route")
    return InvalidRequest("bad_request", "the request could not be handled", status=exc.status)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the config is loaded (else this app would not exist) and the store takes writes.

    503 with the reason while it does not: a write probe fails (disk full, read-only, database
    file deleted), or token writes the store refused are still waiting to be retried.
    """
    admin = request.app[ADMIN]
    problems = [admin.tokens.store_problem()]
    try:
        await admin.store.check_writable()
    except StoreUnavailable as exc:
        problems.insert(0, exc.reason)
    except Exception as exc:
        problems.insert(0, f"the store did not answer ({type(exc).__name__})")
    problem = "; ".join(p for p in problems if p) or None
    if problem is not None:
        log.warning("readiness: %s", problem)
        return json_response({"status": "unavailable", "store": problem}, status=503)
    return json_response({"status": "ready"})


async def serve_openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def create_admin_app(
    runtime: Runtime,
    *,
    templates: Templates,
    store: Store,
    tokens: TokenManager | None = None,
    clock: Callable[[], float] = time.time,
    file_connections: dict[str, CompiledConnection] | None = None,
) -> web.Application:
    """The management API over the same `templates`, `store` and `tokens` as the data plane.

    Args:
        file_connections: the data plane's live map of the file's connections (a reload
            updates it); built from `runtime` when None.
        tokens: the data plane's token manager (its owner closes it); when None the app makes
            one on `store` for the code exchange and closes it with itself. `store` is never
            closed here: it belongs to whoever opened it.
    """
    own_tokens = tokens is None
    admin = Admin(
        runtime=runtime,
        templates=templates,
        store=store,
        tokens=tokens
        if tokens is not None
        else TokenManager(store, redirect_uri=runtime.oauth2_redirect_uri),
        clock=clock,
        file_connections=(
            file_connections
            if file_connections is not None
            else {c.id: c for c in runtime.connections}
        ),
    )
    settings = runtime.config.admin
    token = settings.token.get_secret_value() if settings and settings.token else None
    metrics_token = (
        settings.metrics_token.get_secret_value() if settings and settings.metrics_token else None
    )
    listen = settings.listen if settings is not None else "127.0.0.1:8081"
    public = [settings.public_url] if settings is not None and settings.public_url else []
    allowed = settings.allowed_hosts if settings is not None else []
    hosts = listener_check(split_host_port(listen)[0], [*public, *allowed])
    app = web.Application(
        middlewares=[_admin_middleware(token, metrics_token, hosts)],
        client_max_size=MAX_BODY_BYTES,
    )
    app[ADMIN] = admin

    async def close_own_tokens(_: web.Application) -> None:
        await admin.tokens.close()

    if own_tokens:
        app.on_cleanup.append(close_own_tokens)
    org = "/o/{organisation_id}"
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", serve_openapi)
    app.router.add_get(METRICS_PATH, serve_metrics)
    app.router.add_post(f"{org}/connections", connections.create_connection)
    app.router.add_get(f"{org}/connections", connections.list_connections)
    app.router.add_get(f"{org}/connections/{{connection_id}}", connections.get_connection)
    app.router.add_delete(f"{org}/connections/{{connection_id}}", connections.delete_connection)
    app.router.add_post(f"{org}/templates/{{template_id}}/oauth2/init", oauth2.initialise)
    app.router.add_get(CALLBACK_PATH, oauth2.callback)
    app.router.add_post(f"{org}/templates/{{template_id}}/oauth1/init", oauth1_flow.initialise)
    app.router.add_get(oauth1_flow.CALLBACK_PATH, oauth1_flow.callback)
    app.router.add_get("/connection/{connection_id}", connections.openint_get_connection)
    app.router.add_get(DIRECTORY_PATH, serve_directory)
    return app


async def serve_metrics(_: web.Request) -> web.Response:
    """Prometheus text format (docs/operations.md#metrics), summed over `--workers`."""
    body, content_type = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


def create_admin_app_for(runtime: Runtime, plane: DataPlane) -> web.Application:
    """The admin app over the template routes, store and token manager of the data `plane`."""
    tokens = plane.tokens
    if tokens is None:
        raise ValueError("the data plane has no token manager to share")
    return create_admin_app(
        runtime,
        templates=plane.templates,
        store=tokens.store,
        tokens=tokens,
        file_connections=plane.file_connections,  # a reload updates it in place
    )


__all__ = ["ADMIN", "Admin", "create_admin_app", "create_admin_app_for"]
