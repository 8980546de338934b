"""`run -- CMD`'s command side (proxy/cli/wrap.py): real clients run wrapped, through a `CONNECT`
relay standing where the proxy stands, to a TLS upstream whose certificate comes from the CA the
wrapper was given as the proxy's; and a direct call to a host the proxy does not intercept still
verifies against the machine's CAs (a second CA put where OpenSSL finds the system's)."""

from __future__ import annotations

import base64
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import trustme

from proxy.cli.wrap import WrappedCommand
from proxy.config.hosts import HostPattern
from proxy.intercept.authority import generate_root
from proxy.intercept.issuer import Issuer
from tests.connect_relay import connect_relay
from tests.https_clients import GIT_REF, client_commands, git_ls_remote, java_command, tls_upstream

KEY = "agent-key/with space+%"


def captured(argv: list[str], out: Path) -> list[str]:
    """`argv` with its stdout and stderr written to `out` (the wrapper passes on its own)."""
    return ["sh", "-c", '"$@" >"$0" 2>&1', str(out), *argv]


def inherited(tmp_path: Path, system_ca: trustme.CA) -> dict[str, str]:
    """The wrapper's environment: the machine's CAs are `system_ca` (in SSL_CERT_FILE, where
    OpenSSL looks first), with stray proxy and CA settings the wrapper must override."""
    system = tmp_path / "system-cas.pem"
    system_ca.cert_pem.write_to_path(str(system))
    env = {k: v for k, v in os.environ.items() if k.upper() not in {"SSL_CERT_DIR"}}
    env.update(
        SSL_CERT_FILE=str(system),
        SSL_CERT_DIR=str(tmp_path / "no-such-dir"),
        https_proxy="http://127.0.0.1:9/",
        Http_Proxy="http://127.0.0.1:9/",
        ALL_PROXY="http://127.0.0.1:9/",
        NODE_EXTRA_CA_CERTS=str(system),
        PIP_CERT=str(system),
        GIT_TERMINAL_PROMPT="0",
        HOME=str(tmp_path),  # no ~/.gitconfig or ~/.curlrc of the user's
    )
    return env


def ca_source(ca: trustme.CA) -> Any:
    async def read() -> bytes:
        return ca.cert_pem.bytes()

    return read


# Java starts a JVM and compiles its client: seconds per run.
CLIENTS = ["curl", "git", "requests", "httpx", "node", pytest.param("java", marks=pytest.mark.slow)]


def command_for(client: str, url: str, folder: Path) -> list[str]:
    if client == "git":
        return git_ls_remote(url + "repo.git")
    if client == "java":
        return java_command(url, str(folder))
    return client_commands(url)[client]


@pytest.mark.parametrize("client", CLIENTS)
async def test_client_goes_through_the_proxy_and_trusts_its_ca(tmp_path: Path, client: str) -> None:
    proxy_ca, system_ca = trustme.CA(), trustme.CA()
    out = tmp_path / "out"
    async with (
        tls_upstream(proxy_ca, "bound.test") as upstream,
        connect_relay(
            {"bound.test:443": ("127.0.0.1", upstream.port)}, ask_authorization=True
        ) as relay,
    ):
        wrapped = WrappedCommand(
            captured(command_for(client, "https://bound.test/", tmp_path), out),
            listen=("127.0.0.1", relay.port),
            ca_source=ca_source(proxy_ca),
            client_key=KEY,
            inherited=inherited(tmp_path, system_ca),
        )
        await wrapped()
    output = out.read_text()
    assert wrapped.status == 0, output
    if client == "git":
        assert f"{GIT_REF}\trefs/heads/main" in output
        assert upstream.seen[0]["path"] == "/repo.git/info/refs?service=git-upload-pack"
    else:
        assert output.startswith("200 "), output
        assert upstream.seen[0]["path"] == "/"
    assert relay.heads[-1].startswith(b"CONNECT bound.test:443 HTTP/1.")
    # The client key went as the proxy URL's userinfo: Basic with the key as the user name
    # (git's curl sends it once the relay asks; the others at once).
    scheme, _, token = relay.authorizations()[-1].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == f"{KEY}:"


@pytest.mark.parametrize("client", CLIENTS)
async def test_client_refuses_a_certificate_the_trusted_cas_did_not_sign(
    tmp_path: Path, client: str
) -> None:
    """The same run with the upstream's certificate from a CA the command was not given: each
    client verifies, and fails."""
    out = tmp_path / "out"
    async with (
        tls_upstream(trustme.CA(), "bound.test") as upstream,
        connect_relay({"bound.test:443": ("127.0.0.1", upstream.port)}) as relay,
    ):
        wrapped = WrappedCommand(
            captured(command_for(client, "https://bound.test/", tmp_path), out),
            listen=("127.0.0.1", relay.port),
            ca_source=ca_source(trustme.CA()),
            inherited=inherited(tmp_path, trustme.CA()),
        )
        await wrapped()
    assert wrapped.status != 0
    assert "certificate" in out.read_text().lower(), out.read_text()
    assert upstream.seen == []


@pytest.mark.parametrize("client", ["curl", "git", "requests", "httpx"])
async def test_a_host_not_intercepted_still_verifies_against_the_machines_cas(
    tmp_path: Path, client: str
) -> None:
    """`localhost` is in NO_PROXY: the call goes direct, to a server whose certificate comes
    from the machine's CAs (here a second CA in SSL_CERT_FILE); the combined bundle has them."""
    proxy_ca, system_ca = trustme.CA(), trustme.CA()
    out = tmp_path / "out"
    async with (
        tls_upstream(system_ca, "localhost") as direct,
        connect_relay({}) as relay,
    ):
        url = f"https://localhost:{direct.port}/"
        wrapped = WrappedCommand(
            captured(command_for(client, url, tmp_path), out),
            listen=("127.0.0.1", relay.port),
            ca_source=ca_source(proxy_ca),
            inherited=inherited(tmp_path, system_ca),
        )
        await wrapped()
    assert wrapped.status == 0, out.read_text()
    assert relay.heads == []
    assert direct.seen


