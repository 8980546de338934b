"""A real, strict OAuth 2.0 authorization server and resource server for tests (RFC 6749).

Not a mock: it enforces what real providers enforce, so the proxy is tested against the rules.

- `/authorize` (RFC 6749 §4.1.1, RFC 7636 §4.3): auto-approves and redirects to `redirect_uri`
  with a single-use `code`, or with `error=...` when `authorize_error` is set.
- `/token`: `authorization_code` (redirect_uri must match; PKCE S256 verifier enforced, §4.6 of
  RFC 7636), `refresh_token` (§6), `client_credentials` (§4.4), `password` (§4.3). Client
  authentication by HTTP Basic or form (§2.3.1; both at once is `invalid_request`); a client may
  refuse Basic (401 `invalid_client`, as some providers do).
- Access tokens expire after `access_ttl` seconds (`expires_in`); the resource server answers
  401 `invalid_token` (RFC 6750 §3.1) to an expired, unknown or revoked token.
- Refresh tokens rotate on every use. A rotated token is rejected (`invalid_grant`) once its
  successor has been *confirmed* — presented at `/token`, or its access token used at the
  resource server. Until then the predecessor is still accepted and the unconfirmed successor is
  revoked: the grace rule of Okta/Auth0-style rotation, without which no client could survive a
  crash between the server issuing a token and the client storing it. Presenting a token that
  was rotated out and confirmed is reuse: `invalid_grant`.
- `strict_rotation`: no grace at all — a refresh token is good for exactly one use; presented
  again it is `invalid_grant`, whatever happened to its successor (the strictest providers).
  `reuses` counts refresh tokens presented a second time, `invalid_grants` every refused grant:
  a client that never loses a rotated token keeps both at 0.
- Error answers carry an `error_description` that echoes the presented secret, as careless
  providers do, so tests can prove it never leaks.
- `fail_mode` makes `/token` misbehave: "500", "timeout", "not_json", "no_access_token".
- Counters: `hits` (all `/token` calls), `grants` (per grant type), `resource_hits`.

`serve_in_thread()` runs both servers in a thread with its own loop, for subprocess tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

from aiohttp import web

from tests.loops import background_loop
from tests.upstreams import catch_all


@dataclass
class Client:
    secret: str | None  # None: a public client
    basic_allowed: bool = True


@dataclass
class RefreshRecord:
    client_id: str
    scope: str | None
    parent: str | None
    child: str | None = None
    access_token: str = ""
    confirmed: bool = False  # presented at /token, or its access token used
    revoked: bool = False
    issued_by: str = "pasted"  # the grant that issued it; "pasted": issue() by a test
    issued_at: float = field(default_factory=time.time)
    used_at: float | None = None  # when it was presented and rotated


@dataclass
class AuthServer:
    """State of the authorization server; all fields are readable by tests."""

    access_ttl: float = 3600.0
    issue_refresh_tokens: bool = True
    rotate_refresh_tokens: bool = True
    strict_rotation: bool = False
    clients: dict[str, Client] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    fail_mode: str | None = None
    delay: float = 0.0  # before a /token request is looked at
    answer_delay: float = 0.0  # after it was handled, before the answer leaves
    authorize_error: str | None = None
    authorize_error_description: str = "denied"
    hits: int = 0
    resource_hits: int = 0
    reuses: int = 0
    invalid_grants: int = 0
    grants: Counter[str] = field(default_factory=Counter)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    access: dict[str, tuple[float, str | None]] = field(default_factory=dict)  # token: exp, rt
    refresh: dict[str, RefreshRecord] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- helpers for tests ---

    def issue(
        self,
        client_id: str,
        scope: str | None = None,
        parent: str | None = None,
        issued_by: str = "pasted",
    ) -> dict[str, Any]:
        """Issue a token pair directly (as if a person had authorised); the §5.1 body."""
        access = "at-" + secrets.token_urlsafe(16)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
        }
        rt: str | None = None
        if self.issue_refresh_tokens:
            rt = "rt-" + secrets.token_urlsafe(16)
            self.refresh[rt] = RefreshRecord(
                client_id, scope, parent, access_token=access, issued_by=issued_by
            )
            body["refresh_token"] = rt
        self.access[access] = (time.time() + self.access_ttl, rt)
        if scope:
            body["scope"] = scope
        return body

    def current_refresh_token(self, refresh_token: str) -> str:
        """The newest refresh token of the family `refresh_token` belongs to."""
        rt = refresh_token
        while self.refresh[rt].child is not None:
            child = self.refresh[rt].child
            assert child is not None
            rt = child
        return rt

    def accepts(self, refresh_token: str) -> bool:
        """Whether `/token` would take `refresh_token` now (without using it)."""
        record = self.refresh.get(refresh_token)
        if record is None or record.revoked:
            return False
        if self.strict_rotation:
            return record.child is None
        child = self.refresh.get(record.child) if record.child else None
        return child is None or not child.confirmed

    def revoke_all(self) -> None:
        for record in self.refresh.values():
            record.revoked = True
        self.access.clear()

    def expire_access_tokens(self) -> None:
        self.access = {k: (0.0, rt) for k, (_, rt) in self.access.items()}

    # --- /authorize ---

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") not in self.clients or not redirect_uri:
            return web.json_response({"error": "invalid_request"}, status=400)
        state = q.get("state", "")
        if self.authorize_error:
            params = {
                "error": self.authorize_error,
                "error_description": self.authorize_error_description,
                "state": state,
            }
        else:
            code = secrets.token_urlsafe(16)
            self.codes[code] = {
                "client_id": q["client_id"],
                "redirect_uri": redirect_uri,
                "challenge": q.get("code_challenge"),
                "method": q.get("code_challenge_method", "plain"),
                "scope": q.get("scope"),
                "expires": time.time() + 60,
                "query": dict(q),
            }
            params = {"code": code, "state": state}
        sep = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(redirect_uri + sep + urlencode(params))

    # --- /token ---

    async def token(self, request: web.Request) -> web.Response:
        response = await self._token(request)
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        return response

    async def _token(self, request: web.Request) -> web.Response:
        with self.lock:
            self.hits += 1
        form = dict(await request.post())
        fields = {k: str(v) for k, v in form.items()}
        self.token_requests.append(
            {
                "form": fields,
                "authorization": request.headers.get("Authorization"),
                "at": time.time(),
            }
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        mode = self.fail_mode
        if mode == "500":
            return web.Response(status=500, text="<html>oops</html>")
        if mode == "timeout":
            await asyncio.sleep(3600)
        if mode == "not_json":
            return web.Response(status=200, text="access_token=abc", content_type="text/plain")
        if mode == "no_access_token":
            return web.json_response({"token_type": "Bearer"})
        client_id, problem = self._client(request, fields)
        if problem is not None:
            return problem
        grant = fields.get("grant_type", "")
        self.grants[grant] += 1
        with self.lock:
            if grant == "refresh_token":
                return self._refresh(client_id, fields)
            if grant == "client_credentials":
                return web.json_response(self.issue(client_id, fields.get("scope")))
            if grant == "password":
                if self.users.get(fields.get("username", "")) != fields.get("password"):
                    return _error("invalid_grant", fields.get("password", ""))
                return web.json_response(self.issue(client_id, fields.get("scope")))
            if grant == "authorization_code":
                return self._code(client_id, fields)
        return _error("unsupported_grant_type", grant)

    def _client(
        self, request: web.Request, form: dict[str, str]
    ) -> tuple[str, web.Response | None]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            if "client_secret" in form:
                return "", _error("invalid_request", "two client authentication methods")
            decoded = base64.b64decode(header[6:]).decode()
            raw_id, _, raw_secret = decoded.partition(":")
            # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            client = self.clients.get(client_id)
            if client is None or not client.basic_allowed or client.secret != secret:
                return "", _error("invalid_client", secret, status=401)
            return client_id, None
        client_id = form.get("client_id", "")
        client = self.clients.get(client_id)
        if client is None or client.secret != form.get("client_secret"):
            return "", _error("invalid_client", form.get("client_secret", ""), status=401)
        return client_id, None

    def _refresh(self, client_id: str, form: dict[str, str]) -> web.Response:
        rt = form.get("refresh_token", "")
        record = self.refresh.get(rt)
        if record is not None and record.child is not None:
            self.reuses += 1
        if record is None or record.client_id != client_id or not self.accepts(rt):
            self.invalid_grants += 1
            return _error("invalid_grant", rt)
        record.confirmed = True
        record.used_at = time.time()
        if record.child is not None:
            self.refresh[record.child].revoked = True  # never confirmed: replaced
            self.access.pop(self.refresh[record.child].access_token, None)
        if not self.rotate_refresh_tokens:
            body = self.issue(client_id, record.scope)
            del self.refresh[body.pop("refresh_token")]
            return web.json_response(body)
        body = self.issue(client_id, record.scope, parent=rt, issued_by="refresh_token")
        record.child = body["refresh_token"]
        return web.json_response(body)

    def _code(self, client_id: str, form: dict[str, str]) -> web.Response:
        code = self.codes.pop(form.get("code", ""), None)  # single use
        if code is None or code["client_id"] != client_id or code["expires"] < time.time():
            return _error("invalid_grant", form.get("code", ""))
        if code["redirect_uri"] != form.get("redirect_uri"):
            return _error("invalid_grant", "redirect_uri mismatch")
        if code["challenge"] is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if code["method"] != "S256" or expected != code["challenge"]:
                return _error("invalid_grant", verifier)
        return web.json_response(
            self.issue(client_id, code["scope"], issued_by="authorization_code")
        )

    # --- resource server ---

    async def resource(self, request: web.Request) -> web.Response:
        self.resource_hits += 1
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        entry = self.access.get(token)
        if entry is None or entry[0] <= time.time():
            return web.Response(
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                text="token expired or unknown",
            )
        if entry[1] is not None and entry[1] in self.refresh:
            self.refresh[entry[1]].confirmed = True
        body = await request.read()
        return web.json_response(
            {
                "ok": True,
                "method": request.method,
                "path": request.path_qs,
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
        )


def _error(code: str, echoed: str, status: int = 400) -> web.Response:
    # A careless provider: the description repeats what was sent, secrets included.
    headers = {"WWW-Authenticate": 'Basic realm="token"'} if status == 401 else None
    return web.json_response(
        {"error": code, "error_description": f"rejected value {echoed}"},
        status=status,
        headers=headers,
    )


def create_auth_app(server: AuthServer) -> web.Application:
    app = web.Application()
    app.router.add_get("/authorize", server.authorize)
    app.router.add_post("/token", server.token)
    return app


def create_resource_app(server: AuthServer) -> web.Application:
    return catch_all(server.resource)


@dataclass
class Running:
    server: AuthServer
    auth_url: str
    resource_url: str


@contextmanager
def serve_in_thread(server: AuthServer) -> Iterator[Running]:
    """Serve the authorization and resource servers on 127.0.0.1 from a background thread."""
    with background_loop() as (run, exits):
        auth = run(serve_app(create_auth_app(server), exits))
        resource = run(serve_app(create_resource_app(server), exits))
        yield Running(server, auth, resource)


async def serve_app(app: web.Application, exits: AsyncExitStack) -> str:
    """`app` on a port of 127.0.0.1 the kernel picks, cleaned up by `exits`; its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    exits.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return f"http://127.0.0.1:{runner.addresses[-1][1]}"
