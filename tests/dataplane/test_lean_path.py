"""The lean request path builds, from the client's bytes, exactly the head the general path
builds through `OutboundRequest`, the credentials' patches and `wire.encode_head` — checked
side by side on generated requests — and only connections that add constant headers take it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.connections.compiled import CompiledConnection
from proxy.connections.lean import build_head
from proxy.connections.runtime import build_runtime
from proxy.dataplane.forward import outbound_request, route_target
from proxy.dataplane.routing import Router
from proxy.http1.wire import encode_head, parse_origin, plan_framing
from proxy.schemes.base import DEFAULT_CONTEXT
from tests.builders import api_key, basic, bearer, connection, hmac_sha256, oauth2_token

HMAC = hmac_sha256("k", "url")
TOKEN = {"access_token": "a", "refresh_token": "r"}


def compiled(*credentials: dict[str, Any], base: str = "http://up.test:8080/api/v1") -> Any:
    tree = {"connections": [connection("c", base, *credentials, route="/c")]}
    [compiled_connection] = build_runtime(tree, {}).connections
    return compiled_connection


LEAN = [
    compiled(bearer("canary-lean-bearer")),
    compiled(basic("user", "pw")),
    compiled(api_key("X-Api-Key", "header", "k1"), bearer("b")),
    compiled(bearer("first"), bearer("second")),  # the later credential's value wins
    compiled(),  # no credential at all
    compiled(bearer("t"), base="https://up.test"),
]


def test_only_constant_header_connections_are_lean() -> None:
    assert all(c.lean is not None for c in LEAN)
    assert compiled(HMAC).lean is None
    assert compiled(api_key("key", "query", "v")).lean is None
    assert compiled(api_key("key", "cookie", "v")).lean is None
    assert compiled(oauth2_token("http://auth.test/token", "id", "s", TOKEN)).lean is None


def general_head(
    compiled_connection: CompiledConnection,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bool,
) -> bytes:
    """The head the general path sends: what `Forwarder.start` and `Http1Upstream.send` do."""
    router: Router[Any] = Router([(compiled_connection.route, compiled_connection)])
    _, tail, query = route_target(router, target)
    request = outbound_request(compiled_connection, method, tail, query, headers)
    for scheme in compiled_connection.schemes:
        request = request.patched(scheme.sign(request, DEFAULT_CONTEXT))
    origin = parse_origin(request.origin)
    _, _, extra = plan_framing(request.headers, None, body)
    return encode_head(method, request.target, origin.authority, request.headers, extra)


def lean_head(
    compiled_connection: CompiledConnection,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bool,
    skip: frozenset[bytes] = frozenset(),
) -> bytes | None:
    router: Router[Any] = Router([(compiled_connection.route, compiled_connection)])
    _, tail, query = route_target(router, target)
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    chunked = body and not any(k.lower() == "content-length" for k, _ in headers)
    line = b"Transfer-Encoding: chunked\r\n" if chunked else b""
    assert compiled_connection.lean is not None
    return build_head(compiled_connection.lean, method, tail, query, raw, line, skip)


NAMES = st.sampled_from(
    [
        "Accept", "authorization", "Authorization", "Host", "Connection", "Keep-Alive",
        "X-Connection-Id", "X-Forwarded-For", "Forwarded", "X-Api-Key", "x-api-key", "Cookie",
        "TE", "Trailer", "Upgrade", "Proxy-Authorization", "Content-Type", "X-Custom", "Via",
    ]
)  # fmt: skip
VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=20)
CONNECTION_VALUES = st.sampled_from(["keep-alive", "close", "Keep-Alive", "x-custom", "te, via"])
TAILS = st.sampled_from(["", "/", "/a", "/a/b%2Fc", "/%C3%A9?", "/x?y=1&z", "?q=%20"])


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], bool]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]))
    headers = []
    for name in draw(st.lists(NAMES, max_size=8)):
        value = draw(CONNECTION_VALUES if name == "Connection" else VALUES).strip(" \t")
        headers.append((name, value))
    body = draw(st.booleans()) and method != "HEAD"
    if body and draw(st.booleans()):
        headers.append(("Content-Length", "5"))
    return method, "/c" + draw(TAILS), headers, body


@pytest.mark.parametrize("compiled_connection", LEAN, ids=range(len(LEAN)))
@settings(max_examples=150, deadline=None)
@given(request=requests())
def test_lean_head_is_the_general_head(
    compiled_connection: CompiledConnection, request: tuple[str, str, list[tuple[str, str]], bool]
) -> None:
    method, target, headers, body = request
    lean = lean_head(compiled_connection, method, target, headers, body)
    expected = general_head(compiled_connection, method, target, headers, body)
    if lean is None:
        # Only a `Connection` header naming other headers sends a request the general way.
        named = {
            token.strip().lower()
            for k, v in headers
            if k.lower() == "connection"
            for token in v.split(",")
        }
        assert named - {"keep-alive", "close", ""}
        return
    assert lean == expected


CARRIER_SETS = [
    {"x-api-key"},
    {"authorization"},
    {"proxy-authorization"},
    {"authorization", "x-api-key"},
    {"x-api-key", "authorization", "proxy-authorization"},
]


@pytest.mark.parametrize("carriers", CARRIER_SETS, ids=["+".join(sorted(c)) for c in CARRIER_SETS])
@pytest.mark.parametrize("compiled_connection", LEAN, ids=range(len(LEAN)))
@settings(max_examples=60, deadline=None)
@given(request=requests())
def test_lean_head_leaves_out_the_client_key_header_as_the_general_path_does(
    compiled_connection: CompiledConnection,
    carriers: set[str],
    request: tuple[str, str, list[tuple[str, str]], bool],
) -> None:
    # With `clients`, the headers that carried a key never go upstream (access.py): the lean
    # path skips them, the general path filters them out first.
    method, target, headers, body = request
    skip = frozenset(c.encode() for c in carriers)
    lean = lean_head(compiled_connection, method, target, headers, body, skip)
    kept = [(k, v) for k, v in headers if k.lower() not in carriers]
    if lean is not None:
        assert lean == general_head(compiled_connection, method, target, kept, body)
