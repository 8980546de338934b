"""Command-line polish (docs/operations.md): `--version`, a busy port in one line, the listen
address from the environment, `check --offline` for CI, warnings for empty secrets and a
suggestion for a mistyped key. Real subprocesses, as a user runs them."""

from __future__ import annotations

import importlib.metadata
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.builders import basic, bearer, connection
from tests.cli.procs import cli, held_port, write_config
from tests.ports import free_port
from tests.proxyproc import proxy_process

CANARY = "CANARYpolish57"
TIMEOUT = 60.0  # bounds a broken proxy only (a loaded 2-core machine is slow, not wrong)


def write(path: Path, tree: Any) -> str:
    return str(write_config(path, tree))


def test_version_prints_the_installed_distribution_version() -> None:
    result = cli("--version")
    expected = importlib.metadata.version("signing-proxy")
    assert (result.returncode, result.stdout) == (0, f"signing-proxy {expected}\n")


# --- a busy port ------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_data_port_is_one_line_naming_the_address(tmp_path: Path, workers: str) -> None:
    config = write(tmp_path / "p.yaml", {"connections": [connection("a", "http://x.test")]})
    with held_port() as port:
        result = cli(
            "run", "--config", config, "--listen", f"127.0.0.1:{port}", "--workers", workers,
            cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == f"listen 127.0.0.1:{port}: Address already in use\n"
    assert "Traceback" not in result.stdout


def test_a_busy_admin_port_is_one_line_and_the_data_port_is_released(tmp_path: Path) -> None:
    data = free_port()
    with held_port() as admin:
        tree = {
            "listen": f"127.0.0.1:{data}",
            "admin": {"listen": f"127.0.0.1:{admin}", "token": "t0ken-for-the-test"},
            "connections": [connection("a", "http://x.test")],
        }
        result = cli("run", "--config", write(tmp_path / "p.yaml", tree), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        1,
        f"listen 127.0.0.1:{admin}: Address already in use\n",
    )
    with socket.socket() as sock:  # nothing was left bound on the data port
        sock.bind(("127.0.0.1", data))


# --- $SIGNING_PROXY_LISTEN ----------------------------------------------------------------------


async def test_signing_proxy_listen_overrides_the_file_and_listen_overrides_both(
    tmp_path: Path,
) -> None:
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    config = write(
        tmp_path / "p.yaml",
        {"listen": f"127.0.0.1:{file_port}", "connections": [connection("a", "http://x.test")]},
    )
    env = {"SIGNING_PROXY_LISTEN": f"127.0.0.1:{env_port}"}
    for extra, port in (([], env_port), (["--listen", f"127.0.0.1:{flag_port}"], flag_port)):
        # Ready once `/healthz` answers 200 on `port`; SIGTERM at the end must exit 0.
        async with proxy_process(Path(config), *extra, ports=[port], env=env) as proxy:
            pass
        # The one data-plane listener is the expected one; the file's address was not used.
        listening = re.findall(r"listening on http://(\S+)", proxy.stderr.decode())
        assert listening == [f"127.0.0.1:{port}"]


def test_a_bad_signing_proxy_listen_exits_2(tmp_path: Path) -> None:
    config = write(tmp_path / "p.yaml", {"connections": []})
    result = cli("run", "--config", config, env={"SIGNING_PROXY_LISTEN": "8080"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("$SIGNING_PROXY_LISTEN: ")


# --- check --offline ----------------------------------------------------------------------------


def ci_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """A production-like file: every secret and some addresses come from outside."""
    return {
        "listen": "${LISTEN}",
        "admin": {"listen": "127.0.0.1:8081", "token": "${PROXY_ADMIN_TOKEN}"},
        "limits": {"maxBodyBytes": "${MAX_BODY}"},
        "connections": [
            connection("github", "https://${GITHUB_HOST}/api", bearer("${GITHUB_TOKEN}")),
            connection(
                "bank",
                "https://bank.test",
                {
                    "authSchemeConfig": {"type": "certificate"},
                    "credential": {
                        "type": "certificate",
                        "data": {
                            "certificate": {
                                "certificate": "${file:/run/secrets/bank.crt}",
                                "key": "${file:/run/secrets/bank.key}",
                            }
                        },
                    },
                },
            ),
            connection("stripe", "https://api.stripe.com", basic("${STRIPE_KEY}", "")),
        ],
        **extra,
    }


def test_check_offline_passes_a_file_whose_secrets_are_absent(tmp_path: Path) -> None:
    config = write(tmp_path / "p.yaml", ci_config(tmp_path))
    online = cli("check", "--config", config)
    assert online.returncode == 2
    assert "environment variable GITHUB_TOKEN is not set" in online.stderr
    offline = cli("check", "--offline", "--config", config)
    assert (offline.returncode, offline.stderr) == (0, "")
    assert offline.stdout.startswith(f"{config}: ok, 3 connection(s) (offline")


def test_check_offline_still_reports_every_structural_problem(tmp_path: Path) -> None:
    tree = ci_config(tmp_path)
    tree["connections"][0]["baseurl"] = tree["connections"][0].pop("baseUrl")
    tree["connections"][2]["credentials"][0]["authSchemeConfig"]["type"] = "bearer"
    tree["connections"].append(connection("github", "https://dup.test", bearer("${T2}")))
    result = cli("check", "--offline", "--config", write(tmp_path / "p.yaml", tree))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "connections[0].baseUrl: required",
        "connections[0].baseurl: unknown key (did you mean baseUrl?)",
    ]
    del tree["connections"][0]["baseurl"]
    tree["connections"][0]["baseUrl"] = "https://${GITHUB_HOST}/api"
    result = cli("check", "--offline", "--config", write(tmp_path / "p.yaml", tree))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "connections[2].credentials[0].credential.type: "
        "scheme 'bearer' needs a credential of type 'string'",
        "connections[3].name: duplicate of connections[0]",
    ]


def test_check_offline_reads_no_secret_file_and_no_variable(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(CANARY)
    tree = {"connections": [connection("a", "http://a.test", bearer(f"${{file:{secret}}}"))]}
    secret.chmod(0)  # unreadable: offline must not even try
    try:
        result = cli("check", "--offline", "--config", write(tmp_path / "p.yaml", tree))
    finally:
        secret.chmod(0o600)
    assert (result.returncode, result.stderr) == (0, "")


# --- warnings and suggestions -------------------------------------------------------------------


@pytest.mark.slow
def test_an_empty_secret_from_the_environment_is_a_warning(tmp_path: Path) -> None:
    tree = {
        "admin": {"listen": "127.0.0.1:8081", "token": "${ADMIN_TOKEN}"},
        "connections": [
            connection("github", "https://api.github.com", bearer("${GITHUB_TOKEN}")),
            # Stripe style: the key is the user name, the password is empty on purpose.
            connection("stripe", "https://api.stripe.com", basic("${STRIPE_KEY}", "${NONE}")),
        ],
    }
    env = {"GITHUB_TOKEN": "", "ADMIN_TOKEN": "", "STRIPE_KEY": CANARY, "NONE": ""}
    result = cli("check", "--config", write(tmp_path / "p.yaml", tree), env=env)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "warning: admin.token: variable ADMIN_TOKEN is empty: "
        "the management API is then open to every local process",
        "warning: connections[0].credentials[0].credential.data.string.value: "
        "variable GITHUB_TOKEN is empty, so this credential sends an empty secret",
    ]
    assert CANARY not in result.stdout + result.stderr


def test_an_empty_secret_file_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    token = bearer(f"${{file:{tmp_path}/token}}")
    tree = {"connections": [connection("a", "http://a.test", token)]}
    result = cli("check", "--config", write(tmp_path / "p.yaml", tree))
    assert result.returncode == 0
    assert result.stderr == (
        "warning: connections[0].credentials[0].credential.data.string.value: "
        f"file {tmp_path}/token is empty, so this credential sends an empty secret\n"
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("baseurl", "unknown key (did you mean baseUrl?)"),
        ("base_url", "unknown key (did you mean baseUrl?)"),
        ("credentails", "unknown key (did you mean credentials?)"),
        ("rewriteResponseUrl", "unknown key (did you mean rewriteResponseUrls?)"),
        ("colour", "unknown key"),
    ],
)
def test_a_mistyped_key_gets_a_suggestion(tmp_path: Path, key: str, message: str) -> None:
    tree = {"connections": [{**connection("a", "http://a.test", bearer(CANARY)), key: "x"}]}
    result = cli("check", "--config", write(tmp_path / "p.yaml", tree))
    assert result.returncode == 2
    assert f"connections[0].{key}: {message}" in result.stderr.splitlines()
    assert CANARY not in result.stderr
