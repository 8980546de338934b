"""Request smuggling battery: whatever a client sends, the upstream never sees
a misframed request, nor a request the client did not unambiguously send.

Black-box on raw sockets: a client socket writes exact bytes to the proxy, and a raw upstream
(`tests/wire_recorder.py`) records every byte it receives and cuts requests out of them by the
strictest reading of RFC 9112. Two properties hold for every case:

1. the upstream found nothing misframed (`problems` is empty: one framing header of one kind,
   CRLF only, no control bytes, exactly one `Host`, strict chunks);
2. the requests it received are, in order, a subsequence of those the strict reader finds in the
   client's bytes (`tests.wire_recorder.parse_request` in client mode, stopping at the first
   ambiguity and after a request that closes the connection) — method, path below the route and
   body identical. A request hidden in a body or behind ambiguous framing is never among them.

Each case also says what a careful server does with it: `refused` (an error answer, nothing
upstream), `served` (every request the client sent reaches the upstream, each answered 200), or
`either` (the RFC allows both; only the properties are checked). Refusals are checked apart for
the proxy's own voice (JSON body, `Proxy-Status`). A hypothesis test generates framing and checks
the same two properties. Both request paths run every case: the lean one (a constant-header
credential, the head built from the client's bytes) and the general one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proxy.cli.server import start_data_plane
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.http1.server import HttpServer
from tests import rawhttp
from tests.builders import bearer, connection, on_path
from tests.loops import background_loop
from tests.plane import MakeProxy
from tests.wire_recorder import (
    Incomplete,
    Misframed,
    Request,
    WireUpstream,
    parse_request,
    wire_upstream,
)

T = TypeVar("T")
PATHS = ["lean", "general"]
TOKEN = "canary-smuggle"
AUTHORIZATION = f"Bearer {TOKEN}"
ROUTE = "/svc"
H = "Host: p\r\n"
SMUGGLED = f"GET {ROUTE}/SMUGGLED HTTP/1.1\r\n{H}Connection: close\r\n\r\n"
IDLE = 1.0  # seconds without a byte after which the client stops reading responses


@dataclass(frozen=True)
class Case:
    id: str
    raw: bytes
    expect: str  # "refused" | "served" | "either"


def case(id: str, text: str | bytes, expect: str) -> Any:
    raw = text if isinstance(text, bytes) else text.encode("latin-1")
    return pytest.param(Case(id, raw, expect), id=id)


def post(framing: str, body: str = "", path: str = "/x", version: str = "1.1") -> str:
    return f"POST {ROUTE}{path} HTTP/{version}\r\n{H}{framing}\r\n{body}"


def get(path: str = "/x", extra: str = "", version: str = "1.1", host: str = H) -> str:
    return f"GET {ROUTE}{path} HTTP/{version}\r\n{host}{extra}\r\n"


CHUNKED = "Transfer-Encoding: chunked\r\n"
LONG = 8190  # aiohttp's line and field limit, kept as a boundary to probe

CASES = [
    # -- Content-Length and Transfer-Encoding together (RFC 9112 §6.1, §6.3) -------------------
    case("cl_te", post("Content-Length: 6\r\n" + CHUNKED, "0\r\n\r\nX" + SMUGGLED), "refused"),
    case("te_cl", post(CHUNKED + "Content-Length: 3\r\n", "8\r\nSMUGGLED\r\n0\r\n\r\n"), "refused"),
    case("te_chunked_cl_0", post(CHUNKED + "Content-Length: 0\r\n", "0\r\n\r\n"), "refused"),
    # -- Content-Length values ------------------------------------------------------------------
    case(
        "cl_duplicate_same", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), "either"
    ),
    case("cl_list_same", post("Content-Length: 5, 5\r\n", "hello"), "either"),
    case("cl_conflicting", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), "refused"),
    case("cl_list_conflicting", post("Content-Length: 5, 6\r\n", "hello!"), "refused"),
    case("cl_plus", post("Content-Length: +5\r\n", "hello"), "refused"),
    case("cl_minus", post("Content-Length: -1\r\n", "hello"), "refused"),
    case("cl_hex", post("Content-Length: 0x5\r\n", "hello"), "refused"),
    case("cl_inner_space", post("Content-Length: 1 2\r\n", "hello world!"), "refused"),
    case("cl_huge", post("Content-Length: 99999999999999999999999\r\n", "hello"), "refused"),
    case("cl_empty", post("Content-Length: \r\n", "hello"), "refused"),
    case("cl_ows", post("Content-Length:  5 \r\n", "hello"), "served"),
    case("cl_covers_a_request", post(f"Content-Length: {len(SMUGGLED)}\r\n", SMUGGLED), "served"),
    case("cl_short_then_request", post("Content-Length: 2\r\n", "hi" + SMUGGLED), "served"),
    # -- Transfer-Encoding variants --------------------------------------------------------------
    case(
        "te_chunked_identity",
        post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
        "refused",
    ),
    case("te_identity", post("Transfer-Encoding: identity\r\n", "0\r\n\r\n"), "refused"),
    case("te_xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), "refused"),
    case("te_chunked_x", post("Transfer-Encoding: chunkedx\r\n", "0\r\n\r\n"), "refused"),
    case("te_gzip_chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), "refused"),
    case("te_twice", post(CHUNKED + CHUNKED, "5\r\nhello\r\n0\r\n\r\n"), "either"),
    case("te_obs_fold", post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"), "refused"),
    case(
        "te_fold_after_field",
        post("X-A: 1\r\n Transfer-Encoding: chunked\r\n", "0\r\n\r\n"),
        "refused",
    ),
    case(
        "te_trailing_space",
        post("Transfer-Encoding: chunked \r\n", "5\r\nhello\r\n0\r\n\r\n"),
        "served",
    ),
    case("te_case", post("Transfer-Encoding: ChUnKeD\r\n", "5\r\nhello\r\n0\r\n\r\n"), "served"),
    case("te_space_before_colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), "refused"),
    case(
        "te_tab_value", post("Transfer-Encoding:\tchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), "served"
    ),
    case("te_vertical_tab", post("Transfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"), "refused"),
    case("te_http10", post(CHUNKED, "5\r\nhello\r\n0\r\n\r\n", version="1.0"), "refused"),
    # -- line endings and control bytes (RFC 9112 §2.2, RFC 9110 §5.5) --------------------------
    case("bare_lf_everywhere", f"GET {ROUTE}/x HTTP/1.1\nHost: p\n\n", "refused"),
    case("bare_lf_in_field", get(extra="X-A: 1\nTransfer-Encoding: chunked\r\n"), "refused"),
    case("bare_cr_in_field", get(extra="X-A: 1\rTransfer-Encoding: chunked\r\n"), "refused"),
    case("bare_lf_request_line", f"GET {ROUTE}/x HTTP/1.1\n{H}\r\n", "refused"),
    case("nul_in_name", get(extra="X-A\x00: 1\r\n"), "refused"),
    case("nul_in_value", get(extra="X-A: 1\x002\r\n"), "refused"),
    case("del_in_name", get(extra="X-\x7fA: 1\r\n"), "refused"),
    case("del_in_value", get(extra="X-A: a\x7fb\r\n"), "refused"),
    case("ctl_in_value", get(extra="X-A: a\x01b\r\n"), "refused"),
    case("nul_in_target", get(path="/x\x00y"), "refused"),
    case("del_in_target", get(path="/x\x7f"), "refused"),
    case("space_in_name", get(extra="X A: 1\r\n"), "refused"),
    case("no_colon", get(extra="X-A 1\r\n"), "refused"),
    # -- chunk sizes and extensions (RFC 9112 §7.1) ---------------------------------------------
    case("chunk_size_suffix", post(CHUNKED, "5x\r\nhello\r\n0\r\n\r\n"), "refused"),
    case("chunk_size_negative", post(CHUNKED, "-5\r\nhello\r\n0\r\n\r\n"), "refused"),
    case("chunk_size_0x", post(CHUNKED, "0x5\r\nhello\r\n0\r\n\r\n"), "refused"),
    case("chunk_size_huge", post(CHUNKED, "1" + "0" * 17 + "\r\nhello\r\n0\r\n\r\n"), "refused"),
    case("chunk_size_leading_space", post(CHUNKED, " 5\r\nhello\r\n0\r\n\r\n"), "refused"),
    case("chunk_size_empty", post(CHUNKED, "\r\nhello\r\n0\r\n\r\n"), "refused"),
    case("chunk_size_bare_lf", post(CHUNKED, "5\nhello\r\n0\r\n\r\n"), "refused"),
    case("chunk_data_too_long", post(CHUNKED, "5\r\nhelloXX\r\n0\r\n\r\n" + SMUGGLED), "refused"),
    case("chunk_data_no_crlf", post(CHUNKED, "5\r\nhello0\r\n\r\n" + SMUGGLED), "refused"),
    case("chunk_ext", post(CHUNKED, "5;name=value\r\nhello\r\n0\r\n\r\n"), "served"),
    case("chunk_ext_quoted", post(CHUNKED, '5;a="b c"\r\nhello\r\n0\r\n\r\n'), "served"),
    case("chunk_ext_empty", post(CHUNKED, "5;\r\nhello\r\n0\r\n\r\n"), "refused"),
    case("chunk_ext_bare_lf", post(CHUNKED, "5;a\nb\r\nhello\r\n0\r\n\r\n"), "refused"),
    case("chunk_ext_bare_cr", post(CHUNKED, "5;a\rb\r\nhello\r\n0\r\n\r\n"), "refused"),
    case("chunked_trailer", post(CHUNKED, "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), "served"),
    case(
        "chunked_hides_request",
        post(CHUNKED, f"{len(SMUGGLED):x}\r\n{SMUGGLED}\r\n0\r\n\r\n"),
        "served",
    ),
    # -- pipelining and connection persistence (RFC 9112 §9.3) ---------------------------------
    case("pipelined_gets", get("/a") + get("/b") + get("/c"), "served"),
    case("pipelined_post_get", post("Content-Length: 5\r\n", "hello", "/a") + get("/b"), "served"),
    case(
        "pipelined_chunked_get",
        post(CHUNKED, "5\r\nhello\r\n0\r\n\r\n", "/a") + get("/b"),
        "served",
    ),
    case("after_connection_close", get("/a", "Connection: close\r\n") + SMUGGLED, "served"),
    case(
        "http10_keep_alive",
        get("/a", "Connection: keep-alive\r\n", "1.0") + get("/b", version="1.0"),
        "served",
    ),
    case("http10_closes", get("/a", version="1.0") + SMUGGLED, "served"),
    case("http10_body_without_length", post("", SMUGGLED, version="1.0"), "served"),
    # -- request targets and versions (RFC 9112 §3) ---------------------------------------------
    case("absolute_form", f"GET http://127.0.0.1{ROUTE}/x HTTP/1.1\r\n{H}\r\n", "refused"),
    case("absolute_form_elsewhere", f"GET http://evil.example/ HTTP/1.1\r\n{H}\r\n", "refused"),
    case("authority_form", f"CONNECT 127.0.0.1:9 HTTP/1.1\r\n{H}\r\n", "refused"),
    case("asterisk_form", f"OPTIONS * HTTP/1.1\r\n{H}\r\n", "refused"),
    case("http09", f"GET {ROUTE}/x\r\n\r\n", "refused"),
    case("http20", get(version="2.0"), "refused"),
    case("h2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "refused"),
    case("http_lowercase", f"GET {ROUTE}/x http/1.1\r\n{H}\r\n", "refused"),
    case("http12", get(version="1.2"), "either"),
    case("double_space_request_line", f"GET  {ROUTE}/x HTTP/1.1\r\n{H}\r\n", "either"),
    # -- Host (RFC 9112 §3.2) and other singletons ----------------------------------------------
    case("host_twice", get(extra="Host: q\r\n"), "refused"),
    case("host_missing", get(host=""), "refused"),
    case("host_missing_http10", get(host="", version="1.0"), "served"),
    case("content_type_twice", get(extra="Content-Type: a/b\r\nContent-Type: c/d\r\n"), "either"),
    # -- line and field sizes --------------------------------------------------------------------
    case("line_8190", get(path="/" + "a" * (LONG - len(f"GET {ROUTE}/ HTTP/1.1"))), "either"),
    case("line_8191", get(path="/" + "a" * (LONG + 1 - len(f"GET {ROUTE}/ HTTP/1.1"))), "either"),
    case("field_8190", get(extra="X-Long: " + "v" * (LONG - 8) + "\r\n"), "either"),
    case("field_20000", get(extra="X-Long: " + "v" * 20000 + "\r\n"), "either"),
    case(
        "head_over_64k",
        get(extra="".join(f"X-F{i}: {'v' * 990}\r\n" for i in range(70))),
        "refused",
    ),
]


def expected_requests(raw: bytes) -> list[tuple[str, str, bytes]]:
    """What the client unambiguously asked for: (method, upstream path, body), in order."""
    found = []
    while raw:
        try:
            request, size = parse_request(raw, client=True)
        except (Misframed, Incomplete):
            break
        found.append((request.method, request.target.removeprefix(ROUTE), request.body))
        if request.closes:
            break
        raw = raw[size:]
    return found


def is_subsequence(part: Sequence[Any], whole: Sequence[Any]) -> bool:
    rest = iter(whole)
    return all(item in rest for item in part)


async def talk(
    port: int, raw: bytes, want: int | None, *, idle: float = IDLE
) -> list[rawhttp.Message]:
    """Send `raw` on one connection; read responses until `want` came, the proxy closed, or
    it stayed silent for `idle` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    responses: list[rawhttp.Message] = []
    try:
        writer.write(raw)
        await writer.drain()
        while want is None or len(responses) < want:
            try:
                async with asyncio.timeout(idle):
                    responses.append(await rawhttp.read_response(reader))
            except (TimeoutError, rawhttp.Truncated, ConnectionError, ValueError):
                break
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return responses


