"""The seed example bodies (`fixtures/`, written from seeds 000–004) load as-is — in proxy.yaml
through `signing-proxy check` and the loader, and through the management API — and then work
against a real local upstream that checks each scheme on its own terms: the echo upstream for
static keys (the HMAC recomputed here), the local OAuth 2.0 provider and its resource server,
oauthlib's OAuth 1.0a verifier, and a TLS server that requires the client certificate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
import yaml
from aiohttp import ClientResponse, ClientSession, web
from aiohttp.test_utils import TestClient
from oauthlib.oauth1 import SignatureOnlyEndpoint

from proxy.cli import main
from proxy.cli.echo import create_echo_app
from proxy.connections.runtime import Runtime, build_runtime, load_runtime
from proxy.dataplane.plane import create_app
from tests.admin.planes import AUTH, CONNECTIONS, ORG, MakePlanes, substitute
from tests.https_clients import peer_common_name, tls_server_context
from tests.oauth1_verifier import CONSUMER_KEY, CONSUMER_SECRET, TOKEN, TOKEN_SECRET, Validator
from tests.oauth_server import AuthServer, Client, create_auth_app, create_resource_app
from tests.plane import PlaneServer
from tests.seeds.schema import problems_but_template_id as problems
from tests.upstreams import catch_all

FIXTURES = Path(__file__).parent.parent / "seeds" / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


CONNECTIONS_000: dict[str, dict[str, Any]] = fixture("000-get-connection.json")
CREATE_001: dict[str, dict[str, Any]] = fixture("001-create-connection.json")
GO_ZERO_000: dict[str, dict[str, Any]] = fixture("000-go-zero.json")
CHAINS_000: dict[str, dict[str, Any]] = fixture("000-chains.json")
CASES = sorted(CONNECTIONS_000)
CLIENT_ID = "acme-client"
CLIENT_SECRET = "canary-client-secret-f1"
HMAC_KEY = b"canary-hmac-key-f2"


@dataclass
class Upstream:
    """A real local upstream for one case: the values of the `${...}` marks, and the check."""

    env: dict[str, str]
    accepted: Callable[[ClientResponse], Awaitable[None]]
    method: str = "GET"
    body: bytes = b""


async def _echo_accepts(case: str) -> Callable[[ClientResponse], Awaitable[None]]:
    async def check(response: ClientResponse) -> None:
        assert response.status == 200, await response.text()
        headers: dict[str, list[str]] = {}
        for name, value in (await response.json())["headers"]:
            headers.setdefault(name.lower(), []).append(value)
        if case == "none":
            assert "authorization" not in headers and "x-api-key" not in headers
        elif case == "api-key":
            assert headers["x-api-key"] == ["canary-api-key-f3"]
        elif case == "basic-auth":
            pair = base64.b64encode(b"ann:canary-password-f4").decode()
            assert headers["authorization"] == [f"Basic {pair}"]
        else:  # hmac over the body, recomputed here
            expected = hmac.new(HMAC_KEY, b'{"event": "paid"}', hashlib.sha256).hexdigest()
            assert headers["x-signature"] == [expected]

    return check


async def _status_200(response: ClientResponse) -> None:
    assert response.status == 200, await response.text()


async def upstream_for(case: str, aiohttp_server: Any) -> Upstream:
    env = {
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "AUTHORIZE_URL": "http://127.0.0.1:9/authorize",
        "TOKEN_URL": "http://127.0.0.1:9/token",
    }
    if case in ("none", "api-key", "basic-auth", "hmac"):
        echo = await aiohttp_server(create_echo_app())
        env |= {
            "UPSTREAM": str(echo.make_url("/v1")),
            "API_KEY": "canary-api-key-f3",
            "BASIC_USER": "ann",
            "BASIC_PASSWORD": "canary-password-f4",
            "HMAC_KEY_BASE64": base64.b64encode(HMAC_KEY).decode(),
        }
        method, body = ("POST", b'{"event": "paid"}') if case == "hmac" else ("GET", b"")
        return Upstream(env, await _echo_accepts(case), method, body)
    if case.startswith("oauth2"):
        server = AuthServer(access_ttl=3600)
        server.clients[CLIENT_ID] = Client(secret=CLIENT_SECRET)
        server.users["pat"] = "canary-owner-password-f5"
        auth = await aiohttp_server(create_auth_app(server))
        resource = await aiohttp_server(create_resource_app(server))
        issued = server.issue(CLIENT_ID, "files.read")
        env |= {
            "UPSTREAM": str(resource.make_url("/v1")),
            "AUTHORIZE_URL": str(auth.make_url("/authorize")),
            "TOKEN_URL": str(auth.make_url("/token")),
            "ACCESS_TOKEN": issued["access_token"],
            "REFRESH_TOKEN": issued["refresh_token"],
            "RESOURCE_OWNER": "pat",
            "RESOURCE_OWNER_PASSWORD": "canary-owner-password-f5",
        }
        return Upstream(env, _status_200)
    if case == "oauth1":
        return Upstream(
            env
            | {
                "UPSTREAM": str((await aiohttp_server(_oauth1_app())).make_url("/v1")),
                "CONSUMER_KEY": CONSUMER_KEY,
                "CONSUMER_SECRET": CONSUMER_SECRET,
                "OAUTH1_TOKEN": TOKEN,
                "OAUTH1_TOKEN_SECRET": TOKEN_SECRET,
            },
            _status_200,
        )
    assert case == "certificate"
    ca = trustme.CA()
    client = ca.issue_cert("acme-client@example", common_name="acme-client")
    # No client certificate: no handshake.
    server_context = tls_server_context(ca, "127.0.0.1", client_certificates=ssl.CERT_REQUIRED)

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"cn": peer_common_name(request.transport)})

    app = web.Application()
    app.router.add_get("/{tail:.*}", whoami)
    tls = await aiohttp_server(app, ssl=server_context)

    async def presented(response: ClientResponse) -> None:
        assert response.status == 200, await response.text()
        assert (await response.json())["cn"] == "acme-client"

    return Upstream(
        env
        | {
            "UPSTREAM": str(tls.make_url("/v1")).replace("http://", "https://"),
            "CLIENT_CERT": client.cert_chain_pems[0].bytes().decode(),
            "CLIENT_KEY": client.private_key_pem.bytes().decode(),
            "CA_CERT": ca.cert_pem.bytes().decode(),
        },
        presented,
    )


def _oauth1_app() -> web.Application:
    """oauthlib verifies every request the proxy signs (RFC 5849 §3.2)."""

    async def handle(request: web.Request) -> web.Response:
        uri = f"http://{request.host}{request.raw_path}"
        body = (await request.read()).decode()
        valid, _ = SignatureOnlyEndpoint(Validator()).validate_request(
            uri, request.method, body, dict(request.headers)
        )
        return web.json_response({"valid": valid}, status=200 if valid else 401)

    return catch_all(handle)


async def send(client: TestClient[Any, Any], path: str, upstream: Upstream, **headers: str) -> None:
    response = await client.request(upstream.method, path, data=upstream.body, headers=headers)
    await upstream.accepted(response)


def checked_and_loaded(
    entry: dict[str, Any],
    upstream: Upstream,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Runtime:
    """`entry` as the one connection of `folder`/proxy.yaml, with `upstream`'s environment:
    `check` accepts the file; the runtime `run` would load from it."""
    path = folder / "proxy.yaml"
    path.write_text(yaml.safe_dump({"connections": [entry]}), encoding="utf-8")
    for name, value in upstream.env.items():
        monkeypatch.setenv(name, value)
    assert main(["check", "--config", str(path)]) == 0, capsys.readouterr()
    return load_runtime(path, upstream.env)


@pytest.mark.parametrize("case", CASES)
async def test_000_loads_in_proxy_yaml_and_works(
    case: str,
    aiohttp_server: Any,
    aiohttp_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upstream = await upstream_for(case, aiohttp_server)
    # The GetConnection body exactly as the seed returns it, in the file.
    runtime = checked_and_loaded(CONNECTIONS_000[case], upstream, tmp_path, monkeypatch, capsys)
    [connection] = runtime.connections
    assert connection.id == CONNECTIONS_000[case]["id"]
    client: TestClient[Any, Any] = await aiohttp_client(PlaneServer(create_app(runtime)))
    await send(client, f"/acme-{case}/records?limit=5", upstream)


@pytest.mark.parametrize("case", CASES)
async def test_000_with_go_zero_values_everywhere_loads_and_works(
    case: str,
    aiohttp_server: Any,
    aiohttp_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same case as a Go exporter writes it with every optional field unset
    (`000-go-zero.json`): it still signs what the independent peer accepts."""
    upstream = await upstream_for(case, aiohttp_server)
    runtime = checked_and_loaded(GO_ZERO_000[case], upstream, tmp_path, monkeypatch, capsys)
    client: TestClient[Any, Any] = await aiohttp_client(PlaneServer(create_app(runtime)))
    await send(client, f"/zero-{case}/records?limit=5", upstream)


