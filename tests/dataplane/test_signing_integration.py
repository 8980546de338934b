"""Signing schemes end to end, each checked by an independent verifier on a real local server.

- hmac: a raw-socket upstream recomputes the MAC over the exact request-target and body bytes it
  received (Host header + target = the wire URL) and answers 401 on a mismatch.
- oauth1: oauthlib's server-side `SignatureOnlyEndpoint` (a test-only dependency) verifies what
  the proxy actually sent, for GET with a query, POST form and POST JSON.
- certificate: a real TLS server that requires client certificates, CA and certs from trustme.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from aiohttp import ClientConnectionError, ClientSession, TCPConnector, web
from oauthlib.oauth1 import SignatureOnlyEndpoint

from proxy.connections.compiled import CompiledConnection
from proxy.schemes.certificate import CertificateScheme
from tests import rawhttp
from tests.builders import api_key, certificate_credential, connection, hmac_credential
from tests.https_clients import peer_common_name, tls_server_context
from tests.oauth1_verifier import CONSUMER_KEY, CONSUMER_SECRET, TOKEN, TOKEN_SECRET, Validator
from tests.plane import MakeProxy
from tests.upstreams import catch_all

HMAC_KEY = "canary-hmac-key-2d7f"
DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


# --- hmac -------------------------------------------------------------------------------


def _decode(value: str, encoding: str) -> bytes:
    if encoding == "hex":
        return bytes.fromhex(value)
    if encoding == "base64":
        return base64.b64decode(value, validate=True)
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def hmac_verifier(
    *, name: str, where: str, algorithm: str, encoding: str, inputs: list[str]
) -> rawhttp.Responder:
    """A responder that checks the signature the way an API provider would."""

    async def verify(request: rawhttp.Message, writer: Any) -> None:
        target = request.target
        if where == "header":
            sent = request.get(name) or ""
        elif where == "cookie":
            cookies = dict(
                p.strip().split("=", 1) for p in (request.get("Cookie") or "").split(";")
            )
            sent = cookies.get(name, "")
        else:
            # The signature is the last query parameter; the URL signed is the rest.
            target, _, last = target.rpartition("&" if "&" in target else "?")
            assert last.startswith(f"{name}=")
            sent = last.split("=", 1)[1].replace("%2B", "+").replace("%2F", "/")
            sent = sent.replace("%3D", "=")
        url = f"http://{request.get('Host')}{target}".encode("latin-1")
        message = b"".join({"url": url, "body": request.body}[part] for part in inputs)
        expected = hmac.new(HMAC_KEY.encode(), message, DIGESTS[algorithm]).digest()
        good = hmac.compare_digest(_decode(sent, encoding), expected)
        status = b"200 OK" if good else b"401 Unauthorized"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    return verify


@pytest.mark.parametrize(
    ("where", "algorithm", "encoding", "inputs"),
    [
        ("header", "sha256", "hex", ["url", "body"]),
        ("header", "sha512", "base64", ["body", "url"]),
        ("query", "sha256", "base64url", ["url", "body"]),
        ("query", "sha1", "base64", ["url"]),
        ("cookie", "sha1", "hex", ["body"]),
        ("cookie", "sha512", "base64url", ["url", "body"]),
    ],
)
async def test_hmac_verified_by_upstream_over_raw_target_and_body(
    make_proxy: MakeProxy, where: str, algorithm: str, encoding: str, inputs: list[str]
) -> None:
    verify = hmac_verifier(
        name="sig", where=where, algorithm=algorithm, encoding=encoding, inputs=inputs
    )
    async with rawhttp.raw_upstream(verify) as upstream:
        credentials = [
            api_key("api_key", "query", "canary key/+"),  # added before: covered by the url
            hmac_credential(HMAC_KEY, name="sig", **{"in": where}, algorithm=algorithm,
                            encoding=encoding, digestInputs=inputs),
        ]  # fmt: skip
        proxy = await make_proxy({"connections": [connection("svc", upstream.base, *credentials)]})
        body = b'{"note": "caf\xc3\xa9", "n": 1}'
        for target in ["/svc/files/a%2Fb%20c?x=1&y=%28z%29", "/svc/plain", "/svc/q?sig=forged"]:
            # Raw bytes: an HTTP client library would re-quote %28 and friends on the way in.
            head = f"POST {target} HTTP/1.1\r\nHost: p\r\nContent-Length: {len(body)}\r\n"
            raw = head.encode() + b"Connection: close\r\n\r\n" + body
            response = await rawhttp.round_trip(rawhttp.port_of(proxy), raw)
            assert response.status == 200, target
        targets = upstream.targets
        assert targets[0].startswith("/files/a%2Fb%20c?x=1&y=%28z%29&api_key=canary%20key%2F%2B")
        # A client-sent parameter of the signature's name gives way to the real one.
        assert ("sig=forged" in targets[2]) is (where != "query")


async def test_hmac_mismatch_is_rejected_by_the_verifier(make_proxy: MakeProxy) -> None:
    verify = hmac_verifier(
        name="X-Signature", where="header", algorithm="sha256", encoding="hex", inputs=["body"]
    )
    async with rawhttp.raw_upstream(verify) as upstream:
        wrong = hmac_credential("canary-other-key", digestInputs=["body"])
        proxy = await make_proxy({"connections": [connection("svc", upstream.base, wrong)]})
        response = await proxy.post("/svc/x", data=b"payload")
        assert response.status == 401


async def test_hmac_over_spilled_chunked_body(make_proxy: MakeProxy) -> None:
    verify = hmac_verifier(
        name="X-Signature", where="header", algorithm="sha256", encoding="hex",
        inputs=["url", "body"],
    )  # fmt: skip
    async with rawhttp.raw_upstream(verify) as upstream:
        cred = hmac_credential(HMAC_KEY, digestInputs=["url", "body"])
        proxy = await make_proxy(
            {
                "connections": [connection("svc", upstream.base, cred)],
                "limits": {"memoryBodyBytes": 32 * 1024},
            }
        )
        blocks = [os.urandom(64 * 1024) for _ in range(8)]

        async def generate() -> AsyncIterator[bytes]:
            for block in blocks:
                yield block

        response = await proxy.put("/svc/blob?v=2", data=generate())
        assert response.status == 200
        [seen] = upstream.received
        assert seen.request.body == b"".join(blocks)


# --- oauth1 -----------------------------------------------------------------------------


def oauth1_credential(method: str, realm: str | None = None) -> dict[str, Any]:
    extra = [{"name": "realm", "value": realm}] if realm else []
    return {
        "authSchemeConfig": {
            "type": "oauth1",
            "oauth1": {
                "consumerKey": CONSUMER_KEY,
                "consumerSecret": CONSUMER_SECRET,
                "signatureMethod": method,
                "tokenAuth": True,
            },
        },
        "credential": {
            "type": "oauth1-token",
            "data": {
                "oauth1Token": {
                    "token": TOKEN,
                    "tokenSecret": TOKEN_SECRET,
                    "additionalParams": extra,
                },
            },
        },  # fmt: skip
    }


@pytest.fixture
async def oauth_upstream(aiohttp_server: Any) -> Any:
    """Verifies each request with oauthlib, and a tampered copy of it (must fail)."""

    async def handle(request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        headers = dict(request.headers)
        uri = f"http://{request.host}{request.raw_path}"
        endpoint = SignatureOnlyEndpoint(Validator())
        valid, _ = endpoint.validate_request(uri, request.method, body, headers)
        tampered_uri = uri + ("&" if "?" in uri else "?") + "extra=1"
        tampered, _ = SignatureOnlyEndpoint(Validator()).validate_request(
            tampered_uri, request.method, body, headers
        )
        return web.json_response(
            {"valid": valid, "tampered": tampered, "authorization": headers["Authorization"]},
            status=200 if valid else 401,
        )

    app = catch_all(handle)
    return await aiohttp_server(app)


@pytest.mark.parametrize("method", ["sha1", "sha256"])
async def test_oauth1_accepted_by_oauthlib(
    make_proxy: MakeProxy, oauth_upstream: Any, method: str
) -> None:
    base = str(oauth_upstream.make_url("/rest"))
    proxy = await make_proxy(
        {"connections": [connection("ns", base, oauth1_credential(method, realm="123_SB1"))]}
    )
    cases = [
        ("GET", "/ns/record?q=a+b&name=caf%C3%A9&empty=", None, {}),
        ("POST", "/ns/form?x=1", b"c2&a3=2+q&name=O%27Brien",
         {"Content-Type": "application/x-www-form-urlencoded"}),
        ("POST", "/ns/json?x=1", b'{"a3": "2 q"}', {"Content-Type": "application/json"}),
    ]  # fmt: skip
    for verb, target, data, headers in cases:
        response = await proxy.request(verb, target, data=data, headers=headers)
        seen = await response.json()
        assert response.status == 200, (target, seen)
        assert seen["valid"] is True and seen["tampered"] is False
        assert seen["authorization"].startswith('OAuth realm="123_SB1", ')
        name = {"sha1": "HMAC-SHA1", "sha256": "HMAC-SHA256"}[method]
        assert f'oauth_signature_method="{name}"' in seen["authorization"]


async def test_oauth1_form_body_is_signed(make_proxy: MakeProxy, oauth_upstream: Any) -> None:
    """Changing the form body after signing breaks the signature: the body really is covered."""
    base = str(oauth_upstream.make_url("/rest"))
    bad_secret = oauth1_credential("sha256")
    bad_secret["authSchemeConfig"]["oauth1"]["consumerSecret"] = "canary-wrong-secret"
    proxy = await make_proxy({"connections": [connection("ns", base, bad_secret)]})
    response = await proxy.post(
        "/ns/form", data=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 401


# --- certificate (mTLS) -----------------------------------------------------------------


@pytest.fixture
async def mtls_server(aiohttp_server: Any, ca: trustme.CA) -> Any:
    async def handle(request: web.Request) -> web.Response:
        port = request.transport.get_extra_info("peername")[1] if request.transport else 0
        return web.json_response({"cn": peer_common_name(request.transport), "port": port})

    context = tls_server_context(ca, "127.0.0.1", client_certificates=ssl.CERT_REQUIRED)
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return await aiohttp_server(app, ssl=context)


async def test_mtls_with_credential_one_context_one_pool(
    make_proxy: MakeProxy, mtls_server: Any, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = ca.issue_cert("client-a@example", common_name="client-a")
    ca_pem = ca.cert_pem.bytes().decode()
    base = str(mtls_server.make_url("/api"))
    credential = certificate_credential(client, ca_pem)
    proxy = await make_proxy({"connections": [connection("m", base, credential)]})
    first = await (await proxy.get("/m/one")).json()
    second = await (await proxy.get("/m/two")).json()
    assert first["cn"] == "client-a"
    # The same upstream TLS connection served both: the context was built once, not per request.
    assert first["port"] == second["port"]
    assert proxy.app is not None
    resolved = proxy.app.forwarder.router.resolve("/m/x")
    assert resolved is not None and isinstance(resolved[0], CompiledConnection)
    [scheme] = resolved[0].schemes
    assert isinstance(scheme, CertificateScheme)
    assert resolved[0].tls is scheme.ssl_context  # one object, made at compile time
    key_line = client.private_key_pem.bytes().decode().splitlines()[1]
    assert key_line not in caplog.text


async def test_mtls_handshake_refused_without_client_certificate(
    mtls_server: Any, ca: trustme.CA
) -> None:
    """The server really demands a certificate: trusting its CA but presenting none fails."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with ClientSession(connector=TCPConnector(ssl=context)) as session:
        with pytest.raises(ClientConnectionError):
            async with session.get(mtls_server.make_url("/x")) as response:
                await response.read()


