"""No secret in any message, whatever the input: the typo shapes people make in YAML and JSON.

The dangerous one: `data: {string: {value:SECRET}}` (no space after the colon) makes the secret
a *key*, and a plain "unknown key" line would print it. Each shape below carries a distinctive
canary; `check`, `run` and the admin API must report the right mapping and never the canary.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.config.load import parse_yaml
from tests.builders import config_problems

CANARY = "CANARYtypo5Qw"
CRED = "connections[0].credentials[0]"


def config(credential_yaml: str, extra: str = "") -> str:
    return (
        "connections:\n"
        "  - name: github\n"
        "    baseUrl: https://api.github.com\n"
        "    credentials:\n"
        "      - authSchemeConfig: {type: bearer}\n"
        f"        credential: {credential_yaml}\n" + extra
    )


# (YAML text, the field path the first problem must name). The secret lands in a key each time.
YAML_TYPOS = [
    # The reported one: no space after the colon in a flow mapping.
    (config(f"{{type: string, data: {{string: {{value:{CANARY}}}}}}}"), f"{CRED}.credential"),
    # The same with a quoted value, and with `=` as in an .env file.
    (config(f'{{type: string, data: {{string: {{value:"{CANARY}"}}}}}}'), f"{CRED}.credential"),
    (config(f"{{type: string, data: {{string: {{value={CANARY}}}}}}}"), f"{CRED}.credential"),
    (config(f"{{type: string, data: {{string: {{value= {CANARY}}}}}}}"), f"{CRED}.credential"),
    # A bare secret pasted into the mapping (a key that reads like a name).
    (config(f"{{type: string, data: {{string: {{{CANARY}}}}}}}"), f"{CRED}.credential"),
    # Key and value swapped.
    (config(f"{{type: string, data: {{string: {{{CANARY}: value}}}}}}"), f"{CRED}.credential"),
    # A secret as a key whose value is an unset variable: reported by interpolation, which
    # names fields before any validation.
    (
        config(f"{{type: string, data: {{string: {{{CANARY}: '${{UNSET_VAR}}'}}}}}}"),
        f"{CRED}.credential.data.string.<key>: environment variable UNSET_VAR is not set",
    ),
    # Pasted at the wrong level.
    (config(f"{{type: string, value:{CANARY}, data: {{string: {{value: x}}}}}}"), CRED),
    # Block style: the line becomes a string where a mapping belongs.
    (
        config(
            f"\n          type: string\n          data:\n            string:\n"
            f"              value:{CANARY}\n"
        ),
        f"{CRED}.credential.data.string",
    ),
    # Outside credentials: the admin token, the store key, a connection's own keys.
    (config("{type: string, data: {string: {value: x}}}", f"admin: {{token:{CANARY}}}\n"), "admin"),
    (config("{type: string, data: {string: {value: x}}}", f"store: {{key:{CANARY}}}\n"), "store"),
    (
        config(f"{{type: string, data: {{string: {{value: x}}}}}}\n    token:{CANARY}: 1"),
        "connections[0]",
    ),
    # OAuth 2.0 token and client secrets.
    (
        "connections:\n"
        "  - name: g\n"
        "    baseUrl: https://g.example\n"
        "    credentials:\n"
        "      - authSchemeConfig:\n"
        "          type: oauth2\n"
        "          oauth2: {tokenUrl: 'https://g.example/t', grant: {type: authorizationCode,"
        f" authorizationCode: {{clientId: c, clientSecret:{CANARY}}}}}}}\n"
        "        credential: {type: oauth2-token, data: {oauth2Token:"
        f" {{accessToken:{CANARY}}}}}}}\n",
        "connections[0].credentials[0]",
    ),
]


def messages(text: str) -> list[str]:
    return config_problems(parse_yaml(text))


@pytest.mark.parametrize(("text", "where"), YAML_TYPOS)
def test_a_secret_typed_as_a_key_is_never_printed(text: str, where: str) -> None:
    lines = messages(text)
    assert lines, "the typo must be reported"
    assert all(CANARY not in line for line in lines), lines
    # The problem still points at the mapping that holds the stray key.
    assert any(line.startswith(where) for line in lines), lines


def test_the_missing_space_is_named_as_the_likely_cause() -> None:
    lines = messages(config(f"{{type: string, data: {{string: {{value:{CANARY}}}}}}}"))
    assert lines == [
        f"{CRED}.credential.data.string.value: required",
        f"{CRED}.credential.data.string: unknown key"
        " (not shown: a mistyped value? the space after 'name:' missing?)",
    ]


def test_a_plain_unknown_key_is_still_named() -> None:
    # Field names stay visible: a typo of a field, or another mapping's field put in the
    # wrong place, is worth naming and is no secret.
    lines = messages(
        config("{type: string, data: {string: {valeu: x}, tokenUrl: {}}}", "listn: x\n")
    )
    # (`basicAuth: {}` itself is fine: the seeds leave unselected data objects empty.)
    assert f"{CRED}.credential.data.tokenUrl: unknown key" in lines
    assert "listn: unknown key (did you mean listen?)" in lines
    # `valeu` is no field name and sits next to secrets: not shown, but its mapping is.
    assert any(line.startswith(f"{CRED}.credential.data.string: unknown key (") for line in lines)


def test_check_and_run_print_no_canary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for index, (text, _) in enumerate(YAML_TYPOS):
        path = tmp_path / f"typo{index}.yaml"
        path.write_text(text, encoding="utf-8")
        assert main(["check", "--config", str(path)]) == 2
        out, err = capsys.readouterr()
        assert err and CANARY not in out + err
    # `run` as the user runs it: refused before binding, and no canary on either stream.
    path = tmp_path / "typo0.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "run", "--config", str(path), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown key" in result.stderr
    assert CANARY not in result.stdout + result.stderr