def proxy_tree(base: str, path: str) -> dict[str, Any]:
    """One bearer connection. `lean`: the bytes-level request path of constant-header schemes;
    `general`: the same credential on the general path (`forwardedHeaders` sends it there)."""
    return on_path({"connections": [connection("svc", base, bearer(TOKEN))]}, path)


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


async def run(
    make_proxy: MakeProxy, raw: bytes, want: int | None, path: str = "lean"
) -> tuple[list[Any], Any]:
    async with wire_upstream() as upstream:
        tree = proxy_tree(upstream.base, path)
        port = rawhttp.port_of(await make_proxy(tree))
        responses = await talk(port, raw, want)
        await asyncio.sleep(0.05)  # let the upstream finish reading what it was sent
    return responses, upstream


def ours(upstream: WireUpstream) -> list[Request]:
    """The requests the proxy sent (it adds the credential). Other processes on this machine
    probe ports they picked moments earlier; one may land on this upstream's port."""
    return [r for r in upstream.requests if r.get_all("Authorization") == [AUTHORIZATION]]


def assert_no_smuggling(upstream: WireUpstream, raw: bytes) -> None:
    assert upstream.problems == []
    seen = [(r.method, r.target, r.body) for r in ours(upstream)]
    assert is_subsequence(seen, expected_requests(raw)), (seen, expected_requests(raw))
    assert all("SMUGGLED" not in r.target for r in ours(upstream)) or any(
        "SMUGGLED" in target for _, target, _ in expected_requests(raw)
    )


