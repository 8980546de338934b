"""`signing-proxy explain`: the upstream request exactly as it would go out, sending nothing.

What a user reaches for when an API answers "signature mismatch": the request is built by the
same functions `Forwarder.start` uses (`route_target`, `outbound_request`, `with_body`), every
credential's `sign()` runs in order, and the result is printed — request line, headers, body
digest, and for `hmac`/`oauth1` the exact bytes or base string that were signed.

Masking. Every secret value of the connection (each `SecretStr` in its config: keys, tokens,
passwords, consumer secrets) is replaced by `****` wherever it appears, also in the
forms the schemes derive from it: percent-encoded (a query API key), percent-encoded twice (inside
an OAuth 1 base string), and the base64 `user:password` of Basic. Signatures are shown: they are
what has to be compared with the API's own computation, they do not reveal the key, and the
request they sign is printed next to them anyway. OAuth 2.0 tokens are never fetched: a
placeholder stands in for the access token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, SecretStr

from ..config import models as m
from ..connections.access import AccessDenied, Decision, Presented
from ..connections.compiled import CompiledConnection
from ..connections.runtime import Runtime
from ..dataplane.body import BufferedBody
from ..dataplane.forward import check_tail, outbound_request, route_target, with_body
from ..dataplane.plane import build_router
from ..errors import InvalidRequest
from ..messages import OutboundRequest, TokenSet, encode_query_component
from ..schemes.base import DEFAULT_CONTEXT, Scheme, SigningContext
from ..schemes.basic import basic_credentials
from ..schemes.certificate import CertificateScheme

MASK = "****"
PLACEHOLDER_TOKEN = "<oauth2-access-token: fetched at run time>"
# An `oauth1` credential of the file: its token is exchanged at run time (tokens/oauth1.py).
PLACEHOLDER_OAUTH1_TOKEN = "<oauth1-token: exchanged at run time>"
BODY_PREVIEW = 2048


@runtime_checkable
class ExplainsSignature(Protocol):
    """A scheme that can show what it signs (hmac, oauth1)."""

    def signed_parts(
        self, request: OutboundRequest, ctx: SigningContext
    ) -> list[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    facts: dict[str, Any]
    signed: list[tuple[str, bytes]]
    # Set by a scheme whose signed parts are lines of text (AWS SigV4's canonical request and
    # string to sign): how they relate, and they are printed line by line.
    text_heading: str | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    connection: CompiledConnection
    request: OutboundRequest
    steps: list[Step]


def explain(
    runtime: Runtime,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> Explanation:
    """Build and sign the request as the proxy would for `method target`; send nothing.

    Raises:
        ProxyError: the same errors the proxy would answer with (no route, bad path).
    """
    found, tail, query = route_target(build_router(runtime), target)
    if not isinstance(found, CompiledConnection):
        raise InvalidRequest("template_route", "explain works on connections from the file")
    connection = found
    check_tail(tail)
    if runtime.placeholders is not None:
        # A misdirected `secret` placeholder: refused as the proxy would refuse it
        # (connections/placeholders.py).
        raw = [(k.encode("utf-8"), v.encode("utf-8")) for k, v in headers]
        runtime.placeholders.check(connection.id, target, raw)
    presented = _presented(runtime, headers)
    # The header carrying a client key never goes upstream (and so is never printed here).
    client_headers = presented.without_key(headers) if presented is not None else list(headers)
    if body is not None and not any(k.lower() == "content-length" for k, _ in client_headers):
        client_headers.append(("Content-Length", str(len(body))))  # as an HTTP client would
    request = outbound_request(connection, method.upper(), tail, query, client_headers)
    reads_body = any(scheme.reads_body(request) for scheme in connection.schemes)
    if reads_body or (body is not None and connection.wants_replayable_body):
        # The same choice as `Forwarder._prepare_body`: such a body is read, then sent with a
        # Content-Length of its own.
        request = with_body(request, BufferedBody(body or b""))
    # One clock reading and one nonce for the whole run, so the signed string shown is the one
    # that produced the signature shown.
    now, nonce = DEFAULT_CONTEXT.now(), DEFAULT_CONTEXT.nonce()
    steps = []
    for index, scheme in enumerate(connection.schemes):
        ctx = SigningContext(now=lambda: now, nonce=lambda: nonce, token=_placeholder(scheme))
        signed = scheme.signed_parts(request, ctx) if isinstance(scheme, ExplainsSignature) else []
        heading = getattr(scheme, "explain_heading", None)
        steps.append(Step(index, scheme.describe(), signed, heading))
        request = scheme.signed(request, ctx)
    return Explanation(connection, request, steps)


def explain_access(
    runtime: Runtime,
    client: str | None,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
) -> Decision | None:
    """Whether `client` may make `method target` and which rule decides (connections/access.py);
    None when the configuration has neither clients nor a policy for the connection. Without
    `client`, a client key among `headers` names the client, as it would on the wire.

    The rate limit is not consulted: it depends on the moment, not on the request.

    Raises:
        ProxyError: no route, bad path, a template route, or no client of that name.
    """
    access = runtime.access
    if access is None and client is None:
        return None
    caller = access.callers.get(client) if access is not None and client is not None else None
    if client is not None and caller is None:
        raise InvalidRequest("unknown_client", f"the configuration has no client {client!r}")
    found, tail, _ = route_target(build_router(runtime), target)
    if not isinstance(found, CompiledConnection):
        raise InvalidRequest("template_route", "explain works on connections from the file")
    check_tail(tail)
    assert access is not None  # a client was found in it, or it exists
    if caller is None and access.clients_required:
        presented = _presented(runtime, headers)
        if presented is None:
            return Decision(
                False,
                "client_unauthorized",
                "clients are configured and a request needs a client key (pass --client NAME)",
            )
        caller = presented.caller
    return access.decide(caller, found, method.upper(), tail)


def _presented(runtime: Runtime, headers: Sequence[tuple[str, str]]) -> Presented | None:
    if runtime.access is None:
        return None
    raw = [(k.encode("utf-8"), v.encode("utf-8")) for k, v in headers]  # as curl sends them
    try:
        return runtime.access.authenticate(raw)
    except AccessDenied:
        return None


def render_access(decision: Decision) -> str:
    if decision.allowed:
        return f"access: allowed: {decision.reason}\n"
    return f"access: refused with {decision.code}: {decision.reason}; nothing would be sent\n"


def _placeholder(scheme: Scheme) -> TokenSet | None:
    if not scheme.needs_token:
        return None
    if scheme.type_name == "oauth1":
        return TokenSet(access_token=PLACEHOLDER_OAUTH1_TOKEN)
    return TokenSet(access_token=PLACEHOLDER_TOKEN)


def secret_values(model: m.Connection) -> set[str]:
    """Every secret of the connection, and the derived forms in which it can be printed."""
    raw = {value for value in config_secrets(model) if value}
    for entry in model.credentials:
        cred = entry.credential
        if isinstance(cred, m.BasicAuthCredential):
            basic = cred.data.basic_auth
            if not basic.password.get_secret_value():
                # An empty password means the username is the secret key (docs/configuration.md:
                # Stripe).
                raw.add(basic.username)
            raw.add(basic_credentials(basic.username, basic.password.get_secret_value()))
    forms = set(raw)
    for value in raw:
        once = encode_query_component(value)
        forms |= {once, encode_query_component(once)}
    return {form for form in forms if form}


def config_secrets(value: object) -> Iterator[str]:
    """Every secret (`SecretStr` field) of a config model, however deep."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from config_secrets(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from config_secrets(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from config_secrets(item)


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no partial leftovers
        text = text.replace(secret, MASK)
    return text


