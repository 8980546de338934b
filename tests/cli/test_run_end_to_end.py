"""`signing-proxy run -- CMD` end to end (real processes): curl, git, requests, httpx, Node and
Java run inside the wrapper, call the real host of a connection (`https://localhost:PORT`, bound
by default as its baseUrl's host), go through the proxy's CONNECT, trust the leaf it mints under
its CA only through the variables the wrapper set, and the upstream receives the connection's
credential, which the command never had. A direct call to a host the proxy does not intercept
(`127.0.0.1`, in NO_PROXY) still verifies against the machine's CAs."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from tests.https_clients import (
    GIT_REF,
    TlsUpstream,
    client_commands,
    forward_proxy_config,
    git_ls_remote,
    java_command,
    tls_upstream,
)
from tests.proxyproc import ProxyProcess

TIMEOUT = 60.0
CANARY = "canary-upstream-token-e2e-5b07"
CLIENT_KEY = "agent-key-e2e/1"
CLIENTS = ["curl", "git", "requests", "httpx", "node"]  # and Java, slow (a JVM, a compile)


def config_for(tmp_path: Path, upstream: TlsUpstream, *, clients: bool = True) -> Path:
    agent = {"name": "agent", "key": CLIENT_KEY, "connections": ["*"]}
    return forward_proxy_config(
        tmp_path, f"https://localhost:{upstream.port}", clients=[agent] if clients else []
    )


async def wrapped(config: Path, command: list[str], machine_cas: Path) -> tuple[int, str]:
    """`run --config CONFIG -- sh -c 'COMMAND >out 2>&1'`; its status and the command's output.

    The machine's CAs, for the proxy (which verifies the upstream with them) and so for the
    command's bundle, are `machine_cas`."""
    out = config.parent / "out"
    env = {
        "UPSTREAM_TOKEN": CANARY,
        "SSL_CERT_FILE": str(machine_cas),
        "SSL_CERT_DIR": str(config.parent / "no-such-dir"),
        "GIT_TERMINAL_PROMPT": "0",
        "HOME": str(config.parent),
    }
    wrapper = ProxyProcess(config, "--", "sh", "-c", '"$@" >"$0" 2>&1', str(out), *command, env=env)
    wrapper.spawn()
    try:
        code = await wrapper.await_exit(TIMEOUT)
    finally:
        wrapper.kill()
    assert CANARY not in wrapper.output()
    output = out.read_text() if out.exists() else ""
    return code, output + wrapper.output()


def machine_cas_file(tmp_path: Path, *cas: trustme.CA) -> Path:
    path = tmp_path / "machine-cas.pem"
    path.write_bytes(b"".join(ca.cert_pem.bytes() for ca in cas))
    return path


@pytest.mark.parametrize(
    ("client", "with_key"),
    [(client, with_key) for client in CLIENTS for with_key in (False, True)]
    + [pytest.param("java", with_key, marks=pytest.mark.slow) for with_key in (False, True)],
)
async def test_client_reaches_the_bound_host_through_the_proxy(
    tmp_path: Path, client: str, with_key: bool
) -> None:
    """With `clients`, the command presents the key from its proxy URL; without, nothing."""
    upstream_ca = trustme.CA()
    async with tls_upstream(upstream_ca, "localhost") as upstream:
        url = f"https://localhost:{upstream.port}/"
        if client == "git":
            command = git_ls_remote(url + "repo.git")
        elif client == "java":
            command = java_command(url, str(tmp_path))
        else:
            command = client_commands(url)[client]
        status, output = await wrapped(
            config_for(tmp_path, upstream, clients=with_key),
            command,
            machine_cas_file(tmp_path, upstream_ca),
        )
    assert status == 0, output
    if client == "git":
        assert f"{GIT_REF}\trefs/heads/main" in output
    else:
        assert output.startswith("200 "), output
    (seen,) = upstream.seen
    headers = seen["headers"]
    assert isinstance(headers, dict)
    # The proxy added the connection's credential; the client key stayed with the proxy.
    assert headers["Authorization"] == f"Bearer {CANARY}"
    assert not any(CLIENT_KEY in str(value) for value in headers.values())
    assert "Proxy-Authorization" not in headers


@pytest.mark.parametrize("client", ["curl", "git", "requests", "httpx"])
async def test_a_host_not_intercepted_verifies_against_the_machines_cas(
    tmp_path: Path, client: str
) -> None:
    upstream_ca, machine_ca = trustme.CA(), trustme.CA()
    async with (
        tls_upstream(upstream_ca, "localhost") as upstream,
        tls_upstream(machine_ca, "127.0.0.1") as direct,
    ):
        url = f"https://127.0.0.1:{direct.port}/"
        command = (
            git_ls_remote(url + "repo.git") if client == "git" else client_commands(url)[client]
        )
        status, output = await wrapped(
            config_for(tmp_path, upstream),
            command,
            machine_cas_file(tmp_path, upstream_ca, machine_ca),
        )
    assert status == 0, output
    (seen,) = direct.seen
    headers = seen["headers"]
    assert isinstance(headers, dict)
    assert "Authorization" not in headers
    assert upstream.seen == []