@pytest.mark.parametrize("c", CASES)
async def test_the_upstream_never_sees_a_misframed_or_hidden_request(
    make_proxy: MakeProxy, c: Case, path: str
) -> None:
    expected = expected_requests(c.raw)
    want = {"refused": 1, "served": len(expected), "either": None}[c.expect]
    responses, upstream = await run(make_proxy, c.raw, want, path)
    assert_no_smuggling(upstream, c.raw)
    if c.expect == "refused":
        assert ours(upstream) == []
        assert responses and 400 <= responses[0].status < 600
    elif c.expect == "served":
        assert expected, "a served case must hold at least one clear request"
        assert [(r.method, r.target, r.body) for r in ours(upstream)] == expected
        assert [r.status for r in responses] == [200] * len(expected)


REFUSED = [p for p in CASES if p.values[0].expect == "refused"]


@pytest.mark.parametrize("c", REFUSED)
async def test_a_refusal_is_in_the_proxys_own_voice(make_proxy: MakeProxy, c: Case) -> None:
    responses, _ = await run(make_proxy, c.raw, 1)
    assert responses
    refusal = responses[0]
    assert (refusal.get("Proxy-Status") or "").startswith("signing-proxy; error=")
    assert (refusal.get("Content-Type") or "").startswith("application/json")
    assert json.loads(refusal.body)["code"]


