"""`http-signature` with `profile: web-bot-auth`: a request the proxy signs verifies with
Cloudflare's `web-bot-auth` (npm, in a node script) and with PyPI `http-message-signatures`,
using the public key the admin listener serves at `/.well-known/http-message-signatures-directory`;
the directory holds public keys only, its `kid` is the RFC 7638 thumbprint (RFC 8037 A.3 vector),
and its own response signatures verify."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import HTTPMessageVerifier
from http_message_signatures.algorithms import ED25519
from http_message_signatures.resolvers import MappingKeyResolver

from proxy.admin import create_admin_app_for
from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from tests.admin.planes import AUTH, CONNECTIONS, MakePlanes, create_body
from tests.schemes.httpsig_peer import VerifyingUpstream
from tests.upstreams import catch_all

NODE_PEER = Path(__file__).resolve().parent.parent / "schemes" / "web_bot_auth_node"
DIRECTORY = "/.well-known/http-message-signatures-directory"

# RFC 8037 Appendix A.1 (the Ed25519 private key) and A.3 (its RFC 7638 JWK thumbprint).
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


RFC8037_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(_b64url(RFC8037_D))
RFC8037_PEM = RFC8037_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
PEM_BODY = "".join(RFC8037_PEM.strip().splitlines()[1:-1])


def web_bot_auth(pem: str = RFC8037_PEM, **params: Any) -> dict[str, Any]:
    return {
        "authSchemeConfig": {
            "type": "http-signature",
            "httpSignature": {"profile": "web-bot-auth", **params},
        },
        "credential": {"type": "string", "data": {"string": {"value": pem}}},
    }


@dataclass
class Recorder:
    seen: list[dict[str, Any]]

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            {
                "method": request.method,
                "url": f"http://{request.host}{request.raw_path}",
                "headers": {k: v for k, v in request.headers.items() if k.lower() != "host"},
            }
        )
        return web.Response(text="ok")


async def test_directory_serves_the_public_key_with_its_thumbprint(
    make_planes: MakePlanes, aiohttp_server: Any
) -> None:
    upstream = await aiohttp_server(web.Application())
    planes = await make_planes(
        {"connections": [{"name": "bot", "baseUrl": str(upstream.make_url("/")),
                          "credentials": [web_bot_auth()]}]}
    )  # fmt: skip
    response = await planes.admin.get(DIRECTORY)  # no admin token: public
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/http-message-signatures-directory+json"
    text = await response.text()
    [jwk] = json.loads(text)["keys"]
    assert jwk == {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "kid": RFC8037_THUMBPRINT}
    # Public only: neither the private scalar nor any part of the PEM is served.
    assert RFC8037_D not in text and PEM_BODY[:40] not in text and '"d"' not in text


async def test_directory_response_signatures_verify(
    make_planes: MakePlanes, aiohttp_server: Any
) -> None:
    """Each key signs the directory response: `("@authority";req)`,
    `tag="http-message-signatures-directory"` (verified by `http-message-signatures`)."""
    second = ed25519.Ed25519PrivateKey.generate()
    second_pem = second.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    upstream = await aiohttp_server(web.Application())
    base = str(upstream.make_url("/"))
    planes = await make_planes(
        {
            "connections": [
                {"name": "a", "baseUrl": base, "credentials": [web_bot_auth()]},
                {"name": "b", "baseUrl": base, "credentials": [web_bot_auth(second_pem)]},
                # The same key again: listed once.
                {"name": "c", "baseUrl": base, "credentials": [web_bot_auth()]},
            ]
        }
    )
    response = await planes.admin.get(DIRECTORY)
    keys = json.loads(await response.text())["keys"]
    assert len(keys) == 2
    host = response.request_info.headers["Host"]

    @dataclass
    class Req:
        method: str
        url: str
        headers: dict[str, str]

    @dataclass
    class Resp:
        status_code: int
        headers: Any
        request: Req

    message = Resp(200, response.headers, Req("GET", f"http://{host}{DIRECTORY}", {}))
    public = {
        jwk["kid"]: ed25519.Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"])) for jwk in keys
    }
    verifier = HTTPMessageVerifier(
        signature_algorithm=ED25519,
        key_resolver=MappingKeyResolver(public_keys=public, private_keys={}),
    )
    for label in ["binding0", "binding1"]:
        [result] = verifier.verify(
            message, expect_tag="http-message-signatures-directory", expect_label=label
        )
        assert list(result.covered_components) == ['"@authority";req', '"@signature-params"']
        assert result.parameters["keyid"] in public


async def test_api_created_connection_key_is_served_and_never_read_back(
    make_planes: MakePlanes, aiohttp_server: Any
) -> None:
    upstream = await aiohttp_server(web.Application())
    signing = web_bot_auth()
    template = {
        "id": "bots",
        "route": "/bots",
        "baseUrl": str(upstream.make_url("/")),
        "authSchemeConfigs": [signing["authSchemeConfig"]],
    }
    planes = await make_planes({"templates": [template]})
    body = create_body("agent", {"credential": signing["credential"]}, template="bots")
    created = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert created.status == 201, await created.text()
    listed = await (await planes.admin.get(CONNECTIONS, headers=AUTH)).text()
    assert PEM_BODY[:40] not in listed
    directory = json.loads(await (await planes.admin.get(DIRECTORY)).text())
    assert [k["kid"] for k in directory["keys"]] == [RFC8037_THUMBPRINT]


async def test_signed_request_verifies_with_python_peer(
    make_planes: MakePlanes, aiohttp_server: Any
) -> None:
    upstream = VerifyingUpstream(
        "ed25519", RFC8037_THUMBPRINT, RFC8037_KEY.public_key(), expect_tag="web-bot-auth"
    )
    server = await aiohttp_server(upstream.app())
    planes = await make_planes(
        {"connections": [{"name": "bot", "baseUrl": str(server.make_url("/")),
                          "credentials": [web_bot_auth(expiresIn=30)]}]}
    )  # fmt: skip
    agent = '"https://agent.example/.well-known/http-message-signatures-directory"'
    assert (await planes.proxy.get("/bot/page", headers={"Signature-Agent": agent})).status == 200
    assert (await planes.proxy.get("/bot/page")).status == 200, upstream.failures
    with_agent, without = upstream.results
    assert list(with_agent["covered"])[:2] == ['"@authority"', '"signature-agent"']
    assert with_agent["covered"]['"signature-agent"'] == agent
    assert list(without["covered"])[:1] == ['"@authority"'] and len(without["covered"]) == 2
    params = with_agent["parameters"]
    assert params["tag"] == "web-bot-auth" and params["alg"] == "ed25519" and params["nonce"]
    assert params["expires"] - params["created"] == 30


def _node_peer() -> Path:
    if shutil.which("node") and (NODE_PEER / "node_modules" / "web-bot-auth").is_dir():
        return NODE_PEER
    if os.environ.get("CI"):
        pytest.fail("node and the web-bot-auth npm package are needed (.ci/run installs them)")
    pytest.skip("node or `npm ci` in tests/schemes/web_bot_auth_node missing")


async def test_cloudflare_web_bot_auth_verifies_the_proxy_request(
    make_planes: MakePlanes, aiohttp_server: Any, tmp_path: Path
) -> None:
    peer = _node_peer()
    recorder = Recorder([])
    app = catch_all(recorder.handle)
    server = await aiohttp_server(app)
    planes = await make_planes(
        {"connections": [{"name": "bot", "baseUrl": str(server.make_url("/")),
                          "credentials": [web_bot_auth()]}]}
    )  # fmt: skip
    agent = '"https://agent.example"'
    response = await planes.proxy.get("/bot/docs?q=1", headers={"Signature-Agent": agent})
    assert response.status == 200
    directory = json.loads(await (await planes.admin.get(DIRECTORY)).text())
    [seen] = recorder.seen
    verdicts = []
    for tampered in [False, True]:
        request = dict(seen)
        if tampered:  # another authority: the peer must refuse it
            request["url"] = request["url"].replace("127.0.0.1", "localhost")
        case = tmp_path / f"case-{tampered}.json"
        case.write_text(json.dumps({**request, "directory": directory}))
        done = subprocess.run(
            ["node", str(peer / "verify.mjs"), str(case)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        verdicts.append(done)
    good, bad = verdicts
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout) == {
        "keyid": RFC8037_THUMBPRINT, "thumbprint": RFC8037_THUMBPRINT, "tag": "web-bot-auth",
    }  # fmt: skip
    assert bad.returncode == 1 and bad.stdout == ""


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"algorithm": "hmac-sha256"}, "algorithm", "is ed25519 with web-bot-auth"),
        ({"components": ["@method"]}, "components", "is fixed by web-bot-auth"),
        ({"tag": "other"}, "tag", '"web-bot-auth"'),
        ({"contentDigest": "sha-256"}, "contentDigest", "is not part of web-bot-auth"),
        ({"keyId": "my-key"}, "keyId", "JWK thumbprint"),
    ],
)
def test_profile_fields_are_checked(params: dict[str, Any], field: str, message: str) -> None:
    tree = {"connections": [{"name": "bot", "baseUrl": "https://example.com",
                             "credentials": [web_bot_auth(**params)]}]}  # fmt: skip
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(tree, {})
    text = "\n".join(str(p) for p in caught.value.problems)
    assert f"connections[0].credentials[0].authSchemeConfig.httpSignature.{field}: " in text
    assert message in text and PEM_BODY[:40] not in text


async def test_directory_follows_a_reload(aiohttp_client: Any) -> None:
    """A key rotated in proxy.yaml: after the reload the directory serves the new key only."""
    new = ed25519.Ed25519PrivateKey.generate()
    new_pem = new.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()

    def tree(pem: str) -> dict[str, Any]:
        return {
            "admin": {"listen": "127.0.0.1:8081", "token": "canary-admin-wba"},
            "connections": [
                {"name": "bot", "baseUrl": "http://127.0.0.1:9", "credentials": [web_bot_auth(pem)]}
            ],
        }

    runtime = build_runtime(tree(RFC8037_PEM), {})
    plane = create_app(runtime)
    admin = await aiohttp_client(create_admin_app_for(runtime, plane))

    async def kids() -> list[str]:
        return [k["kid"] for k in json.loads(await (await admin.get(DIRECTORY)).text())["keys"]]

    assert await kids() == [RFC8037_THUMBPRINT]
    await plane.reload(build_runtime(tree(new_pem), {}))
    [kid] = await kids()
    assert kid != RFC8037_THUMBPRINT and len(kid) == 43
    await plane.close()
