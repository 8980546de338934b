"""One access-log line per request, with nothing secret in it (docs/security.md invariant 2)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests import rawhttp
from tests.accesslog import AccessLogFile
from tests.builders import api_key, bearer, connection
from tests.plane import MakeProxy

QUERY_CANARY = "canary-query-5d1e"
BEARER_CANARY = "canary-bearer-77aa"


def all_text(caplog: pytest.LogCaptureFixture, access_log: AccessLogFile) -> str:
    logged = (r.getMessage() + (r.exc_text or "") for r in caplog.records)
    return "\n".join([*logged, *access_log.lines()])


async def test_one_line_per_request_without_secrets(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture, access_log: AccessLogFile
) -> None:
    caplog.set_level(logging.DEBUG)
    async with rawhttp.raw_upstream() as upstream:
        client = await make_proxy(
            {
                "connections": [
                    connection(
                        "svc",
                        upstream.base,
                        api_key("api_key", "query", QUERY_CANARY),
                        bearer(BEARER_CANARY),
                    )
                ]
            }
        )
        port = rawhttp.port_of(client)
        ok = await rawhttp.round_trip(port, rawhttp.get("/svc/items?page=2"))
        missing = await rawhttp.round_trip(port, rawhttp.get("/nowhere"))
        head = await rawhttp.round_trip(port, b"HEAD /svc/h HTTP/1.1\r\nHost: p\r\n\r\n")
        # The credential really was added upstream, so its absence from the log means something.
        assert f"api_key={QUERY_CANARY}" in upstream.received[0].request.target
        lines = access_log.parsed()
        assert len(lines) == 3
        first, second, third = lines
        assert first["method"] == "GET" and first["connection"] == "svc"
        assert (first["status"], int(first["bytes"])) == ("200", len(ok.body))
        assert float(first["duration"]) >= 0
        assert (second["status"], second["connection"]) == ("404", "-")
        assert int(second["bytes"]) == len(missing.body)
        assert (third["method"], third["status"], third["bytes"]) == ("HEAD", "200", "0")
        assert head.body == b""
        text = all_text(caplog, access_log)
        assert QUERY_CANARY not in text
        assert BEARER_CANARY not in text


async def test_failures_are_logged_without_secrets(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture, access_log: AccessLogFile
) -> None:
    caplog.set_level(logging.DEBUG)

    async def cut(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    async with rawhttp.raw_upstream(cut) as upstream:
        client = await make_proxy(
            {
                "connections": [
                    connection("svc", upstream.base, api_key("key", "query", QUERY_CANARY))
                ]
            }
        )
        await rawhttp.round_trip(rawhttp.port_of(client), rawhttp.get("/svc/x"))
        [line] = access_log.parsed()
        assert line["status"] == "200"
        assert "upstream_broken" in line["flags"]
        assert int(line["bytes"]) == len(b"partial")
        assert QUERY_CANARY not in all_text(caplog, access_log)


async def test_log_line_cannot_be_forged_through_the_path(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture, access_log: AccessLogFile
) -> None:
    """An encoded CR/LF in the path stays encoded in the log: no injected second line."""
    caplog.set_level(logging.INFO)
    async with rawhttp.raw_upstream() as upstream:
        client = await make_proxy({"connections": [connection("svc", upstream.base)]})
        forged = "/svc/x%0D%0AGET%20/admin%20connection=svc%20status=200"
        await rawhttp.round_trip(rawhttp.port_of(client), rawhttp.get(forged))
        [line] = access_log.parsed()
        assert "\n" not in line.string and "\r" not in line.string
        assert (line["path"], line["connection"], line["status"]) == (forged, "svc", "200")
        assert upstream.targets == [forged.removeprefix("/svc")]
