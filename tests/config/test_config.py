"""Validation of proxy.yaml (docs/configuration.md): field paths, unknown keys, compatibility,
routes, ids."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import pytest
from ulid import ULID

from proxy.config.load import ConfigInvalid, parse_yaml
from proxy.config.models import ProxyConfig
from proxy.connections.runtime import build_runtime
from proxy.messages import OutboundRequest
from proxy.schemes.base import DEFAULT_CONTEXT
from tests.builders import api_key, basic, bearer, config_problems, connection

CRED = "connections[0].credentials[0]"


def one(*credentials: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"connections": [connection("api", "https://api.example.com", *credentials, **extra)]}


# --- scheme / credential compatibility (docs/configuration.md) ------------------------------

SCHEMES: dict[str, dict[str, Any]] = {
    "none": {"type": "none"},
    "api-key": {"type": "api-key", "apiKey": {"name": "X-Key", "in": "header"}},
    "bearer": {"type": "bearer"},
    "basic-auth": {"type": "basic-auth"},
    "hmac": {
        "type": "hmac",
        "hmac": {
            "name": "X-Sig",
            "in": "header",
            "algorithm": "sha256",
            "digestInputs": ["body"],
            "encoding": "hex",
        },
    },
    "certificate": {"type": "certificate"},
    "oauth1": {
        "type": "oauth1",
        "oauth1": {
            "consumerKey": "ck",
            "consumerSecret": "cs",
            "signatureMethod": "sha256",
            "tokenAuth": True,
        },
    },
    **{
        f"oauth2/{grant}": {
            "type": "oauth2",
            "oauth2": {
                "tokenUrl": "https://auth.example.com/token",
                "grant": {"type": grant, **({grant: {"clientId": "c"}} if pair else {})},
            },
        }
        for grant, pair in [
            ("authorizationCode", True),
            ("clientCredentials", False),
            ("password", True),
        ]
    },
}

CREDENTIALS: dict[str, dict[str, Any]] = {
    "none": {"type": "none"},
    "string": {"type": "string", "data": {"string": {"value": "v"}}},
    "binary": {"type": "binary", "data": {"binary": {"valueBase64": "dg=="}}},
    "basic-auth": {"type": "basic-auth", "data": {"basicAuth": {"username": "u", "password": "p"}}},
    "certificate": {
        "type": "certificate",
        "data": {"certificate": {"certificate": "c", "key": "k"}},
    },
    "oauth1-token": {
        "type": "oauth1-token",
        "data": {"oauth1Token": {"token": "t", "tokenSecret": "s"}},
    },
    "oauth2-token": {"type": "oauth2-token", "data": {"oauth2Token": {"accessToken": "a"}}},
    "oauth2-client": {"type": "oauth2-client", "data": {"oauth2Client": {"clientId": "c"}}},
    "oauth2-password": {
        "type": "oauth2-password",
        "data": {"oauth2Password": {"username": "u", "password": "p"}},
    },
}

# The table of docs/configuration.md, written out here rather than read from the code under test.
COMPATIBLE = {
    ("none", "none"),
    ("api-key", "string"),
    ("bearer", "string"),
    ("basic-auth", "basic-auth"),
    ("hmac", "string"),
    ("hmac", "binary"),
    ("certificate", "certificate"),
    ("oauth1", "oauth1-token"),
    ("oauth2/authorizationCode", "oauth2-token"),
    ("oauth2/clientCredentials", "oauth2-client"),
    ("oauth2/password", "oauth2-password"),
}
MISMATCHED = sorted(set(itertools.product(SCHEMES, CREDENTIALS)) - COMPATIBLE)


def entry(scheme: str, credential: str) -> dict[str, Any]:
    return {"authSchemeConfig": SCHEMES[scheme], "credential": CREDENTIALS[credential]}


@pytest.mark.parametrize(("scheme", "credential"), MISMATCHED)
def test_every_mismatch_is_an_error_at_credential_type(scheme: str, credential: str) -> None:
    found = config_problems(one(entry(scheme, credential)))
    assert len(found) == 1
    assert found[0].startswith(f"{CRED}.credential.type: ")


@pytest.mark.parametrize(("scheme", "credential"), sorted(COMPATIBLE))
def test_compatible_pairs_pass_the_compatibility_check(scheme: str, credential: str) -> None:
    try:
        build_runtime(one(entry(scheme, credential)), {})
    except ConfigInvalid as exc:
        # A scheme may have further requirements of its own (a PEM, a base64 value); only the
        # pairing is checked here.
        assert all(p.field != f"{CRED}.credential.type" for p in exc.problems)


def test_mismatch_in_a_later_entry_names_its_index() -> None:
    tree = {
        "connections": [
            connection("a", "https://a.example", bearer("t")),
            connection("b", "https://b.example", bearer("t"), entry("bearer", "basic-auth")),
        ]
    }
    assert config_problems(tree) == [
        "connections[1].credentials[1].credential.type: "
        "scheme 'bearer' needs a credential of type 'string'"
    ]


# --- unknown keys and shapes ---------------------------------------------------------------


def test_unknown_keys_are_rejected_with_their_path() -> None:
    credential = api_key("X-Key", "header", "v")
    credential["authSchemeConfig"]["apiKey"]["inn"] = "header"
    tree = one(credential, credentialz=[])
    tree["listn"] = "127.0.0.1:1"
    tree["timeouts"] = {"conect": 1}
    assert sorted(config_problems(tree)) == [
        f"{CRED}.authSchemeConfig.apiKey.inn: unknown key (did you mean in?)",
        "connections[0].credentialz: unknown key (did you mean credentials?)",
        "listn: unknown key (did you mean listen?)",
        "timeouts.conect: unknown key (did you mean connect?)",
    ]


def test_bad_api_key_location_names_the_exact_field() -> None:
    tree = {
        "connections": [
            connection("a", "https://a.example", bearer("t")),
            connection("b", "https://b.example", api_key("k", "body", "v")),
        ]
    }
    [message] = config_problems(tree)
    assert message.startswith("connections[1].credentials[0].authSchemeConfig.apiKey.in: ")
    assert "'header'" in message and "'query'" in message and "'cookie'" in message


def test_missing_and_unknown_types_point_at_the_type_field() -> None:
    missing = {"authSchemeConfig": {}, "credential": CREDENTIALS["none"]}
    unknown = {"authSchemeConfig": {"type": "bearer"}, "credential": {"type": "token"}}
    assert config_problems(one(missing)) == [f"{CRED}.authSchemeConfig.type: required"]
    [message] = config_problems(one(unknown))
    assert message.startswith(f"{CRED}.credential.type: unknown type; expected 'none', 'string'")


def test_missing_credential_parts_are_named() -> None:
    no_credential = {"authSchemeConfig": {"type": "bearer"}}
    wrong_data = {
        "authSchemeConfig": {"type": "bearer"},
        "credential": {"type": "string", "data": {"basicAuth": {"username": "u"}}},
    }
    assert config_problems(one(no_credential)) == [f"{CRED}.credential: required"]
    assert sorted(config_problems(one(wrong_data))) == [
        # The seed's rule: an object `type` does not select must be {} or null.
        f"{CRED}.credential.data.basicAuth: only the object named by `type` is read: "
        "this one must be {} or null",
        f"{CRED}.credential.data.string: required",
    ]


def test_a_number_where_a_secret_string_belongs_asks_for_quotes() -> None:
    # YAML reads `value: 0123` as the integer 83: refusing it beats sending the wrong key.
    tree = parse_yaml(
        "connections:\n"
        "  - name: api\n"
        "    baseUrl: https://api.example.com\n"
        "    credentials:\n"
        "      - authSchemeConfig: {type: bearer}\n"
        "        credential: {type: string, data: {string: {value: 0123}}}\n"
    )
    [message] = config_problems(tree)
    assert message == (
        f"{CRED}.credential.data.string.value: "
        "must be a string (put numbers, booleans and dates in quotes)"
    )


def test_a_key_given_twice_in_the_yaml_is_an_error() -> None:
    text = "connections: []\nlisten: 127.0.0.1:1\nconnections: []\n"
    with pytest.raises(ConfigInvalid) as caught:
        parse_yaml(text)
    assert [str(p) for p in caught.value.problems] == ["line 3, column 1: duplicate key"]


def test_yaml_merge_keys_may_still_be_overridden() -> None:
    tree = parse_yaml("base: &b {level: info}\nlog:\n  <<: *b\n  level: debug\n")
    assert tree["log"] == {"level": "debug"}


def test_all_problems_are_reported_together() -> None:
    tree: dict[str, Any] = {
        "listen": "nowhere",
        "connections": [
            connection("a", "ftp://a.example", api_key("k", "body", "v")),
            connection("b", "https://b.example", entry("bearer", "none")),
        ],
    }
    fields = [p.split(": ", 1)[0] for p in config_problems(tree)]
    assert sorted(fields) == [
        "connections[0].credentials[0].authSchemeConfig.apiKey.in",
        "listen",
    ]
    # Compilation problems (baseUrl, compatibility) come once the shapes are valid.
    tree["listen"] = "127.0.0.1:1"
    tree["connections"][0]["credentials"] = [bearer("t")]
    fields = [p.split(": ", 1)[0] for p in config_problems(tree)]
    assert fields == ["connections[0].baseUrl", "connections[1].credentials[0].credential.type"]


# --- oauth2 mtlsEnabled ---------------------------------------------------------------------


def test_mtls_enabled_without_a_certificate_credential_is_a_config_error() -> None:
    oauth2 = {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {
                "tokenUrl": "https://auth.example.com/token",
                "mtlsEnabled": True,
                "grant": {"type": "clientCredentials"},
            },
        },
        "credential": {"type": "oauth2-client", "data": {"oauth2Client": {"clientId": "c"}}},
    }
    assert config_problems(one(bearer("unrelated"), oauth2)) == [
        "connections[0].credentials[1].authSchemeConfig.oauth2.mtlsEnabled: "
        "needs a 'certificate' credential on the same connection"
    ]


# --- basic-auth ----------------------------------------------------------------------------


def test_basic_auth_username_with_a_colon_is_an_error() -> None:
    assert config_problems(one(basic("user:name", "pw"))) == [
        f"{CRED}.credential.data.basicAuth.username: must not contain ':'"
    ]


def authorization_sent(tree: dict[str, Any]) -> str | None:
    [compiled] = build_runtime(tree, {}).connections
    request = OutboundRequest("GET", compiled.base.origin, "/", "", ())
    [scheme] = compiled.schemes
    return request.patched(scheme.sign(request, DEFAULT_CONTEXT)).header("Authorization")


@pytest.mark.parametrize("password", ["", None])
def test_empty_or_absent_password_is_valid_stripe_style(password: str | None) -> None:
    credential = basic("sk_test_key", "")
    if password is None:
        del credential["credential"]["data"]["basicAuth"]["password"]
    expected = "Basic " + base64.b64encode(b"sk_test_key:").decode()
    assert authorization_sent(one(credential)) == expected


# --- names, routes, baseUrl, listen --------------------------------------------------------


def test_duplicate_names_are_reported_once_at_the_name() -> None:
    tree = {
        "connections": [
            connection("api", "https://a.example"),
            connection("api", "https://b.example"),
        ]
    }
    assert config_problems(tree) == ["connections[1].name: duplicate of connections[0]"]


def test_duplicate_routes_including_a_trailing_slash() -> None:
    tree = {
        "connections": [
            connection("a", "https://a.example", route="/shared"),
            connection("b", "https://b.example", route="/shared/"),
            connection("shared", "https://c.example"),
        ]
    }
    assert config_problems(tree) == [
        "connections[1].route: route already used by connections[0]",
        "connections[2].route: route already used by connections[0]",
    ]


@pytest.mark.parametrize(
    "extra", [{"route": "/healthz"}, {"route": "/healthz/"}, {"name": "healthz"}]
)
def test_reserved_route_is_refused(extra: dict[str, str]) -> None:
    tree = {"connections": [{**connection("api", "https://a.example"), **extra}]}
    assert config_problems(tree) == ["connections[0].route: /healthz is reserved"]


@pytest.mark.parametrize(
    "route", ["api", "/a?b", "/a#b", "/a%2Fb", "/a//b", "/a/../b", "/a/./b", "/a b"]
)
def test_bad_routes_are_refused(route: str) -> None:
    [message] = config_problems(one(route=route))
    assert message.startswith("connections[0].route: ")


@pytest.mark.parametrize(
    "base_url",
    [
        "api.example.com",
        "ftp://api.example.com",
        "https://",
        "https://api.example.com/?q=1",
        "https://api.example.com/#x",
        "https://user:pw@api.example.com",
        "https://api.example.com:99999",
        "",
    ],
)
def test_bad_base_url_is_refused(base_url: str) -> None:
    tree = {"connections": [connection("api", base_url)]}
    [message] = config_problems(tree)
    assert message.startswith("connections[0].baseUrl: ")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("listen", "8080"),
        ("listen", "localhost"),
        ("listen", ":8080"),
        ("listen", "127.0.0.1:99999"),
        ("listen", "127.0.0.1:80a"),
        ("listen", "::1:8080"),
        ("admin.listen", "127.0.0.1"),
        ("admin.listen", "0.0.0.0:-1"),
    ],
)
def test_bad_listen_address_is_a_config_error(field: str, value: str) -> None:
    tree: dict[str, Any] = (
        {"admin": {"listen": value}} if field == "admin.listen" else {field: value}
    )
    [message] = config_problems(tree)
    assert message.startswith(f"{field}: ")


@pytest.mark.parametrize("value", ["127.0.0.1:8080", "0.0.0.0:0", "[::1]:8080", "localhost:1"])
def test_good_listen_addresses(value: str) -> None:
    admin = {"listen": value, "token": "admin-token"}
    runtime = build_runtime({"listen": value, "admin": admin}, {})
    assert runtime.config.listen == value


# --- defaults and derived values -----------------------------------------------------------


def test_defaults_of_an_empty_file() -> None:
    config = build_runtime({}, {}).config
    assert config.listen == "127.0.0.1:8080"
    assert config.admin is None
    assert (config.limits.max_body_bytes, config.limits.memory_body_bytes) == (100 << 20, 1 << 20)
    assert config.limits.replay_body_bytes == 1 << 20
    assert (config.timeouts.connect, config.timeouts.read, config.timeouts.shutdown_grace) == (
        10,
        60,
        30,
    )
    assert config.forwarded_headers is False
    assert (config.log.level, config.log.format) == ("info", "text")
    # docs/design.md documents this exact default organisation id.
    assert config.organisation_id == "01JAAAAAAAAAAAAAAAAAAAAAAA"
    assert build_runtime(None, {}).connections == ()


def test_route_defaults_to_the_name_and_ids_are_derived_stably() -> None:
    tree = {
        "connections": [
            connection("github", "https://api.github.com", bearer("t"), bearer("u")),
            connection("given", "https://a.example", {**bearer("t"), "id": "cred-1"}, id="conn-1"),
        ]
    }
    first, second = build_runtime(tree, {}).connections, build_runtime(tree, {}).connections
    github, given = first
    assert github.route == "/github"
    assert (given.id, given.schemes[0].credential_id) == ("conn-1", "cred-1")

    # Derived ids are ULIDs (the seed's format), the same on every load, and distinct per
    # connection, credential and scheme config.
    def ids(connection: Any) -> list[str]:
        entries = connection.model.credentials
        schemes = [e.auth_scheme_config.bearer.id for e in entries]
        return [connection.id, *(s.credential_id for s in connection.schemes), *schemes]

    assert all(ULID.from_str(i) for i in ids(github)) and len(set(ids(github))) == 5
    assert ids(github) == ids(second[0])


def test_client_authorization_is_owned_unless_the_connection_opts_out() -> None:
    tree = {
        "connections": [
            connection("signed", "https://a.example", api_key("X-Key", "header", "v")),
            connection(
                "pass",
                "https://b.example",
                api_key("X-Key", "header", "v"),
                forwardClientAuthorization=True,
            ),
            connection("open", "https://c.example", {**entry("none", "none")}),
        ]
    }
    signed, passing, public = build_runtime(tree, {}).connections
    assert signed.owned_headers == {"x-key", "authorization"}
    assert passing.owned_headers == {"x-key"}
    assert public.owned_headers == frozenset()


def test_config_models_accept_the_seed_camel_case_and_dump_it_back() -> None:
    tree = one(api_key("X-Key", "query", "v"), rewriteResponseUrls=False)
    config = ProxyConfig.model_validate(tree)
    dumped = config.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert dumped["connections"][0]["rewriteResponseUrls"] is False
    assert dumped["connections"][0]["credentials"][0]["authSchemeConfig"] == {
        "type": "api-key",
        "apiKey": {"name": "X-Key", "in": "query"},
    }
