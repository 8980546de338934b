"""Every body the management API returns as a `Connection` validates against seed 001's own
`Connection` schema (`tests/seeds/schema.py`: extracted from the seed, its two
self-contradictions repaired, `ulid` and `date-time` formats asserted): GET, each item of the
list, and the 201 of create, for every seed fixture — the single cases of seed 000, the
multi-credential chains and the Go-zero variants generated from them. A GET body posted back
with only its secrets filled in creates the same connection; posted as read, it is refused
naming the redacted secrets."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
import yaml
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from ulid import ULID

from proxy.cli import main
from proxy.config import models as m
from tests.admin.planes import AUTH, CONNECTIONS, MakePlanes, Planes, substitute
from tests.oauth_server import AuthServer, Client, create_auth_app
from tests.seeds.schema import problems

FIXTURES = Path(__file__).parent.parent / "seeds" / "fixtures"


def fixture(name: str) -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads((FIXTURES / name).read_text("utf-8"))
    return loaded


# Every seed-shaped connection document: (kind, case) → document.
DOCUMENTS = {
    (kind, case): document
    for kind, name in [
        ("single", "000-get-connection.json"),
        ("chain", "000-chains.json"),
        ("go-zero", "000-go-zero.json"),
    ]
    for case, document in fixture(name).items()
}
CASE_IDS = [f"{kind}:{case}" for kind, case in DOCUMENTS]

CA = trustme.CA()
LEAF = CA.issue_cert("acme-client@example", common_name="acme-client")
# The values of the fixtures' `${...}` marks; secrets are canaries. Nothing here is contacted.
VALUES = {
    "UPSTREAM": "http://127.0.0.1:9/v1",
    "AUTHORIZE_URL": "http://127.0.0.1:9/authorize",
    "TOKEN_URL": "http://127.0.0.1:9/token",
    "CLIENT_ID": "acme-client",
    "CLIENT_SECRET": "canary-client-secret-s1",
    "API_KEY": "canary-api-key-s2",
    "BASIC_USER": "ann",
    "BASIC_PASSWORD": "canary-password-s3",
    "HMAC_KEY_BASE64": base64.b64encode(b"canary-hmac-key-s4").decode(),
    "ACCESS_TOKEN": "canary-access-token-s5",
    "REFRESH_TOKEN": "canary-refresh-token-s6",
    "RESOURCE_OWNER": "pat",
    "RESOURCE_OWNER_PASSWORD": "canary-owner-password-s7",
    "CONSUMER_KEY": "acme-consumer-key",
    "CONSUMER_SECRET": "canary-consumer-secret-s8",
    "OAUTH1_TOKEN": "canary-oauth1-token-s9",
    "OAUTH1_TOKEN_SECRET": "canary-oauth1-token-secret-s10",
    "CLIENT_CERT": LEAF.cert_chain_pems[0].bytes().decode(),
    "CLIENT_KEY": LEAF.private_key_pem.bytes().decode(),
    "CA_CERT": CA.cert_pem.bytes().decode(),
}
CANARIES = [v for v in VALUES.values() if v.startswith("canary")] + ["PRIVATE KEY"]


def template_of(number: int, document: dict[str, Any]) -> dict[str, Any]:
    """A template with the document's auth scheme configs, as seed 001 creates against."""
    return {
        "id": str(ULID.from_int(number + 1)),
        "route": f"/t{number}",
        "baseUrl": "${UPSTREAM}",
        "authSchemeConfigs": [e["authSchemeConfig"] for e in document["credentials"]],
    }


def create_body(number: int, document: dict[str, Any]) -> dict[str, Any]:
    """Seed 001's `EnvSystemConnectionCreate` for the document, as the 001 fixture writes it."""
    body = {
        "connectionTemplateId": str(ULID.from_int(number + 1)),
        "connection": {
            "name": document["name"],
            "credentials": document["credentials"],
            "baseUrl": "",
        },
        "externalId": f"customer-{number}",
    }
    return dict(substitute(body, VALUES))


