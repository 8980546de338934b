"""The command line (docs/operations.md): `check` and `run` exit codes, output, config lookup.

In-process through `proxy.cli.main` for the detail, and as real subprocesses (`python -m proxy`
and the `signing-proxy` console script) for what a user actually runs.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from tests.builders import api_key, bearer, connection
from tests.cli.procs import cli, held_port, write_config
from tests.ports import free_port
from tests.proxyproc import ProxyProcess, config_file

CANARY = "CANARYcli93"
TIMEOUT = 60.0  # bounds a broken proxy only (a loaded 2-core machine is slow, not wrong)


VALID: dict[str, Any] = {
    "connections": [
        connection("github", "https://api.github.com", bearer(f"{CANARY}-github")),
        connection("partner", "https://p.example/api", api_key("key", "query", f"{CANARY}-q")),
    ]
}
INVALID: dict[str, Any] = {
    "connections": [
        connection("github", "https://api.github.com", bearer(f"{CANARY}-github")),
        connection(
            "partner",
            "ftp://p.example",
            api_key("X-Key", "body", f"{CANARY}-key"),
            {
                "authSchemeConfig": {"type": "basic-auth"},
                "credential": {"type": "string", "data": {"string": {"value": f"{CANARY}-b"}}},
            },
        ),
    ]
}
# pydantic reports shape errors first; compile errors (baseUrl, pairing) follow once shapes pass.
INVALID_LINES = [
    "connections[1].credentials[0].authSchemeConfig.apiKey.in: "
    "Input should be 'header', 'query' or 'cookie'",
]


# --- check ---------------------------------------------------------------------------------


def test_check_valid_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path / "proxy.yaml", VALID)
    assert main(["check", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok, 2 connection(s)\n"
    assert err == ""


def test_check_invalid_prints_one_line_per_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "proxy.yaml", INVALID)
    assert main(["check", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == INVALID_LINES
    # With the shape fixed, the compile problems are reported, each on its own line.
    fixed = copy.deepcopy(INVALID)
    fixed["connections"][1]["credentials"][0]["authSchemeConfig"]["apiKey"]["in"] = "header"
    write_config(path, fixed)
    assert main(["check", "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "connections[1].baseUrl: must be an http:// or https:// URL",
        "connections[1].credentials[1].credential.type: "
        "scheme 'basic-auth' needs a credential of type 'basic-auth'",
    ]


def test_check_as_a_subprocess(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.yaml", INVALID)
    good = write_config(tmp_path / "good.yaml", VALID)
    result = cli("check", "--config", str(bad))
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (2, "", INVALID_LINES)
    result = cli("check", "--config", str(good))
    assert (result.returncode, result.stderr) == (0, "")
    assert CANARY not in result.stdout + result.stderr


def test_console_script_is_the_same_program(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("signing-proxy")
    if not script.exists():
        pytest.skip("package not installed with its console script in this interpreter")
    bad = write_config(tmp_path / "bad.yaml", INVALID)
    result = subprocess.run(
        [str(script), "check", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (result.returncode, result.stderr.splitlines()) == (2, INVALID_LINES)


def test_config_lookup_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "proxy.yaml", {"connections": []})
    from_env = write_config(tmp_path / "env.yaml", VALID)
    from_flag = write_config(tmp_path / "flag.yaml", {"connections": VALID["connections"][:1]})
    monkeypatch.delenv("SIGNING_PROXY_CONFIG", raising=False)
    assert main(["check"]) == 0
    monkeypatch.setenv("SIGNING_PROXY_CONFIG", str(from_env))
    assert main(["check"]) == 0
    assert main(["check", "--config", str(from_flag)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "proxy.yaml: ok, 0 connection(s)",
        f"{from_env}: ok, 2 connection(s)",
        f"{from_flag}: ok, 1 connection(s)",
    ]


def test_unreadable_or_malformed_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.yaml"
    assert main(["check", "--config", str(missing)]) == 2
    assert (
        capsys.readouterr().err == f"{missing}: cannot read the file: No such file or directory\n"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"connections:\n  - name: x\n   token: '{CANARY}\n", encoding="utf-8")
    assert main(["check", "--config", str(broken)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{broken}: line ")
    assert CANARY not in line
    listed = write_config(tmp_path / "list.yaml", ["not", "a", "mapping"])
    assert main(["check", "--config", str(listed)]) == 2
    assert capsys.readouterr().err == f"{listed}: the file must be a mapping of settings\n"


def test_unset_variable_is_reported_by_check(tmp_path: Path) -> None:
    tree = {"connections": [connection("gh", "https://api.github.com", bearer("${GH_TOKEN}"))]}
    path = write_config(tmp_path / "proxy.yaml", tree)
    env = {k: v for k, v in os.environ.items() if k != "GH_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "connections[0].credentials[0].credential.data.string.value: "
        "environment variable GH_TOKEN is not set\n"
    )
    assert cli("check", "--config", str(path), env={"GH_TOKEN": CANARY}).returncode == 0


# --- run -----------------------------------------------------------------------------------


def test_run_refuses_an_invalid_config_before_binding(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.yaml", INVALID)
    # The address is taken: had `run` tried to bind first, it would fail with EADDRINUSE
    # instead of reporting the config problems.
    with held_port() as port:
        result = cli("run", "--config", str(bad), "--listen", f"127.0.0.1:{port}")
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (2, "", INVALID_LINES)
    # And it left nothing behind on a free port either.
    port = free_port()
    result = cli("run", "--config", str(bad), "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize("listen", ["8080", "127.0.0.1:http", "[::1:80", "127.0.0.1:70000"])
def test_run_refuses_a_bad_listen_address(tmp_path: Path, listen: str) -> None:
    good = write_config(tmp_path / "good.yaml", VALID)
    result = cli("run", "--config", str(good), "--listen", listen)
    assert result.returncode == 2
    assert "argument --listen: " in result.stderr


def test_run_refuses_a_bad_listen_in_the_file(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.yaml", {**VALID, "listen": "127.0.0.1"})
    result = cli("run", "--config", str(bad))
    assert (result.returncode, result.stderr) == (
        2,
        "listen: expected HOST:PORT, for example 127.0.0.1:8080\n",
    )


async def test_run_serves_then_exits_0_on_sigterm(tmp_path: Path) -> None:
    # On a port the kernel picks, read back from the log (stdout and stderr).
    proxy = ProxyProcess(config_file(tmp_path, VALID), with_stdout=True)
    try:
        await proxy.astart()  # `/healthz` answered 200
        assert await proxy.astop(TIMEOUT) == 0  # SIGTERM
        assert CANARY.encode() not in proxy.stderr
    finally:
        proxy.kill()
