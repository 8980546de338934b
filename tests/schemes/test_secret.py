"""`secret`: the swap itself, the guard's rules, and the configuration around them — `check`
errors at the field, the secret never in `check`/`explain` output, `repr()`, logs or API reads
(docs/placeholders.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.connections.placeholders import PlaceholderMisdirected, build_guard
from proxy.connections.runtime import Runtime, build_runtime
from proxy.messages import OutboundRequest
from proxy.schemes.base import DEFAULT_CONTEXT
from proxy.schemes.secret import SecretScheme
from tests.builders import bearer, config_problems, connection
from tests.placeholder import CONFIG, secret

PLACEHOLDER = "sk-proj-placeholder-a1"
CANARY = "sk-live-CANARY-secret-51c3"
CRED = "connections[0].credentials[0]"


def runtime(*connections: dict[str, Any], **top: Any) -> Runtime:
    return build_runtime({"connections": list(connections), **top}, {})


def problems(*connections: dict[str, Any], **top: Any) -> list[str]:
    found = config_problems({"connections": list(connections), **top})
    assert CANARY not in "\n".join(found)
    return found


def outbound(*headers: tuple[str, str]) -> OutboundRequest:
    return OutboundRequest("GET", "https://api.example.com", "/v1", "", headers)


def scheme_of(value: Runtime) -> SecretScheme:
    [found] = value.connections[0].schemes
    assert isinstance(found, SecretScheme)
    return found


# --- the swap ------------------------------------------------------------------------------


def test_the_placeholder_is_swapped_as_a_whole_value_or_a_token() -> None:
    scheme = scheme_of(
        runtime(
            connection(
                "ai",
                "https://api.example.com",
                secret(PLACEHOLDER, ["Authorization", "X-Key"], CANARY),
            )
        )
    )
    request = outbound(
        ("authorization", f"Bearer {PLACEHOLDER}"), ("X-Key", PLACEHOLDER), ("X-Other", "1")
    )
    sent = request.patched(scheme.sign(request, DEFAULT_CONTEXT))
    assert sent.header("Authorization") == f"Bearer {CANARY}"
    assert sent.header("X-Key") == CANARY
    assert sent.header("X-Other") == "1"
    # Nothing to swap: nothing changes (a declared header without it goes up as sent).
    untouched = outbound(("X-Key", "the client's own"))
    assert scheme.sign(untouched, DEFAULT_CONTEXT).headers == {}


def test_the_secret_is_in_no_repr_or_description() -> None:
    built = runtime(
        connection("ai", "https://api.example.com", secret(PLACEHOLDER, ["Authorization"], CANARY))
    )
    scheme = scheme_of(built)
    for text in (repr(scheme), str(scheme.describe()), repr(built), repr(built.config)):
        assert CANARY not in text
    assert scheme.describe() == {
        "type": "secret",
        "placeholder": PLACEHOLDER,
        "headers": ["Authorization"],
    }


def test_the_declared_header_is_not_dropped_as_owned() -> None:
    # A credential that authenticates owns Authorization (the client's copy is dropped); the
    # one `secret` reads must reach it, and the lean path (constant headers) is not taken.
    built = runtime(
        connection("ai", "https://api.example.com", secret(PLACEHOLDER, ["Authorization"], CANARY))
    )
    compiled = built.connections[0]
    assert "authorization" not in compiled.owned_headers
    assert compiled.lean is None


# --- the guard ----------------------------------------------------------------------------


def test_no_secret_connection_means_no_guard() -> None:
    # The request path then checks nothing at all (one `is None`).
    assert (
        runtime(connection("plain", "https://api.example.com", bearer("t-1"))).placeholders is None
    )


def test_the_guard_prefers_the_longer_of_two_overlapping_placeholders() -> None:
    built = runtime(
        connection("a", "https://a.example.com", secret("ph-shared-1", ["X-Key"], "s-a-1")),
        connection("b", "https://b.example.com", secret("ph-shared-12", ["X-Key"], "s-b-1")),
    )
    guard = build_guard(built.connections)
    assert guard is not None
    a, b = (c.id for c in built.connections)
    guard.check(b, "/b/x", [(b"X-Key", b"ph-shared-12")])
    guard.check(a, "/a/x", [(b"X-Key", b"ph-shared-1")])
    with pytest.raises(PlaceholderMisdirected):
        guard.check(a, "/a/x", [(b"X-Key", b"ph-shared-12")])
    with pytest.raises(PlaceholderMisdirected):
        guard.check(a, "/a/x?k=ph%2Dshared%2D1", [])
    with pytest.raises(PlaceholderMisdirected):
        guard.check(a, "/a/x?k=ph-shared-1+", [])


# --- check --------------------------------------------------------------------------------


def test_check_names_each_field() -> None:
    def entry(placeholder: str, headers: list[str], value: str = CANARY) -> dict[str, Any]:
        return connection("ai", "https://api.example.com", secret(placeholder, headers, value))

    here = f"{CRED}.authSchemeConfig.secret"
    [short] = problems(entry("ph-1", ["Authorization"]))
    assert short.startswith(f"{here}.placeholder: must be at least 8 characters")
    [spaced] = problems(entry("place holder", ["Authorization"]))
    assert spaced.startswith(f"{here}.placeholder: must be one token of visible ASCII")
    [same] = problems(entry(CANARY, ["Authorization"]))
    assert same == f"{here}.placeholder: must differ from the secret"
    [name] = problems(entry(PLACEHOLDER, ["X Key"]))
    assert name.startswith(f"{here}.headers[0]: must be a header name")
    [hop] = problems(entry(PLACEHOLDER, ["Authorization", "Host"]))
    assert hop == f"{here}.headers[1]: a header the proxy never forwards as sent"
    [control] = problems(entry(PLACEHOLDER, ["Authorization"], CANARY + "\n"))
    assert control.startswith(f"{CRED}.credential.data.string.value: contains a control character")
    [missing] = problems(
        connection(
            "ai",
            "https://api.example.com",
            {
                "authSchemeConfig": {"type": "secret", "secret": {"placeholder": PLACEHOLDER}},
                "credential": {"type": "string", "data": {"string": {"value": CANARY}}},
            },
        )
    )
    assert missing == f"{here}.headers: required"
    [wrong_type] = problems(
        connection(
            "ai",
            "https://api.example.com",
            {
                "authSchemeConfig": {
                    "type": "secret",
                    "secret": {"placeholder": PLACEHOLDER, "headers": ["Authorization"]},
                },
                "credential": {"type": "basic-auth", "data": {"basicAuth": {"username": CANARY}}},
            },
        )
    )
    assert (
        wrong_type == f"{CRED}.credential.type: scheme 'secret' needs a credential of type 'string'"
    )


def test_check_refuses_ambiguous_placeholders_and_clashing_headers() -> None:
    twice = problems(
        connection("a", "https://a.example.com", secret(PLACEHOLDER, ["X-Key"], CANARY)),
        connection("b", "https://b.example.com", secret(PLACEHOLDER, ["X-Key"], "other-secret-1")),
    )
    assert twice == [
        "connections[1].credentials[0].authSchemeConfig.secret.placeholder: already the "
        f"placeholder of {CRED}.authSchemeConfig.secret"
    ]
    api_key = {
        "authSchemeConfig": {"type": "api-key", "apiKey": {"name": "X-Key", "in": "header"}},
        "credential": {"type": "string", "data": {"string": {"value": "k-canary-2"}}},
    }
    [clash] = problems(
        connection("a", "https://a.example.com", api_key, secret(PLACEHOLDER, ["x-key"], CANARY))
    )
    assert clash == (
        "connections[0].credentials[1].authSchemeConfig.secret.headers[0]: "
        "set by credentials[0] of this connection"
    )


def test_a_template_may_not_hold_a_secret_scheme() -> None:
    template = {
        "id": "ai",
        "baseUrl": "https://api.example.com",
        "authSchemeConfigs": [
            {"type": "secret", "secret": {"placeholder": PLACEHOLDER, "headers": ["X-Key"]}}
        ],
    }
    [refused] = problems(templates=[template])
    assert refused.startswith("templates[0].authSchemeConfigs[0].type: 'secret' is bound to")


def test_seed_shape_base_fields_and_go_zero_siblings_are_read() -> None:
    # SPEC: the base fields on the sub-object, the other sub-objects empty or null.
    entry = secret(PLACEHOLDER, ["Authorization"], CANARY)
    entry["authSchemeConfig"]["secret"] |= {
        "id": "",
        "description": "agent key",
        "validationMessages": None,
    }
    entry["authSchemeConfig"] |= {"apiKey": None, "hmac": {}, "none": {"id": ""}}
    entry["credential"] |= {"id": "", "name": "", "errors": [], "expiresAt": ""}
    scheme_of(runtime(connection("ai", "https://api.example.com", entry)))
    entry["authSchemeConfig"]["bearer"] = {"id": "x1"}
    [sibling] = problems(connection("ai", "https://api.example.com", entry))
    assert sibling.startswith(f"{CRED}.authSchemeConfig.bearer: only the object named by `type`")


# --- the CLI and the API ------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AI_KEY", CANARY)
    path = tmp_path / "proxy.yaml"
    path.write_text(CONFIG.format(base="https://api.example.com", placeholder=PLACEHOLDER))
    return path


def test_check_and_explain_never_print_the_secret(
    config_file: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert main(["check", "--config", str(config_file)]) == 0
    args = ["explain", "--config", str(config_file), "GET", "/ai/v1/models"]
    assert main([*args, "-H", f"Authorization: Bearer {PLACEHOLDER}"]) == 0
    out, err = capsys.readouterr()
    # The swap is shown (the secret masked where it went), with the scheme's facts.
    assert "Authorization: Bearer ****" in out and PLACEHOLDER in out
    assert CANARY not in out + err
    # A misdirected placeholder is refused by explain as by the proxy, naming no value.
    assert main([*args + ["-H", f"X-Debug: {PLACEHOLDER}"]]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("explain: placeholder_misdirected:")
    assert CANARY not in out + err + caplog.text
    # A file with a problem: named, the secret not.
    config_file.write_text(CONFIG.format(base="https://api.example.com", placeholder=CANARY))
    assert main(["check", "--config", str(config_file)]) == 2
    out, err = capsys.readouterr()
    assert f"{CRED}.authSchemeConfig.secret.placeholder: must differ from the secret" in err
    # The message names the field; the value itself (here the placeholder) is not repeated.
    assert CANARY not in out + err