@pytest.fixture
async def planes(make_planes: MakePlanes) -> Planes:
    """Every document as a connection of proxy.yaml, and a template for each."""
    tree = {
        "connections": [
            {**document, "connectionTemplateId": ""} for document in DOCUMENTS.values()
        ],
        "templates": [template_of(n, d) for n, d in enumerate(DOCUMENTS.values())],
    }
    return await make_planes(tree, env=VALUES)


def assert_seed_connection(body: dict[str, Any]) -> None:
    assert problems(body) == [], json.dumps(body, indent=1)
    text = json.dumps(body)
    for canary in CANARIES:
        assert canary not in text


async def read(planes: Planes, path: str) -> Any:
    response = await planes.admin.get(path, headers=AUTH)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_every_read_of_a_file_connection_is_the_seed_connection(planes: Planes) -> None:
    listed = (await read(planes, CONNECTIONS))["items"]
    assert len(listed) == len(DOCUMENTS)
    for item in listed:
        assert_seed_connection(item)
        assert await read(planes, f"{CONNECTIONS}/{item['id']}") == item
    by_name = {item["name"]: item for item in listed}
    # The ids the file gave are kept; the scheme sub-objects that had none got one.
    for document in DOCUMENTS.values():
        shown = by_name[document["name"]]
        assert shown["id"] == document["id"]
        assert [e["id"] for e in shown["credentials"]] == [e["id"] for e in document["credentials"]]


async def test_what_the_writer_fills_in(planes: Planes) -> None:
    items = {i["name"]: i for i in (await read(planes, CONNECTIONS))["items"]}

    def entry(name: str, index: int = 0) -> dict[str, Any]:
        found: dict[str, Any] = items[name]["credentials"][index]
        return found

    # Secret fields present and "", the seed's "redacted when read".
    assert entry("acme-api-key")["credential"]["data"] == {"string": {"value": ""}}
    oauth1 = entry("acme-oauth1")["authSchemeConfig"]["oauth1"]
    assert oauth1["consumerKey"] == "acme-consumer-key" and oauth1["consumerSecret"] == ""
    # Only the sub-object `type` selects is written (`null` is no object in the schema).
    assert set(entry("zero-basic-auth")["authSchemeConfig"]) == {"type", "basicAuth"}
    # Required non-secret fields written even when empty; the seed's mTLS spellings.
    client = entry("zero-oauth2-client-credentials")["credential"]["data"]["oauth2Client"]
    assert client["tokenUrl"] == "" and client["mTLSEnabled"] is False
    scheme = entry("chain-certificate+oauth2-client-credentials", 1)["authSchemeConfig"]
    certificate_id = entry("chain-certificate+oauth2-client-credentials", 0)["id"]
    assert scheme["oauth2"]["mtlsEnabled"] is True
    assert scheme["oauth2"]["mtlsCredentialId"] == certificate_id
    chained = entry("chain-certificate+oauth2-client-credentials", 1)["credential"]["data"]
    assert chained["oauth2Client"]["mTLSEnabled"] is True
    assert chained["oauth2Client"]["mTLSCredentialId"] == certificate_id
    token = entry("zero-oauth2-authorization-code")["credential"]["data"]["oauth2Token"]
    assert token["refreshToken"] == "" and token["tokenType"] == "Bearer"


async def test_file_connection_ids_are_ulids_stable_across_restarts(
    make_planes: MakePlanes,
) -> None:
    api_key = copy.deepcopy(DOCUMENTS["single", "api-key"])
    del api_key["id"]
    for entry in api_key["credentials"]:
        del entry["id"], entry["credential"]["id"]
        entry["authSchemeConfig"]["apiKey"].pop("id")
    # A placeholder scheme given as its type alone: no sub-object to carry an id.
    basic = copy.deepcopy(DOCUMENTS["single", "basic-auth"])
    del basic["id"]
    for entry in basic["credentials"]:
        del entry["id"], entry["credential"]["id"]
        entry["authSchemeConfig"] = {"type": "basic-auth"}
    bodies = []
    for _ in range(2):  # two starts from the same file
        planes = await make_planes({"connections": [api_key, basic]}, env=VALUES)
        items = (await read(planes, CONNECTIONS))["items"]
        for item in items:
            assert_seed_connection(item)
        bodies.append(items)
    (first, placeholder), again = bodies
    ids = [first["id"], first["credentials"][0]["id"]]
    ids.append(first["credentials"][0]["authSchemeConfig"]["apiKey"]["id"])
    made = placeholder["credentials"][0]["authSchemeConfig"]["basicAuth"]
    assert made["description"] == ""
    ids.append(made["id"])
    assert all(ULID.from_str(i) for i in ids) and len(set(ids)) == 4
    assert bodies[0] == again