# -- generated framing ---------------------------------------------------------------------------

# Valid values come several times so that about half the examples are clear requests (and the
# request after them must then arrive as the second one).
LENGTH_VALUES = ["5"] * 6 + [
    "05",
    "+5",
    "-5",
    "5, 5",
    "5,6",
    "0x5",
    " 5",
    "5 ",
    "",
    "6",
    "4",
    "1e1",
]
CODING_VALUES = ["chunked"] * 6 + ["Chunked", "chunked ", "chunked, identity", "identity",
                 "xchunked", "gzip, chunked", "\tchunked", "chunked\x00"]  # fmt: skip
SEPARATORS = ["\r\n"] * 6 + ["\n", "\r", "\r\n "]
CHUNK_LINES = ["5"] * 6 + ["05", "5;x=y", "5 ", " 5", "5x", "0x5", "-5", "5;", "6", "4"]
NOISE = ["Host: q", "X-A: 1", "Transfer-Encoding : chunked", " X-Fold: 1", "Content-Length: 5"]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A POST whose framing is drawn, a body in either framing, then a request to SMUGGLED."""
    kind = draw(st.sampled_from(["length", "chunked", "both", "none"]))
    fields = ["Host: p"]
    if kind in ("length", "both"):
        fields.append(f"Content-Length: {draw(st.sampled_from(LENGTH_VALUES))}")
    if kind in ("chunked", "both"):
        fields.append(f"Transfer-Encoding: {draw(st.sampled_from(CODING_VALUES))}")
    fields += draw(st.lists(st.sampled_from(NOISE), max_size=1))
    fields = draw(st.permutations(fields))
    separator = draw(st.sampled_from(SEPARATORS))
    version = draw(st.sampled_from(["1.1"] * 4 + ["1.0"]))
    head = f"POST {ROUTE}/g HTTP/{version}\r\n" + "".join(f + separator for f in fields)
    if kind in ("chunked", "both") or draw(st.integers(0, 4)) == 0:
        body = f"{draw(st.sampled_from(CHUNK_LINES))}\r\nhello\r\n0\r\n\r\n"
    else:
        body = "hello"
    return (head + "\r\n" + body + SMUGGLED).encode("latin-1")


@pytest.fixture(scope="module", params=PATHS)
def stack(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Callable[[Coroutine[Any, Any, T]], T], HttpServer, int, WireUpstream]]:
    """One proxy and one recording upstream for all generated examples, on an event loop in a
    background thread (Hypothesis drives a synchronous test)."""

    async def start(exits: AsyncExitStack) -> tuple[HttpServer, int, WireUpstream]:
        upstream = await exits.enter_async_context(wire_upstream())
        tree = proxy_tree(upstream.base, request.param)
        plane = create_app(build_runtime(tree, {}))
        server, (_, port) = await start_data_plane(plane, ("127.0.0.1", 0))
        exits.push_async_callback(plane.close)
        exits.push_async_callback(server.drain, 5)
        return server, port, upstream

    with background_loop() as (run_in_loop, exits):
        server, port, upstream = run_in_loop(start(exits))
        yield run_in_loop, server, port, upstream


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=requests())
@pytest.mark.slow
def test_generated_framing_never_smuggles(
    stack: tuple[Callable[[Coroutine[Any, Any, Any]], Any], HttpServer, int, WireUpstream],
    raw: bytes,
) -> None:
    run_in_loop, server, port, upstream = stack
    upstream.requests.clear()
    upstream.problems.clear()

    async def one_round_trip() -> None:
        await talk(port, raw, None, idle=0.3)
        # The proxy is done with this client before the upstream's record is read: on a loaded
        # machine it may still be forwarding after the client left, and a late request would
        # land in the next example's record.
        async with asyncio.timeout(20):
            while server.connections:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)  # the upstream's reader takes in what was sent last

    run_in_loop(one_round_trip())
    assert_no_smuggling(upstream, raw)
    event(f"{len(ours(upstream))} of {len(expected_requests(raw))} clear requests forwarded")
