"""The admin listener against a real `signing-proxy run`, on raw sockets: requests its aiohttp
parser refuses are answered in the proxy's voice (docs/errors.md JSON with `Proxy-Status`) and no
log line holds their bytes; and every listener answers only a `Host` it is known by
(docs/security.md "DNS rebinding").

Every malformed request carries canaries where aiohttp used to quote them back: the admin
token in `Authorization`, OAuth `code` and `state` in a long callback URL. The proxy logs at
debug, in text and JSON, and every line it wrote is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from tests import rawhttp
from tests.builders import bearer, connection
from tests.proxyproc import ProxyProcess, proxy_process

TOKEN = "canary-admin-token-5be2"
CODE = "canary-oauth-code-81d0"
STATE = "canary-oauth-state-c37a"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"
CANARIES = (TOKEN, CODE, STATE, "a" * 200)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, admin: dict[str, Any], log_format: str = "text", **extra: Any
) -> AsyncIterator[ProxyProcess]:
    tree = {
        "listen": "127.0.0.1:0",
        "admin": {"listen": "127.0.0.1:0", **admin},
        "connections": [connection("svc", "http://127.0.0.1:9", bearer("t"))],
        "log": {"level": "debug", "format": log_format},
        **extra,
    }
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml.safe_dump(tree, sort_keys=False))
    async with proxy_process(config, listeners=2) as proxy:
        yield proxy


async def send(port: int, raw: bytes) -> rawhttp.Message:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(rawhttp.read_response(reader), 5)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


LONG = "a" * 9000
CALLBACK = f"/connections/oauth2/callback?code={CODE}&state={STATE}"
MALFORMED = {
    "request line over 8190 bytes": (
        f"GET {CALLBACK}&pad={LONG} HTTP/1.1\r\nHost: 127.0.0.1\r\n{AUTH}\r\n".encode(),
        431,
        "headers_too_large",
    ),
    "header field over 8190 bytes": (
        f"GET {CALLBACK} HTTP/1.1\r\nHost: 127.0.0.1\r\n{AUTH}X-Pad: {LONG}\r\n\r\n".encode(),
        431,
        "headers_too_large",
    ),
    "bare LF": (
        f"GET {CALLBACK} HTTP/1.1\nHost: 127.0.0.1\n{AUTH.strip()}\n\n".encode(),
        400,
        "bad_request",
    ),
    "bad header byte": (
        f"GET {CALLBACK} HTTP/1.1\r\nHost: 127.0.0.1\r\n{AUTH}X-Bad: \x01{TOKEN}\r\n\r\n".encode(),
        400,
        "bad_request",
    ),
    "Content-Length with Transfer-Encoding": (
        (
            f"POST /o/x/connections?code={CODE} HTTP/1.1\r\nHost: 127.0.0.1\r\n{AUTH}"
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ).encode(),
        400,
        "bad_request",
    ),
    "bad method": (
        f"G{{T {CALLBACK} HTTP/1.1\r\nHost: 127.0.0.1\r\n{AUTH}\r\n".encode(),
        400,
        "bad_request",
    ),
    "token in the request line": (
        f"GET /{TOKEN} HTTP/1.1 {STATE}\r\nHost: 127.0.0.1\r\n\r\n".encode(),
        400,
        "bad_request",
    ),
}


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_parser_refusals_in_the_proxy_voice_and_never_logged(
    tmp_path: Path, log_format: str
) -> None:
    async with running(tmp_path, {"token": TOKEN}, log_format) as proxy:
        admin_port = proxy.ports[1]
        for name, (raw, status, code) in MALFORMED.items():
            reply = await send(admin_port, raw)
            assert reply.status == status, name
            assert reply.get("Content-Type") == "application/json", name
            proxy_status = reply.get("Proxy-Status") or ""
            assert proxy_status.startswith("signing-proxy; error=proxy_internal_response"), name
            assert json.loads(reply.body)["code"] == code, name
            assert all(c.encode() not in reply.body for c in CANARIES), name
        # The listener still serves a good request afterwards.
        healthy = await send(admin_port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert healthy.status == 200
        await asyncio.sleep(0.2)
    log = proxy.stderr.decode("utf-8", "replace")
    lines = log.splitlines()
    refused = [line for line in lines if "refused a request" in line]
    assert len(refused) == len(MALFORMED)  # each refusal logged once, at WARNING
    for line in lines:
        assert all(c not in line for c in CANARIES), line
        assert "Traceback" not in line and "ERROR" not in line, line
        if log_format == "json":
            assert json.loads(line)["level"] != "error", line


async def answer_for(port: int, host: str, target: str = "/healthz", auth: str = "") -> int:
    raw = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()
    reply = await send(port, raw)
    if reply.status == 421:
        assert json.loads(reply.body)["code"] == "misdirected_request"
        assert (reply.get("Proxy-Status") or "").startswith("signing-proxy;")
    return reply.status


async def test_admin_answers_only_hosts_it_is_known_by(tmp_path: Path) -> None:
    admin = {
        "token": TOKEN,
        "publicUrl": "https://proxy-admin.example.com/base",
        "allowedHosts": ["ops.internal"],
    }
    async with running(tmp_path, admin) as proxy:
        port = proxy.ports[1]
        for host in (
            f"127.0.0.1:{port}",
            "127.0.0.1",
            f"localhost:{port}",
            "LOCALHOST.",
            "proxy-admin.example.com",
            f"ops.internal:{port}",
        ):
            assert await answer_for(port, host) == 200, host
        for host in (f"rebound.attacker.test:{port}", "127.0.0.2", "[::1]", "ops.internal.evil"):
            assert await answer_for(port, host) == 421, host
        # Before the token is looked at: a rebinding page learns nothing, not even a 401.
        target = "/o/01JAAAAAAAAAAAAAAAAAAAAAAA/connections"
        assert await answer_for(port, "rebound.attacker.test", target, AUTH) == 421
        assert await answer_for(port, "127.0.0.1", target, AUTH) == 200


async def test_a_token_less_loopback_admin_is_rebinding_safe(tmp_path: Path) -> None:
    """The attack of the report: a page rebinding its name to 127.0.0.1 reads a connection's
    secrets from a token-less loopback admin. Now it gets 421."""
    async with running(tmp_path, {}) as proxy:
        port = proxy.ports[1]
        target = "/o/01JAAAAAAAAAAAAAAAAAAAAAAA/connections"
        assert await answer_for(port, f"rebound.attacker.test:{port}", target) == 421
        secrets = "/connection/anything?include_secrets=true"
        assert await answer_for(port, f"rebound.attacker.test:{port}", secrets) == 421
        assert await answer_for(port, f"localhost:{port}", target) == 200


async def test_the_data_plane_answers_any_host_unless_listen_hosts_is_set(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, {"token": TOKEN}) as proxy:
        assert await answer_for(proxy.ports[0], "whatever.example") == 200
    (tmp_path / "second").mkdir()
    hosts = ["signing-proxy", "proxy.svc.cluster.local"]
    async with running(tmp_path / "second", {"token": TOKEN}, listenHosts=hosts) as proxy:
        port = proxy.ports[0]
        for host in ("signing-proxy:8080", "proxy.svc.cluster.local", "localhost", "127.0.0.1"):
            assert await answer_for(port, host) == 200, host
        assert await answer_for(port, f"rebound.attacker.test:{port}") == 421
        assert await answer_for(port, "rebound.attacker.test", "/svc/x") == 421


def test_listed_hosts_are_config_errors_at_their_field() -> None:
    for tree, where in (
        ({"admin": {"allowedHosts": ["http://x.example"]}}, "admin.allowedHosts[0]"),
        ({"listenHosts": ["a.example", "b.example:8080"]}, "listenHosts[1]"),
    ):
        with pytest.raises(ConfigInvalid) as caught:
            build_runtime(tree, {})
        assert [f.field for f in caught.value.problems] == [where]