def filled(read_back: Any, given: Any) -> Any:
    """`read_back` with each `""` the input had a value for taken from the input: a GET body
    with only its secrets filled in, as its caller would."""
    if isinstance(read_back, dict) and isinstance(given, dict):
        return {k: filled(v, given.get(k)) for k, v in read_back.items()}
    if isinstance(read_back, list) and isinstance(given, list):
        return [filled(v, g) for v, g in zip(read_back, given, strict=False)]
    if read_back == "" and isinstance(given, str) and given:
        return given
    return read_back


def blanked(read_back: Any, given: Any, path: str = "") -> list[str]:
    """Paths of credential data fields the read shows as `""` where the input had a value."""
    if isinstance(read_back, dict) and isinstance(given, dict):
        return [p for k, v in read_back.items() for p in blanked(v, given.get(k), f"{path}.{k}")]
    if isinstance(read_back, list) and isinstance(given, list):
        pairs = zip(read_back, given, strict=False)
        return [p for i, (v, g) in enumerate(pairs) for p in blanked(v, g, f"{path}[{i}]")]
    return [path.lstrip(".")] if read_back == "" and isinstance(given, str) and given else []


@pytest.mark.parametrize("key", list(DOCUMENTS), ids=CASE_IDS)
async def test_created_connection_bodies_are_the_seed_connection_and_round_trip(
    planes: Planes, key: tuple[str, str]
) -> None:
    number = list(DOCUMENTS).index(key)
    body = create_body(number, DOCUMENTS[key])
    body["connection"]["name"] = f"api-{number}"
    response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert_seed_connection(created)
    got = await read(planes, f"{CONNECTIONS}/{created['id']}")
    assert_seed_connection(got)
    assert got == created
    for item in (await read(planes, CONNECTIONS))["items"]:
        assert_seed_connection(item)
    assert (await planes.admin.delete(f"{CONNECTIONS}/{got['id']}", headers=AUTH)).status == 204

    # Posted back as read: refused, naming redacted secrets of the credentials (and nothing
    # else); nothing is created.
    back = {"connectionTemplateId": got["connectionTemplateId"], "connection": got}
    secrets = blanked(got["credentials"], body["connection"]["credentials"], "credentials")
    response = await planes.admin.post(CONNECTIONS, json=back, headers=AUTH)
    if secrets:
        assert response.status == 400, await response.text()
        error = await response.json()
        named = [f["field"] for f in error["fields"]]
        assert named and set(named) <= {f"connection.{p}" for p in secrets}, named
        assert {f["message"] for f in error["fields"]} == {"redacted: supply the value"}
        assert response.status == 400
        absent = await planes.admin.get(f"{CONNECTIONS}/{got['id']}", headers=AUTH)
        assert absent.status == 404
        # With only its secrets filled in: the same connection again.
        back["connection"] = filled(got, {**got, "credentials": body["connection"]["credentials"]})
        response = await planes.admin.post(CONNECTIONS, json=back, headers=AUTH)
    assert response.status == 201, await response.text()
    again = await response.json()
    assert_seed_connection(again)
    for moving in ("createdAt", "updatedAt"):
        again.pop(moving), created.pop(moving)
    assert again == created


