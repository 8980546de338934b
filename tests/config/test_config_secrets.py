"""docs/security.md invariant 2 for configuration: no secret value in any config error or `repr()`.

Every secret field holds a distinctive canary; the config is then broken in the ways a user
breaks it (a YAML syntax error on the secret's line, a secret in a field that fails validation,
an invalid sibling) and every message, and the `repr()` of what a valid config builds, is
searched for the canaries.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from proxy.config.load import ConfigInvalid, parse_yaml
from proxy.config.models import ProxyConfig
from proxy.connections.runtime import build_runtime
from tests.builders import api_key, basic, bearer, config_problems, connection

CANARY = "CANARYq7Zx"  # every secret below contains this; no message may


def canary(field: str) -> str:
    return f"{CANARY}-{field}"


def static_tree() -> dict[str, Any]:
    """Only schemes that need no network or files: buildable into a Runtime."""
    return {
        "admin": {"listen": "127.0.0.1:8081", "token": canary("admin")},
        "store": {"path": "state.db", "key": canary("store")},
        "connections": [
            connection(
                "static",
                "https://api.example.com",
                bearer(canary("bearer")),
                api_key("X-Key", "header", canary("header-key")),
                api_key("key", "query", canary("query-key")),
                api_key("session", "cookie", canary("cookie-key")),
            ),
            # Stripe: the secret key is the username.
            connection("stripe", "https://api.stripe.com", basic(canary("username"), "")),
            connection("basic", "https://b.example.com", basic("user", canary("password"))),
        ],
    }


def every_secret_tree() -> dict[str, Any]:
    """Every secret field the models have, for model-level checks."""
    tree = static_tree()

    def add(auth: dict[str, Any], credential: dict[str, Any]) -> None:
        entry = {"authSchemeConfig": auth, "credential": credential}
        tree["connections"][0]["credentials"].append(entry)

    add(
        {
            "type": "hmac",
            "hmac": {"name": "X-Sig", "in": "header", "algorithm": "sha1", "encoding": "hex"},
        },
        {"type": "binary", "data": {"binary": {"valueBase64": canary("binary")}}},
    )
    add(
        {
            "type": "oauth1",
            "oauth1": {
                "consumerKey": "ck",  # not a secret (the seed shows it)
                "consumerSecret": canary("cs"),
                "signatureMethod": "sha256",
                "tokenAuth": True,
            },
        },
        {
            "type": "oauth1-token",
            "data": {"oauth1Token": {"token": canary("t"), "tokenSecret": canary("ts")}},
        },
    )
    grant = {"type": "authorizationCode", "authorizationCode": {"clientId": "c"}}
    grant["authorizationCode"]["clientSecret"] = canary("code-secret")  # type: ignore[index]
    token = {"accessToken": canary("access"), "refreshToken": canary("refresh")}
    add(
        {"type": "oauth2", "oauth2": {"tokenUrl": "https://a.example/t", "grant": grant}},
        {"type": "oauth2-token", "data": {"oauth2Token": token}},
    )
    add(
        {"type": "oauth2", "oauth2": {"grant": {"type": "clientCredentials"}}},
        {
            "type": "oauth2-client",
            "data": {"oauth2Client": {"clientId": "c", "clientSecret": canary("client")}},
        },
    )
    pw_grant = {"type": "password", "password": {"clientId": "c", "clientSecret": canary("pw-c")}}
    add(
        {"type": "oauth2", "oauth2": {"grant": pw_grant}},
        {
            "type": "oauth2-password",
            "data": {"oauth2Password": {"username": "u", "password": canary("oauth-pw")}},
        },
    )
    add(
        {"type": "certificate"},
        {
            "type": "certificate",
            "data": {"certificate": {"certificate": "PEM", "key": canary("private-key")}},
        },
    )
    return tree


def assert_clean(texts: list[str]) -> None:
    assert texts, "expected messages to search"
    for text in texts:
        assert CANARY not in text, text


def test_the_canary_trees_hold_the_canary() -> None:
    # Guards the tests below against searching a tree without secrets.
    assert str(every_secret_tree()).count(CANARY) == 19


def test_repr_of_models_never_shows_a_secret() -> None:
    config = ProxyConfig.model_validate(every_secret_tree())
    assert_clean([repr(config), str(config)])
    # A dump is what the management API shows: the seed treats a basic-auth username as
    # non-secret (it is shown), every other secret is masked.
    assert_clean([config.model_dump_json().replace(canary("username"), "")])
    for c in config.connections:
        assert_clean([repr(c), *(repr(e) for e in c.credentials)])


def test_repr_of_the_runtime_and_schemes_never_shows_a_secret() -> None:
    runtime = build_runtime(static_tree(), {})
    schemes = [s for c in runtime.connections for s in c.schemes]
    assert len(schemes) == 6
    assert_clean([repr(runtime), str(runtime), *(repr(s) for s in schemes)])
    assert_clean([str(s.describe()) for s in schemes])


def test_an_invalid_sibling_does_not_bring_secrets_into_messages() -> None:
    tree = every_secret_tree()
    tree["listen"] = "nowhere"
    for entry in tree["connections"][0]["credentials"]:
        entry["unexpected"] = True
    assert_clean(config_problems(tree))


# Where a secret may land in a field that then fails validation.
MISPLACED = [
    ("listen",),
    ("admin", "listen"),
    ("log", "level"),
    ("timeouts", "connect"),
    ("limits", "maxBodyBytes"),
    ("connections", 0, "baseUrl"),
    ("connections", 0, "route"),
    ("connections", 0, "credentials", 1, "authSchemeConfig", "apiKey", "in"),
    ("connections", 0, "credentials", 0, "authSchemeConfig", "type"),
    ("connections", 0, "credentials", 0, "credential", "type"),
    ("connections", 0, "credentials", 0, "credential", "data", "string"),
]


@pytest.mark.parametrize("where", MISPLACED, ids=lambda w: ".".join(map(str, w)))
def test_a_secret_in_a_field_that_fails_validation_is_not_echoed(where: tuple[Any, ...]) -> None:
    tree = copy.deepcopy(static_tree())
    parent = tree
    for key in where[:-1]:
        parent = parent.setdefault(key, {}) if isinstance(key, str) else parent[key]
    parent[where[-1]] = canary("misplaced")
    assert_clean(config_problems(tree))


@pytest.mark.parametrize(
    "value",
    [
        f"https://user:{CANARY}@api.example.com",
        f"https://api.example.com:{CANARY}",
        f"https://[{CANARY}",
        f"{CANARY}://api.example.com",
    ],
)
def test_a_secret_in_a_bad_base_url_is_not_echoed(value: str) -> None:
    assert_clean(config_problems({"connections": [connection("api", value)]}))


def test_a_numeric_or_wrongly_typed_secret_is_not_echoed() -> None:
    tree = static_tree()
    tree["connections"][2]["credentials"][0]["credential"]["data"]["basicAuth"]["password"] = [
        CANARY
    ]
    tree["admin"]["token"] = {"value": CANARY}
    assert_clean(config_problems(tree))


def test_secret_shaped_interpolation_errors_are_not_echoed() -> None:
    tree = static_tree()
    tree["connections"][0]["credentials"][0]["credential"]["data"]["string"]["value"] = (
        f"${{{CANARY} pasted here}}"
    )
    assert_clean(config_problems(tree))


@pytest.mark.parametrize(
    "line",
    [
        f'value: "{CANARY}',  # unterminated quote
        f"value: '{CANARY}",
        f"value: *{CANARY}",  # a secret that starts with `*` reads as an alias
        f"value: !{CANARY} x",  # ... and with `!` as a tag
        f"value: &{CANARY}",
        f"value: [{CANARY}",
        f"value: {{{CANARY}",
        f"value: {CANARY}: extra: colon",
        f"value: `{CANARY}",
        f"value: @{CANARY}",
        f"value: {CANARY}\t\n\tnext: x",
        f"value: %{CANARY}",
    ],
)
def test_a_yaml_syntax_error_on_the_secret_line_is_not_echoed(line: str) -> None:
    text = (
        "connections:\n"
        "  - name: api\n"
        "    baseUrl: https://api.example.com\n"
        "    credentials:\n"
        "      - authSchemeConfig: {type: bearer}\n"
        "        credential:\n"
        "          type: string\n"
        "          data:\n"
        "            string:\n"
        f"              {line}\n"
    )
    try:
        tree = parse_yaml(text)
    except ConfigInvalid as exc:
        assert_clean([str(p) for p in exc.problems])
        return
    # Some of these are valid YAML; then validation must not echo the value either.
    try:
        build_runtime(tree, {})
    except ConfigInvalid as exc:
        assert_clean([str(p) for p in exc.problems])