async def test_the_command_sees_one_setting_per_variable_and_no_proxy_secret(
    tmp_path: Path,
) -> None:
    system_ca = trustme.CA()
    env = inherited(tmp_path, system_ca)
    env["UPSTREAM_TOKEN"] = "canary-upstream-secret-1f2e"
    out = tmp_path / "out"
    wrapped = WrappedCommand(
        captured(["env", "-0"], out),
        listen=("0.0.0.0", 8123),
        ca_source=ca_source(trustme.CA()),
        client_key=KEY,
        bound_hosts=["localhost"],
        secrets={"Bearer canary-upstream-secret-1f2e"},
        inherited=env,
    )
    await wrapped()
    assert wrapped.status == 0
    seen = dict(line.split("=", 1) for line in out.read_text().split("\0") if line)
    url = "http://agent-key%2Fwith%20space%2B%25:@127.0.0.1:8123"
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        assert seen[name] == url
    # Spelled otherwise, inherited settings are gone: a tool reading them would go elsewhere.
    assert {name for name in seen if name.upper() in {"HTTPS_PROXY", "HTTP_PROXY"}} == {
        "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
    }  # fmt: skip
    assert not {name for name in seen if name.upper() == "ALL_PROXY"}
    # localhost is bound to a connection: it goes through the proxy.
    assert seen["NO_PROXY"] == seen["no_proxy"] == "127.0.0.1,::1"
    bundle = seen["SSL_CERT_FILE"]
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE"):
        assert seen[name] == bundle
    assert seen["PIP_CERT"] == bundle  # inherited: it names the combined bundle too
    assert seen["NODE_EXTRA_CA_CERTS"] != bundle
    assert "UPSTREAM_TOKEN" not in seen
    # The run's files are gone once the command has exited.
    assert not Path(bundle).exists()
    assert not Path(bundle).parent.exists()


async def test_the_trust_files_are_private_and_hold_what_they_say(tmp_path: Path) -> None:
    system_ca, proxy_ca = trustme.CA(), trustme.CA()
    script = (
        'stat -c "%a" "$SSL_CERT_FILE" "$NODE_EXTRA_CA_CERTS" "$(dirname "$SSL_CERT_FILE")";'
        'cat "$SSL_CERT_FILE"; echo ===; cat "$NODE_EXTRA_CA_CERTS"'
    )
    out = tmp_path / "out"
    wrapped = WrappedCommand(
        captured(["sh", "-c", script], out),
        listen=("127.0.0.1", 8123),
        ca_source=ca_source(proxy_ca),
        inherited=inherited(tmp_path, system_ca),
    )
    await wrapped()
    modes, _, rest = out.read_text().partition("-----BEGIN")
    assert modes.split() == ["600", "600", "700"]
    bundle, _, alone = ("-----BEGIN" + rest).partition("===\n")
    system_pem = system_ca.cert_pem.bytes().decode().strip()
    proxy_pem = proxy_ca.cert_pem.bytes().decode().strip()
    assert bundle.strip() == system_pem + "\n" + proxy_pem
    assert alone.strip() == proxy_pem


async def test_exit_status_is_the_commands(tmp_path: Path) -> None:
    env = inherited(tmp_path, trustme.CA())
    for argv, status in [
        (["sh", "-c", "exit 7"], 7),
        (["sh", "-c", "kill -TERM $$"], 128 + signal.SIGTERM),
        ([str(tmp_path / "no-such-command")], 127),
        ([str(tmp_path)], 126),  # a directory cannot be run
    ]:
        wrapped = WrappedCommand(
            argv, listen=("127.0.0.1", 8123), ca_source=ca_source(trustme.CA()), inherited=env
        )
        await wrapped()
        assert wrapped.status == status, argv


@pytest.mark.parametrize("client", CLIENTS)
async def test_the_name_constraint_holds_in_each_client(tmp_path: Path, client: str) -> None:
    """A leaf the proxy's constrained intermediate signs for a host it was not bound to is
    refused by each client that trusts the root (docs/https-proxy.md, what the name constraint
    protects); the same intermediate's leaf for the bound host is accepted."""
    root = generate_root()
    issuer = Issuer(root, [HostPattern("bound.test", 443)])
    for host, accepted in (("bound.test", True), ("other.test", False)):
        out = tmp_path / f"out-{host}"
        async with (
            tls_upstream(issuer.context_for(host)) as upstream,
            connect_relay({f"{host}:443": ("127.0.0.1", upstream.port)}) as relay,
        ):
            wrapped = WrappedCommand(
                captured(command_for(client, f"https://{host}/", tmp_path), out),
                listen=("127.0.0.1", relay.port),
                ca_source=pem_source(root.cert_pem.encode()),
                inherited=inherited(tmp_path, trustme.CA()),
            )
            await wrapped()
        output = out.read_text()
        assert (wrapped.status == 0) is accepted, (host, output)
        assert bool(upstream.seen) is accepted
        if not accepted:
            assert any(
                word in output.lower() for word in ("certificate", "name", "ssl", "subtree")
            ), output


def pem_source(pem: bytes) -> Any:
    async def read() -> bytes:
        return pem

    return read
