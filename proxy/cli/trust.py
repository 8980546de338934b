"""The trust bundle a wrapped command gets: this machine's CA certificates plus the proxy's CA
(docs/https-proxy.md).

A bundle that held the proxy's CA alone would break every HTTPS call the command makes to a host
the proxy does not intercept (`NO_PROXY`, a blind tunnel), so the machine's own CAs go in first,
found where OpenSSL looks for them: `$SSL_CERT_FILE` else OpenSSL's default file, and
`$SSL_CERT_DIR` else its default directory; where neither holds a certificate (a Python built
without a system store, as on macOS), certifi's bundle when it is installed. The files are
private to the run: a directory of mode 0700, files of 0600, removed by the caller.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN (?:TRUSTED )?CERTIFICATE-----\r?\n.*?-----END (?:TRUSTED )?CERTIFICATE-----",
    re.DOTALL,
)


class NoSystemCertificates(Exception):
    """Nowhere OpenSSL or certifi would look holds a CA certificate."""


def system_ca_pems(env: Mapping[str, str]) -> list[bytes]:
    """The machine's CA certificates as PEM blocks, each once, in the order found.

    `env` stands for the environment OpenSSL would read (`SSL_CERT_FILE`, `SSL_CERT_DIR`)."""
    paths = ssl.get_default_verify_paths()
    cafile = env.get(paths.openssl_cafile_env) or paths.openssl_cafile
    capath = env.get(paths.openssl_capath_env) or paths.openssl_capath
    found = _unique([*_pems_in(Path(cafile)), *_pems_in_directory(Path(capath))])
    if not found:
        found = _unique(_certifi_pems())
    if not found:
        raise NoSystemCertificates(
            f"no CA certificates in {cafile} or {capath} (nor certifi's bundle): set "
            "SSL_CERT_FILE to the file of CA certificates this machine trusts"
        )
    return found


def _pems_in(path: Path) -> list[bytes]:
    try:
        return PEM_CERTIFICATE.findall(path.read_bytes())
    except OSError:  # absent or unreadable: OpenSSL skips it too
        return []


def _pems_in_directory(path: Path) -> Iterator[bytes]:
    # OpenSSL reads `<hash>.<n>` links there; Debian's also holds each certificate under its name.
    try:
        entries = sorted(path.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.is_file():
            yield from _pems_in(entry)


def _certifi_pems() -> list[bytes]:
    try:
        import certifi
    except ImportError:
        return []
    return _pems_in(Path(certifi.where()))


def _unique(pems: list[bytes]) -> list[bytes]:
    """Each certificate once (the same one in several files, or as several links)."""
    seen: set[bytes] = set()
    unique: list[bytes] = []
    for pem in pems:
        body = b"".join(pem.splitlines()[1:-1])
        try:
            der = base64.b64decode(body, validate=True)
        except binascii.Error:
            continue  # not a certificate OpenSSL could load either
        if der not in seen:
            seen.add(der)
            unique.append(pem)
    return unique


@dataclass(frozen=True)
class TrustFiles:
    """The run's files: `bundle` (system CAs + the proxy CA), `proxy_ca` (the proxy CA alone)."""

    directory: Path
    bundle: Path
    proxy_ca: Path


def write_trust_files(directory: Path, system: list[bytes], proxy_ca_pem: bytes) -> TrustFiles:
    """Write the bundle and the proxy CA into `directory` (created 0700 if missing), each 0600.

    The files are written whole under a temporary name and renamed, so a command that reads one
    while `signing-proxy env` rewrites it never sees half a bundle."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = proxy_ca_pem.strip() + b"\n"
    files = TrustFiles(directory, directory / "ca-bundle.pem", directory / "proxy-ca.pem")
    _write_private(files.bundle, b"".join(pem.strip() + b"\n" for pem in system) + ca)
    _write_private(files.proxy_ca, ca)
    return files


def _write_private(path: Path, content: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, 0o600)  # an older partial file kept its mode: this one is 0600 whatever
        file.write(content)
    os.replace(partial, path)
