"""`clients` and `policy` in proxy.yaml: what `check` refuses (field paths, no key in any
message), and `explain --client NAME METHOD PATH`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import main
from proxy.connections.access import AccessDenied
from proxy.connections.runtime import build_runtime
from tests.builders import bearer, config_problems, connection

KEY = "ck-CANARY-cfg-41b7"
OTHER = "ck-CANARY-cfg-9e02"


def tree(clients: list[dict[str, Any]], **policy: Any) -> dict[str, Any]:
    return {
        "clients": clients,
        "connections": [
            connection("github", "https://api.github.com", bearer("t1"), **policy),
            connection("stripe", "https://api.stripe.com", bearer("t2")),
        ],
        "templates": [{"id": "gdrive", "baseUrl": "https://www.googleapis.com/drive/v3"}],
    }


def problems(config: dict[str, Any]) -> list[str]:
    lines = config_problems(config)
    assert all("CANARY" not in line for line in lines), lines
    return lines


def test_a_valid_clients_section_loads() -> None:
    runtime = build_runtime(
        tree(
            [
                {"name": "a", "key": KEY, "connections": ["github", "gdrive", "gdrive/cust-42"]},
                {
                    "name": "b",
                    "keySha256": hashlib.sha256(OTHER.encode()).hexdigest(),
                    "connections": ["*"],
                    "rateLimit": {"requests": 600, "per": 60},
                },
            ]
        ),
        {},
    )
    assert runtime.access is not None
    assert sorted(runtime.access.callers) == ["a", "b"]
    assert KEY not in repr(runtime.config)


@pytest.mark.parametrize("count", [1, 1000])
def test_the_check_does_not_depend_on_how_many_clients_or_where_the_key_sits(count: int) -> None:
    # The same client, alone or last of 1000 (rate-limited, a policy on the connection): the
    # same client found, the same decisions, and a key that is nobody's is 401 either way.
    crowd = [
        {"name": f"other-{i}", "key": f"ck-CANARY-other-{i:04d}", "connections": ["stripe"]}
        for i in range(count - 1)
    ]
    me = {"name": "me", "key": KEY, "connections": ["github"], "rateLimit": {"requests": 5}}
    policy = {"allow": [{"methods": ["GET"], "paths": ["/repos/**"]}]}
    runtime = build_runtime(tree([*crowd, me], policy=policy), {})
    access = runtime.access
    assert access is not None and len(access.callers) == count
    github, stripe = runtime.connections
    presented = access.authenticate([(b"Host", b"x"), (b"Authorization", f"Bearer {KEY}".encode())])
    assert presented is not None
    assert (presented.name, presented.carrier) == ("me", "authorization")
    access.authorize(presented, github, "GET", "/repos/a/b")
    with pytest.raises(AccessDenied) as denied:
        access.authorize(presented, github, "DELETE", "/repos/a/b")
    assert denied.value.code == "request_forbidden"
    with pytest.raises(AccessDenied) as denied:
        access.authorize(presented, stripe, "GET", "/v1/x")
    assert denied.value.code == "client_forbidden"
    with pytest.raises(AccessDenied) as denied:
        access.authenticate([(b"X-Api-Key", (KEY + "x").encode())])
    assert denied.value.code == "client_unauthorized"


def test_without_clients_or_policy_there_is_no_access_check() -> None:
    config = tree([])
    del config["clients"]
    assert build_runtime(config, {}).access is None


def test_two_clients_with_the_same_key_are_refused() -> None:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    assert problems(
        tree(
            [
                {"name": "a", "key": KEY, "connections": ["github"]},
                {"name": "b", "key": KEY, "connections": ["stripe"]},
                {"name": "c", "keySha256": digest.upper(), "connections": ["stripe"]},
                {"name": "a", "key": OTHER, "connections": ["stripe"]},
            ]
        )
    ) == [
        "clients[1].key: the same key as clients[0]",
        "clients[2].keySha256: the same key as clients[0]",
        "clients[3].name: duplicate of clients[0]",
    ]


def test_connections_entries_naming_nothing_are_refused() -> None:
    assert problems(
        tree(
            [
                {
                    "name": "a",
                    "key": KEY,
                    "connections": [
                        "github",
                        "gitlab",
                        "gdrive/",
                        "nope/x",
                        "stripe/x",
                        "gdrive/7",
                    ],
                }
            ]
        )
    ) == [
        f"clients[0].connections[{i}]: names no connection, template or template-id/externalId"
        " of this file"
        for i in (1, 2, 3, 4)
    ]


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ({"name": "a", "connections": ["github"]}, "clients[0]: give exactly one"),
        (
            {"name": "a", "key": KEY, "keySha256": "0" * 64, "connections": ["github"]},
            "clients[0]: give exactly one",
        ),
        ({"name": "a", "key": "", "connections": ["github"]}, "clients[0].key: must not be empty"),
        (
            {"name": "a", "keySha256": KEY, "connections": ["github"]},
            "clients[0].keySha256: must be 64 hex digits",
        ),
        ({"name": "a", "key": KEY, "connections": []}, "clients[0].connections: "),
        ({"name": "a b", "key": KEY, "connections": ["github"]}, "clients[0].name: "),
        (
            {"name": "a", "key": KEY, "connections": ["*"], "rateLimit": {"requests": 0}},
            "clients[0].rateLimit.requests: ",
        ),
    ],
)
def test_client_shapes(client: dict[str, Any], message: str) -> None:
    [line] = problems(tree([client]))
    assert line.startswith(message)


def test_policy_patterns_are_checked_with_their_path() -> None:
    policy = {"allow": [{"methods": ["GET"], "paths": ["/ok/**", "nope", "/a**"]}]}
    assert problems(tree([], policy=policy)) == [
        "connections[0].policy.allow[0].paths[1]: must start with '/'",
        "connections[0].policy.allow[0].paths[2]: '**' must be a whole segment",
    ]
    bad_method = {"allow": [{"methods": ["GET POST"]}]}
    [line] = problems(tree([], policy=bad_method))
    assert line.startswith("connections[0].policy.allow[0].methods[0]: ")


def test_a_key_typed_into_the_clients_mapping_is_not_echoed() -> None:
    # `key:ck-...` without the space: one YAML key, never printed.
    text = f"clients:\n  - {{name: a, key:{KEY}, connections: [github]}}\n"
    config = {**tree([]), **yaml.safe_load(text)}
    lines = problems(config)
    assert lines[0].startswith("clients[0]: unknown key (not shown")


# --- explain --client ----------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    policy = {
        "allow": [
            {"methods": ["GET", "HEAD"], "paths": ["/repos/*/*/issues", "/user"]},
            {"methods": ["POST"], "paths": ["/repos/acme/**"]},
        ]
    }
    config = tree(
        [
            {"name": "agent", "key": KEY, "connections": ["github"]},
            {"name": "billing", "key": OTHER, "connections": ["stripe"]},
        ],
        policy=policy,
    )
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("client", "method", "path", "code", "line"),
    [
        (
            "agent",
            "get",
            "/github/repos/octo/hello/issues",
            0,
            "access: allowed: client 'agent' reaches it through `connections` entry 'github';"
            " allowed by policy rule allow[0] (methods GET, HEAD, paths /repos/*/*/issues, /user)",
        ),
        (
            "agent",
            "POST",
            "/github/repos/acme/x/pulls",
            0,
            "access: allowed: client 'agent' reaches it through `connections` entry 'github';"
            " allowed by policy rule allow[1] (methods POST, paths /repos/acme/**)",
        ),
        (
            "agent",
            "DELETE",
            "/github/user",
            1,
            "access: refused with request_forbidden: client 'agent' reaches it through"
            " `connections` entry 'github'; no policy rule allows it (default deny);"
            " nothing would be sent",
        ),
        (
            "billing",
            "GET",
            "/github/user",
            1,
            "access: refused with client_forbidden: client 'billing' has no `connections` entry"
            " for this connection; nothing would be sent",
        ),
        (
            "billing",
            "POST",
            "/stripe/v1/charges",
            0,
            "access: allowed: client 'billing' reaches it through `connections` entry 'stripe';"
            " the connection has no policy",
        ),
        (
            None,
            "GET",
            "/stripe/v1/charges",
            1,
            "access: refused with client_unauthorized: clients are configured and a request"
            " needs a client key (pass --client NAME); nothing would be sent",
        ),
    ],
)
def test_explain_says_who_may_and_which_rule_decided(
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    client: str | None,
    method: str,
    path: str,
    code: int,
    line: str,
) -> None:
    args = ["explain", "--config", str(config_file), method, path]
    if client is not None:
        args += ["--client", client]
    assert main(args) == code
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == line
    if code == 0:
        # The usual explanation follows: the upstream request, secrets masked.
        assert "# signing-proxy explain: nothing was sent" in out
    assert "CANARY" not in out + err


def test_explain_with_an_unknown_client(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["explain", "--config", str(config_file), "GET", "/github/user", "--client", "x"]) == 1
    )
    assert (
        capsys.readouterr().err == "explain: unknown_client: the configuration has no client 'x'\n"
    )


def test_check_offline_accepts_clients_whose_keys_are_placeholders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Offline every `${...}` is one placeholder word: not a SHA-256, and the same for two keys.
    # Neither is a problem of the file's structure; a connections entry naming nothing still is.
    config = tree(
        [
            {"name": "a", "keySha256": "${A_HASH}", "connections": ["github"]},
            {"name": "b", "key": "${B_KEY}", "connections": ["github"]},
            {"name": "c", "key": "${C_KEY}", "connections": ["stripe"]},
        ]
    )
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["check", "--offline", "--config", str(path)]) == 0
    capsys.readouterr()
    config["clients"][2]["connections"] = ["gitlab"]
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["check", "--offline", "--config", str(path)]) == 2
    assert capsys.readouterr().err.startswith("clients[2].connections[0]: names no connection")


def test_explain_names_the_client_from_a_key_header_and_never_prints_it(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "explain",
        "--config",
        str(config_file),
        "GET",
        "/github/user",
        "-H",
        f"X-Api-Key: {KEY}",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("access: allowed: client 'agent' reaches it")
    assert "X-Api-Key" not in out
    assert "CANARY" not in out
