"""`${VAR}`, `${VAR:-default}`, `${file:PATH}` and `$${` in proxy.yaml (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.config.models import StringCredential
from proxy.connections.runtime import Runtime, build_runtime
from tests.builders import basic, bearer, config_problems, connection


def bearer_config(value: str, **extra: Any) -> dict[str, Any]:
    return {"connections": [connection("api", "https://api.example.com", bearer(value))], **extra}


def token_of(runtime: Runtime) -> str:
    credential = runtime.config.connections[0].credentials[0].credential
    assert isinstance(credential, StringCredential)
    return credential.data.string.value.get_secret_value()


TOKEN_PATH = "connections[0].credentials[0].credential.data.string.value"


def test_variable_is_replaced_inside_a_longer_string() -> None:
    runtime = build_runtime(bearer_config("pre-${TOKEN}-post"), {"TOKEN": "tok"})
    assert token_of(runtime) == "pre-tok-post"


def test_default_used_only_when_the_variable_is_unset() -> None:
    tree = bearer_config("${TOKEN:-fallback}")
    assert token_of(build_runtime(tree, {})) == "fallback"
    assert token_of(build_runtime(tree, {"TOKEN": "set"})) == "set"
    # Set but empty is set: shell `:-` would take the default, but an empty secret is a value
    # the seed allows (Stripe's empty password), so the environment wins.
    assert token_of(build_runtime(tree, {"TOKEN": ""})) == ""


def test_empty_default_is_allowed() -> None:
    assert token_of(build_runtime(bearer_config("${TOKEN:-}"), {})) == ""


def test_unset_variable_names_the_variable_and_the_field() -> None:
    assert config_problems(bearer_config("${GITHUB_TOKEN}"), {}) == [
        f"{TOKEN_PATH}: environment variable GITHUB_TOKEN is not set"
    ]


def test_every_unset_variable_is_reported_at_once() -> None:
    tree = {
        "listen": "${HOST}:${PORT}",
        "connections": [connection("a", "https://a.example", bearer("${A_TOKEN}"))],
    }
    assert config_problems(tree, {}) == [
        "listen: environment variable HOST is not set",
        "listen: environment variable PORT is not set",
        f"{TOKEN_PATH}: environment variable A_TOKEN is not set",
    ]


def test_file_content_with_one_trailing_newline_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n", encoding="utf-8")
    tree = bearer_config(f"${{file:{secret}}}")
    assert token_of(build_runtime(tree, {})) == "from-file"
    # Only one: a second newline is part of the content (which a header cannot carry).
    secret.write_text("two\n\n", encoding="utf-8")
    [message] = config_problems(tree, {})
    assert message.startswith(f"{TOKEN_PATH}: contains a control character (CR, LF, NUL, ...)")
    assert "at position 3," in message
    secret.write_text("none", encoding="utf-8")
    assert token_of(build_runtime(tree, {})) == "none"


def test_missing_file_is_an_error_at_the_field(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    [message] = config_problems(bearer_config(f"${{file:{missing}}}"), {})
    assert message.startswith(f"{TOKEN_PATH}: cannot read secret file {missing}")


def test_double_dollar_escapes_a_literal() -> None:
    runtime = build_runtime(bearer_config("a$${NOT_A_VAR}b"), {})
    assert token_of(runtime) == "a${NOT_A_VAR}b"


def test_values_from_the_environment_are_not_interpolated_again() -> None:
    # A secret that happens to contain `${...}` must arrive as it is.
    runtime = build_runtime(bearer_config("${TOKEN}"), {"TOKEN": "x${HOME}y"})
    assert token_of(runtime) == "x${HOME}y"


def test_interpolation_reaches_every_string_including_lists_and_nested_keys() -> None:
    tree = {
        "listen": "127.0.0.1:${PORT:-9000}",
        "connections": [
            connection("${NAME}", "https://${HOST}/v1", basic("${USER}", "${PASSWORD:-}"))
        ],
    }
    env = {"NAME": "svc", "HOST": "svc.example.com", "USER": "me", "PORT": "8181"}
    runtime = build_runtime(tree, env)
    assert runtime.config.listen == "127.0.0.1:8181"
    [compiled] = runtime.connections
    assert (compiled.name, compiled.route, compiled.base.origin, compiled.base.path) == (
        "svc",
        "/svc",
        "https://svc.example.com",
        "/v1",
    )


@pytest.mark.parametrize("text", ["${}", "${1ABC}", "${A-B}", "${SOME VALUE}"])
def test_bad_expression_is_an_error_that_does_not_echo_it(text: str) -> None:
    [message] = config_problems(bearer_config(text), {})
    assert message.startswith(f"{TOKEN_PATH}: bad interpolation")
    inner = text[2:-1]
    if inner:
        assert inner not in message
