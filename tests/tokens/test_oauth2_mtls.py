"""`oauth2.mtlsEnabled`: the token endpoint is called with the connection's client certificate.

The token endpoint here is the strict local authorization server (tests/oauth_server.py) served
over real TLS that *requires* a client certificate (`ssl.CERT_REQUIRED`, CA and certificates
from trustme); a middleware records the subject of the certificate each token request came
with. The resource server is plain HTTP: only the token endpoint is under test.

Trust anchor for the token endpoint (docs/guide.md, OAuth 2.0): with `mtlsEnabled` it is the
certificate credential's `ca` when given (and only it), else the system store; without
`mtlsEnabled`, the system store. The system store honours `SSL_CERT_FILE`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from tests.builders import certificate_credential, connection, oauth2_client
from tests.https_clients import peer_common_name, tls_server_context
from tests.oauth_server import AuthServer, Client, create_auth_app, create_resource_app
from tests.plane import MakeProxy

SECRET = "canary-mtls-client-secret-6d2e"


@pytest.fixture(scope="module")
def client_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("token-client@example", common_name="token-client")


@pytest.fixture
def system_trusts_ca(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The system store trusts the test CA, through SSL_CERT_FILE (as an operator would)."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))


@dataclass
class TokenEndpoint:
    server: AuthServer
    token_url: str
    resource_url: str
    subjects: list[str | None] = field(default_factory=list)  # client CN per token request


@pytest.fixture
async def endpoint(
    aiohttp_server: Any, ca: trustme.CA, request: pytest.FixtureRequest
) -> TokenEndpoint:
    """The token endpoint over TLS; it demands a client certificate unless the test passes
    `ssl.CERT_OPTIONAL` as the fixture's (indirect) parameter."""
    verify_mode = getattr(request, "param", ssl.CERT_REQUIRED)
    server = AuthServer(clients={"cid": Client(SECRET)})
    subjects: list[str | None] = []

    @web.middleware
    async def record_peer(request: web.Request, handler: Handler) -> web.StreamResponse:
        subjects.append(peer_common_name(request.transport))
        return await handler(request)

    app = create_auth_app(server)
    app.middlewares.append(record_peer)
    # CERT_REQUIRED: no client certificate, no handshake.
    context = tls_server_context(ca, "127.0.0.1", client_certificates=verify_mode)
    auth: TestServer = await aiohttp_server(app, ssl=context)
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    token_url = str(auth.make_url("/token"))
    assert token_url.startswith("https://127.0.0.1:")
    return TokenEndpoint(server, token_url, str(resource.make_url("")), subjects)


def client_credential(token_url: str, *, mtls: bool) -> dict[str, Any]:
    return oauth2_client(token_url, "cid", SECRET, mtlsEnabled=mtls)


def key_line(leaf: trustme.LeafCert) -> str:
    return leaf.private_key_pem.bytes().decode().splitlines()[1]


GetItems = Callable[..., Awaitable[tuple[int, dict[str, Any], str]]]


