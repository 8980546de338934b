"""Metrics and structured logs (docs/operations.md#metrics, #logs) of a real `python -m proxy run`
after real traffic: successes, caller errors, an upstream failure, token requests that succeed
and fail, a client key; `/metrics` is scraped and parsed with prometheus-client's own parser,
and every line the process writes in JSON mode is parsed as JSON.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from multidict import CIMultiDict
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import api_key, bearer, connection, oauth2_client
from tests.oauth_server import AuthServer, Client, Running, serve_in_thread
from tests.ports import free_port
from tests.proxyproc import ProxyProcess, proxy_process
from tests.upstreams import catch_all

TIMEOUT = 60.0  # bounds a broken proxy only (a loaded 2-core machine is slow, not wrong)
CLIENT_KEY = "canary-client-key-71"
SECRET = "canary-oauth-secret-71"
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
async def upstream(aiohttp_server: Any) -> str:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=404 if request.path.endswith("/missing") else 200, text="ok")

    app = catch_all(handle)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def oauth() -> Iterator[Running]:
    server = AuthServer(clients={"cid": Client(SECRET)})
    with serve_in_thread(server) as running:
        yield running


@pytest.fixture
def client_cert(tmp_path: Path) -> tuple[Path, Path, float]:
    ca = trustme.CA()
    leaf = ca.issue_cert("client@example")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(leaf.cert_chain_pems[0].bytes())
    key.write_bytes(leaf.private_key_pem.bytes())
    not_after = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
    return cert, key, not_after.timestamp()


def certificate(cert: Path, key: Path) -> dict[str, Any]:
    data = {"certificate": f"${{file:{cert}}}", "key": f"${{file:{key}}}"}
    return {
        "authSchemeConfig": {"type": "certificate"},
        "credential": {"type": "certificate", "data": {"certificate": data}},
    }


class Proxy:
    def __init__(self, process: ProxyProcess) -> None:
        self._proc = process
        self.base = process.base
        self.admin = process.admin

    @property
    def stderr(self) -> bytes:
        return self._proc.stderr

    async def get(self, path: str, **headers: str) -> tuple[int, CIMultiDict[str]]:
        async with aiohttp.ClientSession() as session:  # a new client connection each time
            async with session.get(self.base + path, headers=headers) as response:
                await response.read()
                return response.status, CIMultiDict(response.headers)

    async def metrics(self, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with aiohttp.ClientSession() as session:
            async with session.get(self.admin + "/metrics", headers=headers) as response:
                assert response.status == 200, response.status
                text = await response.text()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@asynccontextmanager
async def running(
    tree: dict[str, Any],
    tmp_path: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    quiet: bool = False,
) -> AsyncIterator[Proxy]:
    """The proxy on `tree` with the admin API. Both listen on port 0, their ports read back from
    the log; a `quiet` proxy (log level warning: no "listening on" lines) is told free ports."""
    ports = [free_port(), free_port()] if quiet else []
    port, admin = ports or [0, 0]
    tree = {**tree, "listen": f"127.0.0.1:{port}", "admin": {"listen": f"127.0.0.1:{admin}",
            "token": "canary-admin-71", **tree.get("admin", {})}}  # fmt: skip
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    async with proxy_process(path, *extra, listeners=2, ports=ports, env=env) as process:
        yield Proxy(process)


def sample(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_and_json_logs_after_real_traffic(
    upstream: str,
    oauth: Running,
    client_cert: tuple[Path, Path, float],
    tmp_path: Path,
    refused_port: int,
) -> None:
    cert, key, not_after = client_cert
    empty = tmp_path / "empty-token"
    empty.write_text("")
    tree: dict[str, Any] = {
        "log": {"format": "json"},
        "clients": [{"name": "billing", "key": CLIENT_KEY, "connections": ["*"]}],
        "connections": [
            connection("web", f"{upstream}/web", api_key("X-Key", "header", "canary-k-71")),
            connection(
                "api", oauth.resource_url, oauth2_client(f"{oauth.auth_url}/token", "cid", SECRET)
            ),
            connection(
                "broken",
                oauth.resource_url,
                oauth2_client(f"{oauth.auth_url}/token", "cid", "wrong"),
            ),
            connection("dead", f"http://127.0.0.1:{refused_port}/x"),
            connection("bank", f"{upstream}/bank", certificate(cert, key)),
            # An empty secret: a warning, which in JSON mode is a JSON line like any other.
            connection("blank", f"{upstream}/blank", bearer(f"${{file:{empty}}}")),
        ],
    }
    key_header = {"X-Api-Key": CLIENT_KEY}
    async with running(tree, tmp_path) as proxy:
        before = time.time()
        statuses = [
            (await proxy.get("/web/a", **key_header, **{"X-Request-Id": "trace-abc.1"}))[0],
            (await proxy.get("/web/b", **key_header))[0],
            (await proxy.get("/web/missing", **key_header))[0],  # the upstream's 404
            (await proxy.get("/nothing", **key_header))[0],  # no route
            (await proxy.get("/web/..%2Fx", **key_header))[0],  # bad_path
            (await proxy.get("/dead/y", **key_header))[0],  # connection refused
            (await proxy.get("/api/data", **key_header))[0],  # a token request, then 200
            (await proxy.get("/broken/data", **key_header))[0],  # the token request fails
            (await proxy.get("/web/a"))[0],  # no client key
        ]
        after = time.time()
        status, headers = await proxy.get("/dead/z", **key_header, **{"X-Request-Id": "bad id!"})
        assert status == 502, (status, headers)
        assert re.fullmatch(r"[0-9a-f]{24}", headers.get("X-Request-Id", "")), headers
        generated = headers["X-Request-Id"]
        metrics = await proxy.metrics()
    assert statuses == [200, 200, 404, 404, 400, 502, 200, 502, 401]

    def requests(connection: str, code: str, method: str = "GET") -> float:
        labels = {"connection": connection, "method": method if connection else "", "code": code}
        return sample(metrics, "signing_proxy_requests_total", **labels)

    assert requests("web", "200") == 2
    assert requests("web", "404") == 1
    assert requests("web", "400") == 1
    assert requests("", "404") == 1
    assert requests("", "401") == 1
    assert requests("dead", "502") == 2
    assert requests("api", "200") == 1
    assert requests("broken", "502") == 1
    count = "signing_proxy_request_duration_seconds_count"
    assert sample(metrics, count, connection="web") == 4
    buckets = [
        (float(dict(labels)["le"]), value)
        for (name, labels), value in metrics.items()
        if name == "signing_proxy_request_duration_seconds_bucket"
        and dict(labels)["connection"] == "web"
    ]
    assert max(buckets)[1] == 4  # +Inf holds every observation
    assert [v for _, v in sorted(buckets)] == sorted(v for _, v in buckets)  # cumulative
    errors = "signing_proxy_upstream_errors_total"
    assert sample(metrics, errors, connection="dead", error="connection_refused") == 2
    refreshes = "signing_proxy_token_refreshes_total"
    assert sample(metrics, refreshes, connection="api", result="success") == 1
    assert sample(metrics, refreshes, connection="broken", result="invalid_client") >= 1
    assert oauth.server.grants["client_credentials"] >= 1
    expiry = {
        dict(labels)["connection"]: value
        for (name, labels), value in metrics.items()
        if name == "signing_proxy_token_expiry_timestamp_seconds"
    }
    ttl = oauth.server.access_ttl
    assert before + ttl - 1 <= expiry["api"] <= after + ttl + 1
    certificates = "signing_proxy_certificate_expiry_timestamp_seconds"
    [(labels, value)] = [(dict(k[1]), v) for k, v in metrics.items() if k[0] == certificates]
    assert labels["connection"] == "bank" and value == not_after
    clients = "signing_proxy_client_requests_total"
    assert sample(metrics, clients, client="billing", code="200") == 3
    assert sample(metrics, clients, client="billing", code="502") == 3
    assert sample(metrics, "signing_proxy_inflight_requests") == 0
    text = json.dumps(list(metrics))
    for secret in (CLIENT_KEY, SECRET, "canary-k-71", "canary-admin-71"):
        assert secret not in text

    # Every line is a JSON object with the common fields, whatever logger wrote it.
    lines = [json.loads(line) for line in proxy.stderr.decode().splitlines()]
    for line in lines:
        assert {"ts", "level", "event", "logger", "pid", "message"} <= line.keys()
        assert TS.fullmatch(line["ts"])
    routes = [line["route"] for line in lines if line["event"] == "route"]
    assert routes == ["/web", "/api", "/broken", "/dead", "/bank", "/blank"]
    [warning] = [line for line in lines if line["event"] == "config_warning"]
    assert warning["field"] == "connections[5].credentials[0].credential.data.string.value"
    assert warning["level"] == "warning"
    assert lines[-1]["event"] == "shutdown"
    access = [line for line in lines if line["event"] == "request" and line["path"] != "/healthz"]
    first = access[0]
    assert {k: first[k] for k in ("request_id", "client", "connection", "method", "path")} == {
        "request_id": "trace-abc.1",
        "client": "billing",
        "connection": "web",
        "method": "GET",
        "path": "/a",
    }
    assert (first["status"], first["upstream_status"], first["error"]) == (200, 200, None)
    assert first["bytes_out"] == 2 and first["bytes_in"] == 0 and first["duration_ms"] >= 0
    missing = next(line for line in access if line["path"] == "/missing")
    assert (missing["status"], missing["upstream_status"], missing["error"]) == (404, 404, None)
    refused = [line for line in access if line["error"] == "upstream_unavailable"]
    assert [line["upstream_status"] for line in refused] == [None, None]
    assert refused[-1]["request_id"] == generated  # the id in the error response is the logged one
    log = proxy.stderr.decode()
    for secret in (CLIENT_KEY, SECRET, "canary-k-71", "canary-admin-71"):
        assert secret not in log


async def test_metrics_are_summed_over_workers(upstream: str, tmp_path: Path) -> None:
    tree = {
        "log": {"format": "json"},
        "connections": [connection("web", f"{upstream}/web")],
    }
    async with running(tree, tmp_path, "--workers", "2") as proxy:
        for _ in range(30):
            assert (await proxy.get("/web/a"))[0] == 200
        metrics = await proxy.metrics()
    served_by = {
        line["pid"]
        for line in map(json.loads, proxy.stderr.decode().splitlines())
        if line["event"] == "request" and line["path"] == "/a"
    }
    assert len(served_by) == 2  # both workers served some of the requests
    total = sample(
        metrics, "signing_proxy_requests_total", connection="web", method="GET", code="200"
    )
    assert total == 30
    assert sample(metrics, "signing_proxy_request_duration_seconds_count", connection="web") == 30


async def test_metrics_token_and_log_level(upstream: str, tmp_path: Path) -> None:
    tree = {
        "admin": {"metricsToken": "canary-metrics-71"},
        "connections": [connection("web", f"{upstream}/web")],
    }
    async with running(tree, tmp_path, "--log-level", "warning", quiet=True) as proxy:
        assert (await proxy.get("/web/a"))[0] == 200
        async with aiohttp.ClientSession() as session:
            async with session.get(proxy.admin + "/metrics") as response:
                assert response.status == 401
        metrics = await proxy.metrics(Authorization="Bearer canary-metrics-71")
        assert (
            sample(
                metrics, "signing_proxy_requests_total", connection="web", method="GET", code="200"
            )
            == 1
        )
    # --log-level warning: no info lines (no access log, no start-up routes).
    assert "signing_proxy.access" not in proxy.stderr.decode()
    assert " INFO " not in proxy.stderr.decode()


@pytest.mark.parametrize(
    ("file_level", "env_level", "flag", "access_logged"),
    [
        ("warning", "info", [], True),  # the environment overrides the file
        ("info", "warning", [], False),
        ("warning", "warning", ["--log-level", "info"], True),  # the flag overrides both
    ],
)
async def test_log_level_from_the_file_the_environment_and_the_flag(
    upstream: str, tmp_path: Path, file_level: str, env_level: str, flag: list[str],
    access_logged: bool,
) -> None:  # fmt: skip
    tree = {"log": {"level": file_level}, "connections": [connection("web", f"{upstream}/web")]}
    env = {"SIGNING_PROXY_LOG_LEVEL": env_level}
    async with running(tree, tmp_path, *flag, env=env, quiet=not access_logged) as proxy:
        assert (await proxy.get("/web/a"))[0] == 200
    assert ("signing_proxy.access GET /web/a" in proxy.stderr.decode()) is access_logged
