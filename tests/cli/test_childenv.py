"""The command's environment and trust bundle (proxy/cli/childenv.py, proxy/cli/trust.py): what
`env` prints is what a shell then holds, and the bundle keeps every CA of the machine's."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import trustme

from proxy.cli.childenv import ProxySettings, child_environment, no_proxy, proxy_url, shell_exports
from proxy.cli.trust import PEM_CERTIFICATE, system_ca_pems, write_trust_files

SETTINGS = ProxySettings(
    proxy_url=proxy_url("::", 8080, "it's a key"),
    no_proxy=no_proxy("10.0.0.5", ["api.example.com"]),
    bundle="/run dir/bundle.pem",
    proxy_ca="/run dir/ca.pem",
)


def test_the_exports_give_a_shell_what_the_command_would_get() -> None:
    inherited = {"PATH": os.environ["PATH"], "https_proxy": "http://elsewhere:1", "all_proxy": "x"}
    script = shell_exports(SETTINGS, inherited)
    shell = subprocess.run(
        ["sh", "-c", 'eval "$EXPORTS" && env -0'],
        env={**inherited, "EXPORTS": script},
        capture_output=True,
        check=True,
    )
    seen = dict(line.split("=", 1) for line in shell.stdout.decode().split("\0") if line)
    del seen["EXPORTS"]
    expected = child_environment(inherited, SETTINGS)
    shown = {k: v for k, v in seen.items() if k in expected or k.upper().endswith("PROXY")}
    assert shown == expected
    assert seen["HTTPS_PROXY"] == "http://it%27s%20a%20key:@[::1]:8080"
    assert seen["NO_PROXY"] == "localhost,127.0.0.1,::1,10.0.0.5"


def test_the_bundle_holds_every_ca_the_machine_trusts(tmp_path: Path) -> None:
    """Without SSL_CERT_FILE/SSL_CERT_DIR the CAs come from OpenSSL's own default places; every
    certificate there is in the bundle, and a context loading the bundle trusts each."""
    paths = ssl.get_default_verify_paths()
    machine = ssl.create_default_context(cafile=paths.openssl_cafile)
    expected = {bytes(der) for der in machine.get_ca_certs(binary_form=True)}
    assert len(expected) > 50  # the machine's store is there (Debian's ca-certificates)
    proxy_ca = trustme.CA()
    files = write_trust_files(tmp_path / "run", system_ca_pems({}), proxy_ca.cert_pem.bytes())
    bundle = ssl.create_default_context(cafile=str(files.bundle))
    held = {bytes(der) for der in bundle.get_ca_certs(binary_form=True)}
    assert expected | {ssl.PEM_cert_to_DER_cert(proxy_ca.cert_pem.bytes().decode())} == held
    assert oct(files.bundle.stat().st_mode & 0o777) == "0o600"
    assert oct(files.directory.stat().st_mode & 0o777) == "0o700"


def test_each_ca_is_in_the_bundle_once(tmp_path: Path) -> None:
    """A CA in the file and again in the directory (as Debian has them) is written once."""
    ca = trustme.CA()
    (tmp_path / "dir").mkdir()
    for path in (tmp_path / "file.pem", tmp_path / "dir" / "a.pem", tmp_path / "dir" / "1234.0"):
        ca.cert_pem.write_to_path(str(path))
    found = system_ca_pems(
        {"SSL_CERT_FILE": str(tmp_path / "file.pem"), "SSL_CERT_DIR": str(tmp_path / "dir")}
    )
    assert found == PEM_CERTIFICATE.findall(ca.cert_pem.bytes())


def test_a_variable_with_a_secret_inside_is_withheld() -> None:
    """Whole, a part of one, or inside a longer value: no inherited variable carries a secret of
    the proxy's to the command; a short secret does not withhold every value that contains it."""
    from proxy.cli.childenv import withheld_names

    secret = "ghp_canary_5ecret_77aa"
    inherited = {
        "GITHUB_TOKEN": secret,
        "PART": secret[:12],
        "AUTH_HEADER": f"token {secret}",
        "DATABASE_URL": f"postgresql://app:{secret}@db/app",
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
    }
    assert sorted(withheld_names(inherited, [secret, "bin"])) == [
        "AUTH_HEADER",
        "DATABASE_URL",
        "GITHUB_TOKEN",
        "PART",
    ]