async def test_a_redacted_template_secret_is_the_templates(planes: Planes) -> None:
    """The authSchemeConfig of a read shows the template's consumer secret as `""`: posted back
    so, the template's secret is used (the caller may never have seen it)."""
    number = list(DOCUMENTS).index(("single", "oauth1"))
    body = create_body(number, DOCUMENTS["single", "oauth1"])
    response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    got = await read(planes, f"{CONNECTIONS}/{(await response.json())['id']}")
    assert got["credentials"][0]["authSchemeConfig"]["oauth1"]["consumerSecret"] == ""
    assert (await planes.admin.delete(f"{CONNECTIONS}/{got['id']}", headers=AUTH)).status == 204
    data = got["credentials"][0]["credential"]["data"]["oauth1Token"]
    data.update(token=VALUES["OAUTH1_TOKEN"], tokenSecret=VALUES["OAUTH1_TOKEN_SECRET"])
    back = {"connectionTemplateId": got["connectionTemplateId"], "connection": got}
    response = await planes.admin.post(CONNECTIONS, json=back, headers=AUTH)
    assert response.status == 201, await response.text()
    route = planes.templates.get(got["connectionTemplateId"])
    assert route is not None
    connection = route.by_id(got["id"])
    assert connection is not None
    auth = connection.model.credentials[0].auth_scheme_config
    assert isinstance(auth, m.OAuth1SchemeConfig)
    assert auth.oauth1.consumer_secret.get_secret_value() == VALUES["CONSUMER_SECRET"]
    # Another consumer's secret is not the template's: still redacted, so refused.
    assert (await planes.admin.delete(f"{CONNECTIONS}/{got['id']}", headers=AUTH)).status == 204
    got["credentials"][0]["authSchemeConfig"]["oauth1"]["consumerKey"] = "another-consumer"
    response = await planes.admin.post(CONNECTIONS, json=back, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["fields"] == [
        {
            "field": "connection.credentials[0].authSchemeConfig.oauth1.consumerSecret",
            "message": "redacted: supply the value",
        }
    ]


async def test_a_file_oauth2_code_reads_back_as_the_token_it_became(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    server = AuthServer(access_ttl=3600)
    server.clients[VALUES["CLIENT_ID"]] = Client(secret=VALUES["CLIENT_SECRET"])
    auth: TestServer = await aiohttp_server(create_auth_app(server))
    public = "http://127.0.0.1:8081"  # the callback the code was issued to; never contacted
    query = {
        "response_type": "code",
        "client_id": VALUES["CLIENT_ID"],
        "redirect_uri": public + "/connections/oauth2/callback",
    }
    async with ClientSession() as browser:
        authorize = str(auth.make_url("/authorize"))
        async with browser.get(authorize, params=query, allow_redirects=False) as consent:
            code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
    pending = fixture("000-exchange-pending.json")["oauth2-code"]
    document = {"name": "half", "baseUrl": "${UPSTREAM}", "credentials": [pending]}
    env = VALUES | {"AUTHORIZATION_CODE": code, "TOKEN_URL": str(auth.make_url("/token"))}
    planes = await make_planes({"connections": [document]}, env=env, admin={"publicUrl": public})
    for _ in range(200):  # exchanged at start, in the background (bounded wait)
        [item] = (await read(planes, CONNECTIONS))["items"]
        if item["credentials"][0]["credential"]["type"] == "oauth2-token":
            break
        await asyncio.sleep(0.05)
    assert server.grants["authorization_code"] == 1
    assert_seed_connection(item)
    credential = item["credentials"][0]["credential"]
    assert credential["type"] == "oauth2-token"
    assert credential["id"] == pending["credential"]["id"]
    token = credential["data"]["oauth2Token"]
    assert token["accessToken"] == token["refreshToken"] == ""
    assert token["scopes"] and token["tokenType"] == "Bearer"
    for issued in [*server.access, *server.refresh]:
        assert issued not in json.dumps(item)


def test_every_document_passes_check_in_proxy_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "proxy.yaml"
    connections = [{**d, "connectionTemplateId": ""} for d in DOCUMENTS.values()]
    path.write_text(yaml.safe_dump({"connections": connections}), encoding="utf-8")
    for name, value in VALUES.items():
        monkeypatch.setenv(name, value)
    assert main(["check", "--config", str(path)]) == 0, capsys.readouterr()
    out = capsys.readouterr()
    assert f"{len(DOCUMENTS)} connection(s)" in out.out
    for canary in CANARIES:
        assert canary not in out.out + out.err