@pytest.mark.parametrize("chain", ["api-key+hmac", "none+basic-auth+api-key"])
async def test_000_chains_apply_every_credential_in_order(
    chain: str, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    """`000-chains.json`: each credential of the chain lands at the echo upstream, the HMAC over
    the exact body recomputed here."""
    upstream = await upstream_for("hmac", aiohttp_server)  # the echo upstream, every static key
    runtime = build_runtime({"connections": [CHAINS_000[chain]]}, upstream.env)
    client: TestClient[Any, Any] = await aiohttp_client(PlaneServer(create_app(runtime)))
    response = await client.post(f"/chain-{chain}/records", data=b'{"event": "paid"}')
    assert response.status == 200, await response.text()
    headers: dict[str, list[str]] = {}
    for name, value in (await response.json())["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    assert headers["x-api-key"] == ["canary-api-key-f3"]
    if "hmac" in chain:
        expected = hmac.new(HMAC_KEY, b'{"event": "paid"}', hashlib.sha256).hexdigest()
        assert headers["x-signature"] == [expected]
    else:
        pair = base64.b64encode(b"ann:canary-password-f4").decode()
        assert headers["authorization"] == [f"Basic {pair}"]


@pytest.mark.parametrize("case", CASES)
async def test_001_creates_through_the_api_and_works(
    case: str, aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    upstream = await upstream_for(case, aiohttp_server)
    auth = CONNECTIONS_000[case]["credentials"][0]["authSchemeConfig"]
    template = {
        "id": CREATE_001[case]["connectionTemplateId"],  # a ULID, as seed 001's TemplateID
        "route": f"/{case}",
        "baseUrl": "${UPSTREAM}",
        "authSchemeConfigs": [auth],
    }
    planes = await make_planes({"templates": [template]}, env=upstream.env)
    body = substitute(CREATE_001[case], upstream.env)
    response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    created = await response.json()
    # Seed 001's 201 `Connection`: its required fields, the ids as given, baseUrl the template's.
    assert {"id", "name", "credentials", "createdAt", "updatedAt"} <= set(created)
    assert created["credentials"][0]["id"] == CREATE_001[case]["connection"]["credentials"][0]["id"]
    assert created["baseUrl"] == upstream.env["UPSTREAM"]
    for secret in ("CLIENT_SECRET", "API_KEY", "BASIC_PASSWORD", "ACCESS_TOKEN", "CLIENT_KEY"):
        assert secret not in upstream.env or upstream.env[secret] not in json.dumps(created)
    await send(
        planes.proxy, f"/{case}/records", upstream, **{"X-Connection-Id": f"customer-{case}"}
    )


def test_000_credentials_still_to_exchange_are_read() -> None:
    """oauth2-code loads (exchanged at first use, see test_oauth2_proxy); an oauth1 credential
    from the file is refused precisely: only the proxy's own flow knows its temporary secret."""
    pending = fixture("000-exchange-pending.json")
    env = {name: f"canary-{name.lower()}" for name in (
        "CLIENT_ID", "CLIENT_SECRET", "AUTHORIZATION_CODE",
        "CONSUMER_KEY", "CONSUMER_SECRET", "OAUTH1_TEMP_TOKEN", "OAUTH1_VERIFIER",
    )}  # fmt: skip
    env |= {
        "AUTHORIZE_URL": "https://auth.example.com/a",
        "TOKEN_URL": "https://auth.example.com/t",
    }

    def tree(case: str) -> dict[str, Any]:
        return {
            "connections": [
                {
                    "name": "half",
                    "baseUrl": "https://api.example.com",
                    "credentials": [pending[case]],
                }
            ]
        }

    [connection] = build_runtime(tree("oauth2-code"), env).connections
    assert connection.schemes[0].describe()["grant"] == "authorizationCode"
    # The file's oauth1 credential is exchanged at start
    # (tests/tokens/test_oauth1_file_credential.py); loading it takes no store and sends nothing.
    [connection] = build_runtime(tree("oauth1"), env).connections
    described = connection.schemes[0].describe()
    assert described["type"] == "oauth1" and "exchanged at start" in described["credential"]
    assert "canary" not in repr(connection.schemes[0]) + str(described)


async def test_002_initialise_body(aiohttp_server: Any, make_planes: MakePlanes) -> None:
    upstream = await upstream_for("oauth2-authorization-code", aiohttp_server)
    auth = CONNECTIONS_000["oauth2-authorization-code"]["credentials"][0]["authSchemeConfig"]
    template = {"id": "drive", "baseUrl": "${UPSTREAM}", "authSchemeConfigs": [auth]}
    planes = await make_planes({"templates": [template]}, env=upstream.env)
    body = substitute(fixture("002-initialise-oauth2.json")["request"], upstream.env)
    response = await planes.admin.post(
        f"/o/{ORG}/templates/drive/oauth2/init", json=body, headers=AUTH
    )
    assert response.status == 200, await response.text()
    assert set(await response.json()) == set(fixture("002-initialise-oauth2.json")["response"])
    url = (await response.json())["url"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(upstream.env["AUTHORIZE_URL"] + "?")
    assert query["scope"] == "files.read files.write offline_access"
    assert query["prompt"] == "consent select_account"
    assert query["access_type"] == "offline" and query["include_granted_scopes"] == "true"
    assert query["code_challenge_method"] == "S256"


async def test_003_callback_and_004_openint_answer_in_the_seed_shapes(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    upstream = await upstream_for("oauth2-authorization-code", aiohttp_server)
    auth = CONNECTIONS_000["oauth2-authorization-code"]["credentials"][0]["authSchemeConfig"]
    template = {"id": "drive", "baseUrl": "${UPSTREAM}", "authSchemeConfigs": [auth]}
    planes = await make_planes({"templates": [template]}, env=upstream.env)
    response = await planes.admin.post(
        f"/o/{ORG}/templates/drive/oauth2/init",
        json={"connectionName": "acme drive", "externalId": "customer-42"},
        headers=AUTH,
    )
    async with ClientSession() as browser:
        async with browser.get((await response.json())["url"], allow_redirects=False) as redirect:
            location = redirect.headers["Location"]
        async with browser.get(location, allow_redirects=False) as callback:
            assert callback.status == 201, await callback.text()
            created = await callback.json()
    seed_003 = fixture("003-oauth2-callback.json")
    assert set(created) == set(seed_003) | {"connectionId"}
    assert created["type"] in ("Default", "OAuth2Refresh", "Raw", "BasicAuth")
    for value in created["data"].values():
        base64.b64decode(value, validate=True)
    url = f"/connection/conn_{created['connectionId']}?include_secrets=true&refresh_policy=none"
    got = await (await planes.admin.get(url, headers=AUTH)).json()
    seed_004 = fixture("004-openint-get-connection.json")
    assert set(seed_004) <= set(got)
    assert got["integration_id"] == ""  # OpenInt's catalogue entry: a proxy connection has none
    # The connection the callback made reads as seed 001's Connection.
    read = await planes.admin.get(f"{CONNECTIONS}/{created['connectionId']}", headers=AUTH)
    assert problems(await read.json()) == []
    oauth = got["settings"]["oauth"]
    assert set(seed_004["settings"]["oauth"]) - {"last_fetched_at"} <= set(oauth)
    assert set(seed_004["settings"]["oauth"]["credentials"]) <= set(oauth["credentials"])
    assert got["settings"]["access_token"] == oauth["credentials"]["access_token"]
