"""`signing-proxy explain`: the signed request as it would go out, secrets masked, nothing sent.

Signatures in the output are recomputed here from literal bytes, so the printed signed string
is shown to be the one that was really signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from aiohttp import web

from proxy.cli import main
from tests.upstreams import catch_all

API_KEY = "canary-apikey q/1"
HMAC_SECRET = "canary-hmac-secret-2"
BASIC_PASSWORD = "canary-basic-pw-3"
CONSUMER_KEY = "ck-4-shown"  # configuration, not a secret (seed 001)
CONSUMER_SECRET = "canary-cs-5"
TOKEN = "canary-token-6"
TOKEN_SECRET = "canary-ts-7"
CANARIES = [API_KEY, HMAC_SECRET, BASIC_PASSWORD, CONSUMER_SECRET, TOKEN,
            TOKEN_SECRET]  # fmt: skip

CONFIG = """
connections:
  - name: partner
    route: /partner/v2
    baseUrl: {base}
    credentials:
      - authSchemeConfig: {{type: api-key, apiKey: {{name: api_key, in: query}}}}
        credential: {{type: string, data: {{string: {{value: "{api_key}"}}}}}}
      - authSchemeConfig: {{type: basic-auth}}
        credential: {{type: basic-auth, data: {{basicAuth: {{username: u, password: {basic}}}}}}}
      - authSchemeConfig:
          type: hmac
          hmac: {{name: X-Signature, in: header, algorithm: sha256, digestInputs: [url, body],
                 encoding: hex}}
        credential: {{type: string, data: {{string: {{value: {hmac}}}}}}}
  - name: ns
    baseUrl: {base}
    credentials:
      - authSchemeConfig:
          type: oauth1
          oauth1:
            {{consumerKey: {ck}, consumerSecret: {cs}, signatureMethod: sha256, tokenAuth: true}}
        credential:
          type: oauth1-token
          data:
            oauth1Token:
              token: {token}
              tokenSecret: {ts}
              additionalParams: [{{name: realm, value: "123_SB1"}}]
"""


@pytest.fixture
async def upstream(aiohttp_server: Any) -> tuple[str, list[str]]:
    """A real upstream that records any request: explain must never reach it."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response()

    app = catch_all(handle)
    server = await aiohttp_server(app)
    return str(server.make_url("/api")), seen


def write_config(folder: Path, base: str) -> str:
    path = folder / "proxy.yaml"
    path.write_text(
        CONFIG.format(base=base, api_key=API_KEY, basic=BASIC_PASSWORD, hmac=HMAC_SECRET,
                      ck=CONSUMER_KEY, cs=CONSUMER_SECRET, token=TOKEN, ts=TOKEN_SECRET)
    )  # fmt: skip
    return str(path)


def assert_masked(output: str) -> None:
    for canary in CANARIES:
        for form in (canary, quote(canary, safe=""), quote(quote(canary, safe=""), safe="")):
            assert form not in output
    assert base64.b64encode(f"u:{BASIC_PASSWORD}".encode()).decode() not in output


async def test_hmac_explained_with_exact_signed_bytes(
    upstream: tuple[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, seen = upstream
    body = b'{"amount": 1}\n'
    (tmp_path / "body.json").write_bytes(body)
    config = write_config(tmp_path, base)
    data = f"@{tmp_path / 'body.json'}"
    args = ["explain", "--config", config, "POST", "/partner/v2/items/a%2Fb?x=1",
            "-H", "Content-Type: application/json", "--data", data]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert_masked(out)
    assert seen == []
    url = f"{base}/items/a%2Fb?x=1&api_key={quote(API_KEY, safe='-._~')}"
    expected = hmac.new(HMAC_SECRET.encode(), url.encode() + body, hashlib.sha256).hexdigest()
    assert f"X-Signature: {expected}" in out
    assert f"POST {base}/items/a%2Fb?x=1&api_key=**** HTTP/1.1" in out
    assert "Authorization: Basic ****" in out
    assert f"url ({len(url)} bytes): {base}/items/a%2Fb?x=1&api_key=****" in out
    assert f"body ({len(body)} bytes): " + repr(body) in out
    assert f"Content-Length: {len(body)}" in out


async def test_oauth1_explained_base_string_is_the_one_signed(
    upstream: tuple[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, seen = upstream
    config = write_config(tmp_path, base)
    args = ["explain", "--config", config, "POST", "/ns/record?q=a+b", "-H",
            "Content-Type: application/x-www-form-urlencoded", "-d", "name=O%27Brien"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert_masked(out)
    assert seen == []
    header = re.search(r"^Authorization: (OAuth .*)$", out, re.M)
    shown = re.search(r"signature base string \(\d+ bytes\): (\S+)$", out, re.M)
    assert header and shown
    assert header.group(1).startswith(f'OAuth realm="123_SB1", oauth_consumer_key="{CONSUMER_KEY}"')
    # Put the masked token back and sign by hand.
    base_string = shown.group(1).replace("****", TOKEN, 1)
    assert "name%3DO%2527Brien" in base_string and "q%3Da%2520b" in base_string
    key = f"{CONSUMER_SECRET}&{TOKEN_SECRET}".encode()
    mac = hmac.new(key, base_string.encode(), hashlib.sha256).digest()
    signature = re.search(r'oauth_signature="([^"]+)"', header.group(1))
    assert signature and unquote(signature.group(1)) == base64.b64encode(mac).decode()


async def test_unknown_route_and_bad_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "https://api.example.com")
    assert main(["explain", "--config", config, "GET", "/nowhere"]) == 1
    assert "route_not_found" in capsys.readouterr().err
    assert main(["explain", "--config", config, "GET", "/ns/x", "-H", "no-colon"]) == 2
    assert main(["explain", "--config", config, "GET", "/partner/v2/%2E%2E/x"]) == 1
    assert "bad_path" in capsys.readouterr().err


async def test_streaming_connection_explains_without_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "https://api.example.com")
    assert main(["explain", "--config", config, "POST", "/ns/up", "-H",
                 "Content-Type: application/json", "-d", "{}"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "body: none read (streamed" in out  # OAuth 1 does not read a JSON body
    assert "Content-Length: 2" in out


def test_stripe_style_username_key_is_masked() -> None:
    from proxy.cli.explain import mask, secret_values
    from proxy.config.models import Connection

    model = Connection.model_validate(
        {"name": "stripe", "baseUrl": "https://api.stripe.com", "credentials": [{
            "authSchemeConfig": {"type": "basic-auth"},
            "credential": {"type": "basic-auth",
                           "data": {"basicAuth": {"username": "sk_test_canary9", "password": ""}}},
        }]}
    )  # fmt: skip
    assert mask("user sk_test_canary9 here", secret_values(model)) == "user **** here"
