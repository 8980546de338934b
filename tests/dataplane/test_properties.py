"""docs/security.md invariants 1 and 3 as properties: whatever path and query a client sends, the
only host the proxy contacts is the connection's baseUrl origin, the upstream path stays under the
baseUrl path with no dot segment after any amount of decoding, and what is forwarded is the
client's bytes.

Targets go out on a plain blocking socket, so nothing normalises them on the way in. The proxy
and two raw upstreams (the real one and a decoy that must never be contacted) run on an event
loop in a background thread, started once for the module: Hypothesis drives a synchronous test.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proxy.cli.server import start_data_plane
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from tests import rawhttp
from tests.builders import bearer, connection
from tests.loops import background_loop

T = TypeVar("T")
BASE_PATH = "/base/v1"
ROUTE = "/svc"
TOKEN = "canary-property-token"


@dataclass
class Stack:
    proxy_port: int
    upstream: rawhttp.RawUpstream
    decoy: rawhttp.RawUpstream


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    async def start(exits: AsyncExitStack) -> Stack:
        upstream = await exits.enter_async_context(rawhttp.raw_upstream())
        decoy = await exits.enter_async_context(rawhttp.raw_upstream())
        runtime = build_runtime(
            {
                "connections": [
                    connection("svc", upstream.base + BASE_PATH, bearer(TOKEN), route=ROUTE)
                ]
            },
            {},
        )
        plane = create_app(runtime)
        server, (_, port) = await start_data_plane(plane, ("127.0.0.1", 0))
        exits.push_async_callback(plane.close)
        exits.push_async_callback(server.drain, 5)
        return Stack(port, upstream, decoy)

    with background_loop() as (run, exits):
        yield run(start(exits))


def send(port: int, target: bytes) -> int:
    """One request with `target` in the request line, byte for byte; return the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def fully_decoded(text: str) -> str:
    previous = None
    while text != previous:
        previous, text = text, unquote(text)
    return text


def has_dot_segment(path: str) -> bool:
    return any(seg in (".", "..") for seg in re.split(r"[/\\]", fully_decoded(path)))


# Pieces chosen to break path handling: separators raw and encoded, dots, authority markers,
# percent signs that decode into other escapes, and non-ASCII (raw and escaped).
PIECES = st.sampled_from(
    [
        "/", "//", ".", "..", "%2F", "%2f", "%2E", "%2e", "%5C", "\\", "@", ":", ";", "%25",
        "%252E", "%252F", "%2E%2E", "..%2F", "%00", "+", "%20", "~", "a", "b", "%C3%A9",
        "http:", "127.0.0.1", "evil.example", "?", "&", "=", "#",
    ]
)  # fmt: skip
# Printable ASCII but space (a space ends the request-target), and any other text now and then
# (raw non-ASCII in a request line is refused by the HTTP parser, which is worth showing too).
ASCII = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=6)
ANY = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), max_size=3
)
WIRE_SAFE = st.lists(st.one_of(PIECES, ASCII), max_size=8).map("".join)
WITH_ANY = st.lists(st.one_of(PIECES, ASCII, ANY), max_size=8).map("".join)
SEGMENT = st.one_of(WIRE_SAFE, WIRE_SAFE, WIRE_SAFE, WITH_ANY)


@st.composite
def targets(draw: st.DrawFn, decoy_port: int) -> str:
    prefix = draw(
        st.sampled_from(
            [
                ROUTE,
                ROUTE + "/",
                ROUTE + "/",
                ROUTE + "/",
                ROUTE + "/a/",
                "",
                "/sv",
                "/svcx",
                f"http://127.0.0.1:{decoy_port}",
                f"http://127.0.0.1:{decoy_port}{ROUTE}",
                f"//127.0.0.1:{decoy_port}",
                "/",
            ]
        )
    )
    return prefix + draw(SEGMENT)


@settings(
    max_examples=200,
    deadline=None,  # a loaded machine may stall one example; `send`'s socket timeout bounds each
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_requests_stay_on_the_base_origin_and_path(stack: Stack, data: st.DataObject) -> None:
    target = data.draw(targets(stack.decoy.port), label="target")
    raw = target.encode("utf-8")
    before = len(stack.upstream.received)
    status = send(stack.proxy_port, raw)

    assert stack.decoy.connections == 0  # invariant 1: no other host, ever
    assert status < 500  # a 502 would mean the proxy tried to reach somewhere else
    forwarded = stack.upstream.received[before:]
    assert len(forwarded) <= 1
    if not forwarded:
        event(f"refused {status}")
        assert status in (400, 404)
        return
    event("forwarded")
    request = forwarded[0].request
    assert request.get_all("Host") == [f"127.0.0.1:{stack.upstream.port}"]
    assert request.get_all("Authorization") == [f"Bearer {TOKEN}"]
    path, _, query = request.target.partition("?")
    assert path == BASE_PATH or path.startswith(BASE_PATH + "/")
    assert not has_dot_segment(path)
    # Invariant 3: exactly the client's bytes after the route (latin-1 keeps bytes 1:1).
    # One documented exception: an empty query (`/x?`) goes upstream as `/x`.
    sent = raw.decode("latin-1")
    assert sent.startswith(ROUTE)
    sent_path, mark, sent_query = sent.partition("?")
    expected = BASE_PATH + sent_path[len(ROUTE) :] + (mark if sent_query else "") + sent_query
    assert request.target == expected
