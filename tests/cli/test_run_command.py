"""`signing-proxy run -- CMD` and `signing-proxy env` as a user runs them (real processes): the
proxy serves while CMD runs, CMD gets the proxy CA of the store, the same one `env` exports,
CMD's exit status is the wrapper's, signals reach CMD, the run's files are gone afterwards, and
the proxy's own secrets never reach CMD."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.procs import cli
from tests.https_clients import forward_proxy_config
from tests.proxyproc import ProxyProcess

TIMEOUT = 30.0
CANARY = "canary-upstream-token-7c41"


def write_config(tmp_path: Path, **top: Any) -> Path:
    return forward_proxy_config(tmp_path, "https://bound.test", **top)


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_PROXY_")}
    env.update(UPSTREAM_TOKEN=CANARY, **extra)
    return env


def signing_proxy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli(*args, env={"UPSTREAM_TOKEN": CANARY}, cwd=cwd)


# Inside the command: the proxy answers /healthz on the address HTTPS_PROXY names (asked
# directly, not through itself), and what the command was given is written down.
CHILD = """
import os, sys, urllib.parse, urllib.request
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
health = direct.open(f"http://{proxy.hostname}:{proxy.port}/healthz", timeout=10).status
with open("seen.txt", "w") as out:
    print(health, os.environ["SSL_CERT_FILE"], "UPSTREAM_TOKEN" in os.environ, file=out)
with open("ca.pem", "wb") as out, open(os.environ["NODE_EXTRA_CA_CERTS"], "rb") as ca:
    out.write(ca.read())
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.slow
def test_run_serves_while_the_command_runs_and_exits_with_its_status(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = signing_proxy(
        "run", "--config", str(config), "--", sys.executable, "-c", CHILD, "5", cwd=tmp_path
    )
    assert done.returncode == 5, done.stderr
    health, bundle, token_seen = (tmp_path / "seen.txt").read_text().split()
    assert health == "200"
    assert token_seen == "False"  # ${UPSTREAM_TOKEN} is the proxy's, not the command's
    assert not Path(bundle).exists()
    assert not Path(bundle).parent.exists()
    assert CANARY not in done.stderr
    # The CA the command was told to trust is the one `env` exports for this config's store.
    exports = signing_proxy("env", "--config", str(config), cwd=tmp_path)
    assert exports.returncode == 0, exports.stderr
    shown = subprocess.run(
        ["sh", "-c", 'eval "$EXPORTS"; cat "$NODE_EXTRA_CA_CERTS"'],
        env={"EXPORTS": exports.stdout, "PATH": os.environ["PATH"]},
        capture_output=True,
        check=True,
    )
    assert shown.stdout == (tmp_path / "ca.pem").read_bytes()
    assert b"BEGIN CERTIFICATE" in shown.stdout


@pytest.mark.slow
def test_a_signal_reaches_the_command_and_the_wrapper_ends_with_it(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    script = 'trap "exit 3" TERM; trap "exit 4" INT; : >ready; while :; do sleep 0.05; done'
    for signum, status in ((signal.SIGTERM, 3), (signal.SIGINT, 4)):
        (tmp_path / "ready").unlink(missing_ok=True)
        command = ["sh", "-c", 'echo "$SSL_CERT_FILE" >bundle; ' + script]
        wrapper = ProxyProcess(config, "--", *command, env=environment())  # in tmp_path
        wrapper.spawn()
        try:
            deadline = time.monotonic() + TIMEOUT
            while not (tmp_path / "ready").exists():
                assert wrapper.running and time.monotonic() < deadline, wrapper.output()
                time.sleep(0.05)
            wrapper.signal(signum)
            assert wrapper.wait(TIMEOUT) == status
        finally:
            wrapper.kill()
        assert not Path((tmp_path / "bundle").read_text().strip()).exists()


def test_a_command_that_cannot_run(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = signing_proxy("run", "--config", str(config), "--", "no-such-command-x", cwd=tmp_path)
    assert done.returncode == 127
    assert "no-such-command-x: command not found" in done.stderr


@pytest.mark.slow
def test_run_with_a_command_needs_forward_proxy_mode(tmp_path: Path) -> None:
    config = write_config(tmp_path, forwardProxy={"enabled": False})
    run, env = ["run", "--config", str(config), "--", "true"], ["env", "--config", str(config)]
    for command in (run, env):
        done = signing_proxy(*command, cwd=tmp_path)
        assert done.returncode == 2
        assert "forwardProxy.enabled" in done.stderr
        assert done.stdout == ""


@pytest.mark.slow
def test_the_client_key_is_the_named_clients(tmp_path: Path) -> None:
    clients = [
        {"name": "agent", "key": "agent-key-1", "connections": ["*"]},
        {"name": "hashed", "keySha256": "a" * 64, "connections": ["*"]},
    ]
    config = write_config(tmp_path, clients=clients)
    run = ["run", "--config", str(config)]
    done = signing_proxy(*run, "--client", "agent", cwd=tmp_path)
    assert done.returncode == 2
    assert "--client: only with a command" in done.stderr
    done = signing_proxy(*run, "--", "true", cwd=tmp_path)
    assert done.returncode == 2
    assert "--client: name the client whose key the command uses (agent, hashed)" in done.stderr
    done = signing_proxy(*run, "--client", "hashed", "--", "true", cwd=tmp_path)
    assert done.returncode == 2
    assert "clients[1].keySha256: the file holds only the key's hash" in done.stderr
    done = signing_proxy(
        *run, "--client", "agent", "--", "sh", "-c", 'echo "$https_proxy" >url', cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "url").read_text().startswith("http://agent-key-1:@127.0.0.1:")
    exports = signing_proxy(
        "env", "--config", str(config), "--client", "agent", "--listen", "127.0.0.1:1", cwd=tmp_path
    )
    assert "export HTTPS_PROXY=http://agent-key-1:@127.0.0.1:1\n" in exports.stdout
    assert "warning: nothing answers on 127.0.0.1:1" in exports.stderr