def render(explanation: Explanation) -> str:
    """The explanation as text, secrets masked."""
    connection, request = explanation.connection, explanation.request
    lines = [
        "# signing-proxy explain: nothing was sent; secret values are shown as ****",
        f"connection: {connection.name} (route {connection.route or '/'})",
        "",
        f"{request.method} {request.url} HTTP/1.1",
        f"Host: {request.origin.partition('://')[2]}",
        *(f"{key}: {value}" for key, value in request.headers),
        "",
        _body_line(request),
        "",
        "credentials, in the order they are applied:",
    ]
    for step in explanation.steps:
        facts = " ".join(f"{k}={v}" for k, v in step.facts.items() if k != "type")
        lines.append(f"  [{step.index}] {step.facts['type']} {facts}".rstrip())
        if step.signed and step.text_heading is not None:
            lines.append(f"      {step.text_heading}")
            for label, data in step.signed:
                lines.append(f"        {label} ({len(data)} bytes):")
                lines += [f"          {line}" for line in data.decode("utf-8").split("\n")]
        elif step.signed:
            lines.append("      signed, in this order (the MAC runs over these exact bytes):")
            for label, data in step.signed:
                lines.append(f"        {label} ({len(data)} bytes): {_show(data)}")
    for scheme in connection.schemes:
        if isinstance(scheme, CertificateScheme):
            lines += ["", f"TLS client certificate: {scheme.subject} (from credential)"]
    return mask("\n".join(lines), secret_values(connection.model)) + "\n"


def _body_line(request: OutboundRequest) -> str:
    if request.body is None:
        return "body: none read (streamed to the upstream as the client sends it)"
    data = request.body.read_all()
    return f"body: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"


def _show(data: bytes) -> str:
    """Exact bytes, readably: text when it is ASCII, else Python bytes notation; long ones cut."""
    head = data[:BODY_PREVIEW]
    try:
        text = head.decode("ascii")
        shown = text if text.isprintable() else repr(head)
    except UnicodeDecodeError:
        shown = repr(head)
    if len(data) > BODY_PREVIEW:
        shown += f" ... ({len(data)} bytes in all, sha256 {hashlib.sha256(data).hexdigest()})"
    return shown


def parse_header(text: str) -> tuple[str, str]:
    """`--header 'Name: value'` (curl's form) → `(name, value)`."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or name != name.strip():
        raise ValueError(f"--header must look like 'Name: value', got {text.split(':')[0]!r}")
    return name, value.strip()


def read_data(text: str) -> bytes:
    """`--data @file` reads the file's bytes exactly (`@-`: standard input); else the text."""
    if not text.startswith("@"):
        return text.encode()
    if text == "@-":
        import sys

        return sys.stdin.buffer.read()
    with open(text[1:], "rb") as file:
        return file.read()
