"""Control characters in credential values that would go into a header are config errors.

Before, a bearer token with a trailing CR (a secret file written on Windows) loaded fine and every
request on the connection then failed with a 400 that blamed the client. Now `check`, `run` and
the management API refuse it at its field, without quoting it. Values that are encoded on the way
out (a query placement, Basic, HMAC keys, OAuth 1.0a parameters) stay accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.connections.runtime import build_runtime
from tests.builders import api_key, basic, bearer, config_problems, connection

CANARY = "CANARYctl4Kp"
CRED = "connections[0].credentials[0]"
BAD = ["\r", "\n", "\r\n", "\x00", "\x1b", "\t", "\x7f"]


def oauth2(token: dict[str, Any]) -> dict[str, Any]:
    grant = {"type": "authorizationCode", "authorizationCode": {"clientId": "c"}}
    return {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {"tokenUrl": "https://a.example/token", "grant": grant},
        },
        "credential": {"type": "oauth2-token", "data": {"oauth2Token": token}},
    }


def oauth1(realm: str) -> dict[str, Any]:
    token = {
        "token": "t",
        "tokenSecret": "ts",
        "additionalParams": [{"name": "realm", "value": realm}],
    }
    return {
        "authSchemeConfig": {
            "type": "oauth1",
            "oauth1": {"consumerKey": "k", "consumerSecret": "s", "signatureMethod": "sha1"},
        },
        "credential": {"type": "oauth1-token", "data": {"oauth1Token": token}},
    }


# (credential with `value` in the place under test, the field path the error must name)
PLACES = [
    (lambda v: bearer(v), f"{CRED}.credential.data.string.value"),
    (lambda v: api_key("X-Key", "header", v), f"{CRED}.credential.data.string.value"),
    (lambda v: api_key("session", "cookie", v), f"{CRED}.credential.data.string.value"),
    (lambda v: oauth2({"accessToken": v}), f"{CRED}.credential.data.oauth2Token.accessToken"),
    (
        lambda v: oauth2({"accessToken": "a", "tokenType": v}),
        f"{CRED}.credential.data.oauth2Token.tokenType",
    ),
    (lambda v: oauth1(v), f"{CRED}.credential.data.oauth1Token.additionalParams[0].value"),
]


def problems_of(credential: dict[str, Any]) -> list[str]:
    return config_problems(
        {"connections": [connection("c", "https://api.example.com", credential)]}
    )


@pytest.mark.parametrize("char", BAD, ids=[repr(c) for c in BAD])
@pytest.mark.parametrize(("make", "field"), PLACES)
def test_a_control_character_bound_for_a_header_is_refused_at_its_field(
    make: Any, field: str, char: str
) -> None:
    value = f"{CANARY}{char}X-Injected: 1"
    [line] = problems_of(make(value))
    assert line.startswith(f"{field}: contains a control character")
    assert f"position {len(CANARY)}" in line
    assert CANARY not in line


@pytest.mark.parametrize("char", BAD, ids=[repr(c) for c in BAD])
def test_encoded_placements_keep_accepting_them(char: str) -> None:
    # Percent-encoded (query), base64 (Basic), only a digest on the wire (HMAC).
    hmac = {
        "authSchemeConfig": {
            "type": "hmac",
            "hmac": {"name": "X-Sig", "in": "header", "algorithm": "sha256", "encoding": "hex"},
        },
        "credential": {"type": "string", "data": {"string": {"value": f"k{char}"}}},
    }
    tree = {
        "connections": [
            connection(
                "c",
                "https://api.example.com",
                api_key("key", "query", f"{CANARY}{char}"),
                basic("user", f"pw{char}"),
                hmac,
            )
        ]
    }
    assert len(build_runtime(tree, {}).connections) == 1


@pytest.mark.parametrize("name", ["X Key", "X-Key\r\n", "", "X:Key", "Ключ"])
def test_a_header_name_must_be_a_token(name: str) -> None:
    problems = problems_of(api_key(name, "header", "v"))
    assert [p.split(":")[0] for p in problems] == [f"{CRED}.authSchemeConfig.apiKey.name"]


def test_check_and_run_refuse_a_secret_file_with_a_blank_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `${file:...}` strips one trailing newline; a second one (an editor's blank line) stays.
    secret = tmp_path / "token"
    secret.write_bytes(f"{CANARY}\n\n".encode())
    config = tmp_path / "proxy.yaml"
    config.write_text(
        "connections:\n"
        "  - name: github\n"
        "    baseUrl: https://api.github.com\n"
        "    credentials:\n"
        "      - authSchemeConfig: {type: bearer}\n"
        "        credential: {type: string, data: {string: {value: '${file:"
        f"{secret}"
        "}'}}}\n",
        encoding="utf-8",
    )
    for args in (["check"], ["run", "--listen", "127.0.0.1:0"]):
        assert main([*args, "--config", str(config)]) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"{CRED}.credential.data.string.value: contains a control character")
        assert CANARY not in out + err