@pytest.fixture
def get_items(make_proxy: MakeProxy, endpoint: TokenEndpoint) -> GetItems:
    """One request through a proxy whose connection `api` has the given credentials."""

    async def get(*credentials: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
        api = connection("api", endpoint.resource_url, *credentials)
        proxy = await make_proxy({"connections": [api]})
        response = await proxy.get("/api/items")
        text = await response.text()
        return response.status, await response.json(), text

    return get


def assert_nothing_leaks(
    text: str, caplog: pytest.LogCaptureFixture, leaf: trustme.LeafCert
) -> None:
    for secret in (SECRET, key_line(leaf)):
        assert secret not in text
        assert secret not in caplog.text


async def test_token_request_presents_the_client_certificate(
    endpoint: TokenEndpoint, get_items: GetItems, ca: trustme.CA, client_cert: trustme.LeafCert
) -> None:
    ca_pem = ca.cert_pem.bytes().decode()
    status, body, _ = await get_items(
        certificate_credential(client_cert, ca_pem),
        client_credential(endpoint.token_url, mtls=True),
    )
    assert status == 200, body
    assert body["ok"] is True  # the resource server took the token
    assert endpoint.subjects == ["token-client"]
    assert endpoint.server.grants["client_credentials"] == 1


@pytest.mark.usefixtures("system_trusts_ca")
async def test_system_store_is_the_trust_anchor_without_ca(
    endpoint: TokenEndpoint,
    get_items: GetItems,
    client_cert: trustme.LeafCert,
) -> None:
    """No `ca` in the certificate credential: the system store, which honours SSL_CERT_FILE."""
    status, body, _ = await get_items(
        certificate_credential(client_cert, None), client_credential(endpoint.token_url, mtls=True)
    )
    assert status == 200, body
    assert endpoint.subjects == ["token-client"]


@pytest.mark.usefixtures("system_trusts_ca")
async def test_certificate_ca_is_the_only_trust_anchor(
    endpoint: TokenEndpoint,
    get_items: GetItems,
    client_cert: trustme.LeafCert,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A `ca` that did not sign the token endpoint's certificate: refused, even though the
    system store (SSL_CERT_FILE) would have trusted it."""
    caplog.set_level(logging.DEBUG)
    other_ca = trustme.CA().cert_pem.bytes().decode()
    status, body, text = await get_items(
        certificate_credential(client_cert, other_ca),
        client_credential(endpoint.token_url, mtls=True),
    )
    assert status == 502
    assert body["code"] == "credential_refresh_failed"
    assert body["details"] == "token_endpoint_tls_error"
    assert endpoint.subjects == [] and endpoint.server.hits == 0
    assert_nothing_leaks(text, caplog, client_cert)


@pytest.mark.parametrize("with_certificate", [True, False])
@pytest.mark.usefixtures("system_trusts_ca")
async def test_without_mtls_the_handshake_is_refused(
    endpoint: TokenEndpoint,
    get_items: GetItems,
    ca: trustme.CA,
    client_cert: trustme.LeafCert,
    caplog: pytest.LogCaptureFixture,
    with_certificate: bool,
) -> None:
    """`mtlsEnabled: false`: no client certificate towards the token endpoint, even when the
    connection has one; the endpoint is trusted (SSL_CERT_FILE), so the refusal is the
    endpoint's, for the missing certificate."""
    caplog.set_level(logging.DEBUG)
    credentials = [client_credential(endpoint.token_url, mtls=False)]
    if with_certificate:
        credentials.insert(0, certificate_credential(client_cert, ca.cert_pem.bytes().decode()))
    status, body, text = await get_items(*credentials)
    assert status == 502
    assert body["code"] == "credential_refresh_failed"
    # TLS 1.3: the client's side of the handshake completes and the server's refusal comes as
    # an alert and a reset on the first read, which cannot be told apart from any other reset.
    assert body["details"] in (
        "token_endpoint_tls_error",
        "token_endpoint_unreachable:ClientOSError",
    )
    assert endpoint.subjects == [] and endpoint.server.hits == 0
    assert_nothing_leaks(text, caplog, client_cert)


@pytest.mark.parametrize("endpoint", [ssl.CERT_OPTIONAL], indirect=True)
@pytest.mark.usefixtures("system_trusts_ca")
async def test_without_mtls_no_certificate_is_presented(
    endpoint: TokenEndpoint,
    get_items: GetItems,
    ca: trustme.CA,
    client_cert: trustme.LeafCert,
) -> None:
    """An endpoint that does not demand one: the connection's certificate stays with the API
    (`mtlsEnabled: false`), and the endpoint is trusted through the system store."""
    status, body, _ = await get_items(
        certificate_credential(client_cert, ca.cert_pem.bytes().decode()),
        client_credential(endpoint.token_url, mtls=False),
    )
    assert status == 200, body
    assert endpoint.subjects == [None]


def test_mtls_without_a_certificate_credential_is_refused_by_check(
    endpoint: TokenEndpoint,
) -> None:
    # Caught when the config is loaded, so no token call can ever go out without the certificate.
    tree = {
        "connections": [
            connection(
                "api", "https://api.example", client_credential(endpoint.token_url, mtls=True)
            )
        ]
    }
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(tree, {})
    assert [p.field for p in caught.value.problems] == [
        "connections[0].credentials[0].authSchemeConfig.oauth2.mtlsEnabled"
    ]
    assert endpoint.server.hits == 0


@pytest.mark.parametrize("place", ["scheme", "credential"])
async def test_mtls_credential_id_picks_the_named_certificate(
    endpoint: TokenEndpoint, get_items: GetItems, ca: trustme.CA, place: str
) -> None:
    """Seed `mtlsCredentialId` (scheme) / `mTLSCredentialId` (oauth2Client): the certificate
    credential with that id is the token endpoint's client identity, not the first one."""
    ca_pem = ca.cert_pem.bytes().decode()
    first = certificate_credential(ca.issue_cert("a@example", common_name="cert-a"), ca_pem)
    named = certificate_credential(ca.issue_cert("b@example", common_name="cert-b"), ca_pem)
    first["credential"]["id"] = "01JG0000000000000000000CA1"
    named["credential"]["id"] = "01JG0000000000000000000CB2"
    client = client_credential(endpoint.token_url, mtls=False)
    if place == "scheme":
        client["authSchemeConfig"]["oauth2"]["mtlsCredentialId"] = "01JG0000000000000000000CB2"
    else:
        client["credential"]["data"]["oauth2Client"] |= {
            "mTLSEnabled": True,
            "mTLSCredentialId": "01JG0000000000000000000CB2",
        }
    status, body, _ = await get_items(first, named, client)
    assert status == 200, body
    assert endpoint.subjects == ["cert-b"]
