"""The inbound server's limits and timeouts, measured with slow, idle and hostile raw clients
(docs/configuration.md `limits`, `timeouts`), and requests the parser itself refuses answered in
the proxy's own voice (docs/errors.md): JSON, `Proxy-Status`, `X-Request-Id`, and not one raw
request byte in any log line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import pytest

from tests import rawhttp
from tests.accesslog import AccessLogFile
from tests.builders import bearer, connection
from tests.plane import MakeProxy

CANARY_AUTH = "canary-client-authorization-5f1e"
CANARY_QUERY = "canary-query-token-9b07"


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[bytes, float]:
    """Everything the proxy sends until it closes; and how long that took."""
    start = time.monotonic()
    data = await asyncio.wait_for(reader.read(), seconds)
    return data, time.monotonic() - start


def proxy_error(raw: bytes) -> tuple[rawhttp.Message, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    message = rawhttp.Message(lines[0], headers, body)
    return message, json.loads(body)


def assert_own_voice(message: rawhttp.Message, status: int, code: str) -> None:
    assert message.status == status
    assert message.get("Content-Type") == "application/json"
    proxy_status = message.get("Proxy-Status") or ""
    assert proxy_status.startswith("signing-proxy; error=proxy_internal_response")
    assert code in proxy_status
    assert message.get("X-Request-Id")
    assert json.loads(message.body)["code"] == code


@pytest.fixture
async def port(make_proxy: MakeProxy, echo_server: Any) -> int:
    tree = {
        "connections": [connection("echo", str(echo_server.make_url("/")), bearer("t"))],
        "limits": {"maxHeaderBytes": 4096},
        "timeouts": {"clientHead": 0.6, "clientIdle": 0.8},
    }
    client = await make_proxy(tree)
    return rawhttp.port_of(client.server)


async def test_slow_head_gets_408_on_time_while_others_are_served(port: int) -> None:
    async with rawhttp.opened(port) as (reader, writer):
        writer.write(b"GET /echo/x HTTP/1.1\r\nHost: p\r\nX-Slow: ")  # and never more
        await writer.drain()
        # Meanwhile a normal client is served at once.
        ok = await rawhttp.round_trip(port, rawhttp.get("/echo/fine"), timeout=2)
        assert ok.status == 200
        data, took = await closed_within(reader, 5)
    message, _ = proxy_error(data)
    assert_own_voice(message, 408, "request_timeout")
    assert message.get("Connection") == "close"
    assert 0.5 <= took <= 2.5  # clientHead 0.6 s, swept at least every 0.15 s


async def test_connection_sending_nothing_is_closed_silently(port: int) -> None:
    async with rawhttp.opened(port) as (reader, _):
        data, took = await closed_within(reader, 5)
    assert data == b""
    assert 0.5 <= took <= 2.5


async def test_idle_keep_alive_connection_is_closed_after_client_idle(port: int) -> None:
    async with rawhttp.opened(port) as (reader, writer):
        writer.write(b"GET /echo/1 HTTP/1.1\r\nHost: p\r\n\r\n")
        first = await asyncio.wait_for(rawhttp.read_response(reader), 2)
        assert first.status == 200
        assert first.get("Connection") is None  # kept alive
        start = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), 5)
        took = time.monotonic() - start
    assert rest == b""
    assert 0.7 <= took <= 2.7  # clientIdle 0.8 s


async def test_many_idle_connections_are_all_closed_on_time(port: int) -> None:
    writers = []
    try:
        readers = []
        for _ in range(200):  # bounded
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /echo/x HTTP/1.1\r\nHost: p\r\n")  # an unfinished head each
            readers.append(reader)
            writers.append(writer)
        start = time.monotonic()
        answers = await asyncio.wait_for(asyncio.gather(*(r.read() for r in readers)), 10)
        took = time.monotonic() - start
        assert all(b" 408 " in answer.split(b"\r\n", 1)[0] for answer in answers)
        assert took <= 4
        ok = await rawhttp.round_trip(port, rawhttp.get("/echo/after"), timeout=2)
        assert ok.status == 200
    finally:
        for writer in writers:
            writer.close()


async def test_head_over_max_header_bytes_is_431_at_once(port: int) -> None:
    async with rawhttp.opened(port) as (reader, writer):
        writer.write(b"GET /echo/x HTTP/1.1\r\nHost: p\r\nX-Big: " + b"a" * 5000)
        await writer.drain()  # the value is not even finished: the byte count decides
        data, took = await closed_within(reader, 5)
    message, _ = proxy_error(data)
    assert_own_voice(message, 431, "headers_too_large")
    assert took < 0.5


async def test_endless_header_value_is_cut_with_flat_memory(port: int) -> None:
    async with rawhttp.opened(port) as (reader, writer):
        writer.write(b"GET /echo/x HTTP/1.1\r\nHost: p\r\nX-Endless: ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            for _ in range(64):  # at most 4 MiB, bounded
                writer.write(b"v" * 65536)
                await writer.drain()
                sent += 65536
        data = await asyncio.wait_for(reader.read(), 5)
    message, _ = proxy_error(data)
    assert message.status == 431


async def test_too_many_header_fields_is_431(port: int) -> None:
    fields = "".join(f"X-F{i}: v\r\n" for i in range(150))
    reply = await rawhttp.round_trip(port, rawhttp.get("/echo/x", headers=fields))
    assert_own_voice(reply, 431, "headers_too_large")


async def test_max_client_connections(make_proxy: MakeProxy, echo_server: Any) -> None:
    tree = {
        "connections": [connection("echo", str(echo_server.make_url("/")), bearer("t"))],
        "limits": {"maxClientConnections": 3},
    }
    port = rawhttp.port_of((await make_proxy(tree)).server)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    try:
        await asyncio.sleep(0.1)
        refused = await rawhttp.round_trip(port, rawhttp.get("/echo/x"), timeout=2)
        assert refused.status == 503
        assert json.loads(refused.body)["code"] == "too_many_connections"
        assert (refused.get("Proxy-Status") or "").startswith("signing-proxy;")
        # The held connections are still served; once one goes, a new one is accepted.
        reader, writer = held[0]
        writer.write(rawhttp.get("/echo/held"))
        assert (await asyncio.wait_for(rawhttp.read_response(reader), 2)).status == 200
        await asyncio.sleep(0.1)
        assert (await rawhttp.round_trip(port, rawhttp.get("/echo/x"), timeout=2)).status == 200
    finally:
        for _, writer in held:
            writer.close()


# Every refused request carries the client's secrets: a query token and `Authorization`.
T = b"/echo/x?token=" + CANARY_QUERY.encode()
A = b"Authorization: Bearer " + CANARY_AUTH.encode() + b"\r\n"


def secret_request(extra: bytes, *, method: bytes = b"GET", version: bytes = b"HTTP/1.1") -> bytes:
    return method + b" " + T + b" " + version + b"\r\n" + A + extra + b"\r\n"


H = b"Host: p\r\n"
REFUSED = [
    # (raw request, status, code)
    (secret_request(H + b"Bad\x00Name: v\r\n"), 400, "bad_request"),
    (b"GET " + T + b" HTTP/1.1\nHost: p\n" + A.replace(b"\r", b"") + b"\n", 400, "bad_request"),
    (secret_request(H + b"Content-Length: 1\r\nContent-Length: 2\r\n"), 400, "bad_request"),
    (secret_request(H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", method=b"POST"),
     400, "bad_request"),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n" + A + b"\r\n", 405,
     "method_not_allowed"),
    (b"OPTIONS * HTTP/1.1\r\nHost: p\r\n" + A + b"\r\n", 400, "bad_path"),
    (secret_request(H + b"Expect: tea\r\n"), 417, "expectation_failed"),
    (secret_request(H, version=b"HTTP/2.0"), 505, "http_version_not_supported"),
    (secret_request(b""), 400, "bad_request"),
    (secret_request(b"Host: a\r\nHost: b\r\n"), 400, "bad_request"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "status", "code"), REFUSED)
async def test_refused_requests_in_the_proxy_voice_and_never_logged_raw(
    port: int,
    caplog: pytest.LogCaptureFixture,
    access_log: AccessLogFile,
    raw: bytes,
    status: int,
    code: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = await rawhttp.round_trip(port, raw)
    assert_own_voice(reply, status, code)
    if code != "bad_path":  # refused by the server itself: the connection ends with it
        assert reply.get("Connection") == "close"
    await asyncio.sleep(0.05)
    access = access_log.messages()
    logged = (r.getMessage() + (r.exc_text or "") for r in caplog.records)
    text = "\n".join([*logged, *access_log.lines()])
    assert CANARY_AUTH not in text
    assert CANARY_QUERY not in text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert access and f"status={status}" in access[-1]
