"""`http-signature` through the real proxy: what goes upstream verifies with an independent
RFC 9421 implementation (PyPI `http-message-signatures`) for every algorithm, the Content-Digest
covers the exact body (spilled to a file past `memoryBodyBytes` too), a missing covered header
is refused before anything is sent, and the private key never shows in errors or logs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from tests.accesslog import AccessLogFile
from tests.builders import connection
from tests.plane import MakeProxy
from tests.schemes.httpsig_peer import KeyPair, VerifyingUpstream, new_key

ALGORITHMS = ["ed25519", "ecdsa-p256-sha256", "rsa-pss-sha512", "hmac-sha256"]
COMPONENTS = [
    "@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query",
    "content-type", "x-trace",
]  # fmt: skip


def http_signature(key: KeyPair, **params: Any) -> dict[str, Any]:
    return {
        "authSchemeConfig": {"type": "http-signature", "httpSignature": params},
        "credential": key.credential,
    }


async def signing_for_peer(
    make_proxy: MakeProxy, aiohttp_server: Any, algorithm: str, **params: Any
) -> tuple[TestClient[Any, Any], VerifyingUpstream]:
    """A proxy whose connection `p` signs with a new `algorithm` key (key id `k`, `params`) for
    an upstream peer that verifies with it; and that peer."""
    key = new_key(algorithm)
    upstream = VerifyingUpstream(algorithm, "k", key.verify_key)
    server = await aiohttp_server(upstream.app())
    signing = http_signature(key, keyId="k", algorithm=algorithm, **params)
    proxy = await make_proxy({"connections": [connection("p", str(server.make_url("/")), signing)]})
    return proxy, upstream


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("digest", ["sha-256", "sha-512"])
async def test_each_algorithm_verifies_with_an_independent_peer(
    make_proxy: MakeProxy, aiohttp_server: Any, algorithm: str, digest: str
) -> None:
    key = new_key(algorithm)
    upstream = VerifyingUpstream(algorithm, "partner-key-1", key.verify_key, expect_tag="orders")
    server = await aiohttp_server(upstream.app())
    params = {
        "keyId": "partner-key-1",
        "algorithm": algorithm,
        "components": COMPONENTS,
        "tag": "orders",
        "expiresIn": 120,
        "contentDigest": digest,
    }
    proxy = await make_proxy(
        {
            "connections": [
                connection("p", str(server.make_url("/api")), http_signature(key, **params))
            ]
        }
    )
    body = b'{"order": 42, "note": "caf\xc3\xa9"}'
    response = await proxy.post(
        "/p/orders/new?b=2&a=1",
        data=body,
        headers={"Content-Type": "application/json", "X-Trace": "  t-1  "},
    )
    assert response.status == 200, upstream.failures
    [seen] = upstream.results
    assert seen["body"] == body
    covered = seen["covered"]
    # The peer resolved each component from the request as it arrived.
    assert covered['"@method"'] == "POST"
    assert covered['"@target-uri"'] == str(server.make_url("/api/orders/new?b=2&a=1"))
    assert covered['"@query"'] == "?b=2&a=1"
    assert covered['"x-trace"'] == "t-1"  # RFC 9421 §2.1: outer whitespace trimmed
    assert '"content-digest"' in covered and seen["headers"]["Content-Digest"].startswith(digest)
    parameters = seen["parameters"]
    assert parameters["keyid"] == "partner-key-1" and parameters["tag"] == "orders"
    assert parameters["expires"] - parameters["created"] == 120


async def test_spilled_body_is_digested_and_verified(
    make_proxy: MakeProxy, aiohttp_server: Any, spool: Path
) -> None:
    key = new_key("ed25519")
    upstream = VerifyingUpstream("ed25519", "k", key.verify_key)
    server = await aiohttp_server(upstream.app())
    signing = http_signature(key, keyId="k", algorithm="ed25519", contentDigest="sha-256")
    proxy = await make_proxy(
        {
            "connections": [connection("p", str(server.make_url("/api")), signing)],
            "limits": {"memoryBodyBytes": 16 * 1024, "maxBodyBytes": 4 * 1024 * 1024},
        }
    )
    body = os.urandom(700 * 1024)
    response = await proxy.put("/p/blob", data=body)
    assert response.status == 200, upstream.failures
    [seen] = upstream.results
    assert seen["body"] == body  # the peer checked Content-Digest against these bytes
    assert list(spool.iterdir()) == []  # the spilled file is gone


async def test_client_content_digest_is_replaced_by_the_real_one(
    make_proxy: MakeProxy, aiohttp_server: Any
) -> None:
    proxy, upstream = await signing_for_peer(
        make_proxy, aiohttp_server, "hmac-sha256", contentDigest="sha-512"
    )
    response = await proxy.post(
        "/p/x", data=b"real", headers={"Content-Digest": "sha-512=:AAAA:", "Signature": "x=:AA:"}
    )
    assert response.status == 200, upstream.failures
    [seen] = upstream.results
    assert seen["headers"]["Content-Digest"] != "sha-512=:AAAA:"


async def test_bodyless_get_with_default_components(
    make_proxy: MakeProxy, aiohttp_server: Any
) -> None:
    proxy, upstream = await signing_for_peer(make_proxy, aiohttp_server, "ecdsa-p256-sha256")
    response = await proxy.get("/p/items?page=2")
    assert response.status == 200, upstream.failures
    [seen] = upstream.results
    # The default components, then the parameters line.
    assert list(seen["covered"]) == ['"@method"', '"@target-uri"', '"@signature-params"']


async def test_missing_covered_header_is_400_and_nothing_is_sent(
    make_proxy: MakeProxy, aiohttp_server: Any, access_log: AccessLogFile, caplog: Any
) -> None:
    key = new_key("rsa-pss-sha512")
    upstream = VerifyingUpstream("rsa-pss-sha512", "k", key.verify_key)
    server = await aiohttp_server(upstream.app())
    signing = http_signature(key, keyId="k", algorithm="rsa-pss-sha512", components=["date"])
    base = str(server.make_url("/"))
    proxy = await make_proxy({"connections": [connection("p-missing", base, signing, route="/p")]})
    labels = {"connection": "p-missing", "method": "GET", "code": "400"}
    before = REGISTRY.get_sample_value("signing_proxy_requests_total", labels) or 0.0
    with caplog.at_level(logging.DEBUG):
        response = await proxy.get("/p/x")
    assert response.status == 400
    # Counted like any refused request of the connection.
    assert REGISTRY.get_sample_value("signing_proxy_requests_total", labels) == before + 1
    error = await response.json()
    assert error["code"] == "signature_component_missing" and "date" in error["message"]
    assert "proxy_internal_response" in response.headers["Proxy-Status"]
    assert upstream.results == [] and upstream.failures == []
    lines = "\n".join(access_log.lines())
    assert "GET /p/x connection=p-missing status=400" in lines
    everything = caplog.text + str(error) + lines
    assert key.secret_text not in everything


async def test_wrong_key_is_refused_by_the_peer(make_proxy: MakeProxy, aiohttp_server: Any) -> None:
    """The peer is not a yes-machine: a signature by another key is refused."""
    key, other = new_key("ed25519"), new_key("ed25519")
    upstream = VerifyingUpstream("ed25519", "k", other.verify_key)
    server = await aiohttp_server(upstream.app())
    signing = http_signature(key, keyId="k", algorithm="ed25519")
    proxy = await make_proxy({"connections": [connection("p", str(server.make_url("/")), signing)]})
    response = await proxy.get("/p/x")
    assert response.status == 401 and upstream.failures


@pytest.mark.parametrize("algorithm", ["rsa-pss-sha512", "hmac-sha256"])
async def test_key_never_in_logs_of_signed_requests(
    make_proxy: MakeProxy,
    aiohttp_server: Any,
    access_log: AccessLogFile,
    caplog: Any,
    algorithm: str,
) -> None:
    key = new_key(algorithm)
    upstream = VerifyingUpstream(algorithm, "k", key.verify_key)
    server = await aiohttp_server(upstream.app())
    signing = http_signature(key, keyId="k", algorithm=algorithm, contentDigest="sha-256")
    with caplog.at_level(logging.DEBUG):
        proxy = await make_proxy(
            {"connections": [connection("p", str(server.make_url("/")), signing)]}
        )
        assert (await proxy.post("/p/a", data=b"x")).status == 200
        assert (await proxy.get("/p/b")).status == 200  # a bodyless request: digest of b""
    assert len(upstream.results) == 2, upstream.failures
    logged = caplog.text + "\n".join(access_log.lines())
    assert key.secret_text not in logged and "/p/a" in logged