async def test_mtls_client_certificate_from_unknown_ca_is_refused(
    make_proxy: MakeProxy, mtls_server: Any, ca: trustme.CA
) -> None:
    stranger = trustme.CA().issue_cert("client-b@example")
    base = str(mtls_server.make_url("/api"))
    credential = certificate_credential(stranger, ca.cert_pem.bytes().decode())
    proxy = await make_proxy({"connections": [connection("m", base, credential)]})
    response = await proxy.get("/m/x")
    assert response.status == 502
    assert (await response.json())["code"] == "upstream_unavailable"


async def test_mtls_wrong_ca_is_502_with_tls_reason(
    make_proxy: MakeProxy, mtls_server: Any, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = ca.issue_cert("client-a@example")
    other_ca = trustme.CA().cert_pem.bytes().decode()
    base = str(mtls_server.make_url("/api"))
    credential = certificate_credential(client, other_ca)
    proxy = await make_proxy({"connections": [connection("m", base, credential)]})
    response = await proxy.get("/m/x")
    assert response.status == 502
    text = await response.text()
    assert (await response.json())["code"] == "upstream_unavailable"
    assert "error=tls_certificate_error" in response.headers["Proxy-Status"]
    key_line = client.private_key_pem.bytes().decode().splitlines()[1]
    assert key_line not in caplog.text and key_line not in text
