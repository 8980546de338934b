"""The `jwt-bearer` example (examples/jwt-bearer/proxy.yaml): it passes `check` with real keys,
`explain` never prints them, and its GitHub App connection, pointed at a GitHub-shaped fake that
verifies the app JWT with PyJWT, gets an installation token and uses it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer

from proxy.cli import main
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.store import open_store
from proxy.tokens.manager import TokenManager
from tests.jwt_provider import JwtProvider, create_jwt_app, private_pem, public_pem
from tests.plane import PlaneServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "jwt-bearer" / "proxy.yaml"
APP_ID, INSTALLATION = "123456", "7890123"


def with_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    keys = {"github-app.pem": private_pem("rsa"), "partner-es256.pem": private_pem("ec")}
    account = {
        "type": "service_account",
        "client_email": "reader@my-project.iam.gserviceaccount.com",
        "private_key": private_pem("rsa"),
        "private_key_id": "0123abcd",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    keys["gcs-service-account.json"] = json.dumps(account)
    for name, text in keys.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setenv("GITHUB_APP_ID", APP_ID)
    monkeypatch.setenv("GITHUB_INSTALLATION_ID", INSTALLATION)
    config = tmp_path / "proxy.yaml"
    config.write_text(EXAMPLE.read_text().replace("/run/secrets/", f"{tmp_path}/"))
    return config, keys


def key_lines(keys: dict[str, str]) -> list[str]:
    pems = [keys["github-app.pem"], keys["partner-es256.pem"]]
    pems.append(json.loads(keys["gcs-service-account.json"])["private_key"])
    return [pem.splitlines()[2] for pem in pems]


def test_example_checks_and_explains_without_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config, keys = with_keys(tmp_path, monkeypatch)
    assert main(["check", "--config", str(config)]) == 0
    assert capsys.readouterr().out.endswith(": ok, 3 connection(s)\n")
    for path in ["/github/installation/repositories", "/gcs/storage/v1/b", "/partner/v1/orders"]:
        assert main(["explain", "--config", str(config), "GET", path]) == 0
    out, err = capsys.readouterr()
    assert out.count("Authorization: Bearer <oauth2-access-token: fetched at run time>") == 3
    assert "https://api.github.com/app/installations/7890123/access_tokens" in out
    assert "reader@my-project.iam.gserviceaccount.com" in out and "acme-2026" in out
    assert not any(line in out + err for line in key_lines(keys))


async def test_example_github_app_connection_against_a_github_shaped_fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    config, keys = with_keys(tmp_path, monkeypatch)
    provider = JwtProvider()
    provider.apps[APP_ID] = public_pem(keys["github-app.pem"])
    provider.installations[INSTALLATION] = APP_ID
    github: TestServer = await aiohttp_server(create_jwt_app(provider))
    tree = yaml.safe_load(config.read_text())
    tree["connections"] = [c for c in tree["connections"] if c["name"] == "github"]
    tree["connections"][0]["baseUrl"] = str(github.make_url("")).rstrip("/")
    runtime = build_runtime(tree, {"GITHUB_APP_ID": APP_ID, "GITHUB_INSTALLATION_ID": INSTALLATION})
    store = open_store(None)
    plane = create_app(runtime, tokens=TokenManager(store), store=store)
    proxy = await aiohttp_client(PlaneServer(plane))
    for _ in range(3):
        response = await proxy.get("/github/repos/acme/widgets")
        assert response.status == 200, provider.refused
        assert (await response.json())["principal"] == f"installation {INSTALLATION}"
    assert provider.hits["github"] == 1 and provider.refused == []
