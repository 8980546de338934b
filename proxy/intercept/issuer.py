"""Leaf certificates for intercepted hosts, under a name-constrained intermediate.

`Issuer` is made for one set of bound hosts: it issues an intermediate CA (ECDSA P-256, below
the root of `authority.py`) whose RFC 5280 `nameConstraints` permit exactly those hosts, then
mints one leaf per host on first use (ECDSA P-256, at most 24 h) and keeps it, with the
`ssl.SSLContext` that presents it, until it nears its end. When the host set changes (a reload)
the data plane makes a new `Issuer`, so a new intermediate: the constraints always say which
hosts the proxy may answer for, and every client enforces them on the leaves below.

The constraints (RFC 5280 §4.2.1.10), as OpenSSL, Go, Node and browsers read them:

- an exact host `api.example.com` permits that name (its subdomains are excluded unless a bound
  entry lies below it); `*.example.com` permits `.example.com` (subdomains only);
- an IP literal permits that one address;
- a name form nothing is bound for is still constrained (to `invalid`, RFC 6761, and the
  unspecified addresses), since a form with no permitted subtree would be unconstrained.

The TLS context of a host answers ALPN `http/1.1` only and ends a handshake whose SNI names
another host with `unrecognized_name` (RFC 6066 §3).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..config.hosts import HostPattern, is_ip_literal, normal_host
from .authority import BACKDATE, Authority

LEAF_LIFETIME = dt.timedelta(hours=24)  # notBefore to notAfter, backdating included
INTERMEDIATE_LIFETIME = dt.timedelta(days=7)
# A cached leaf is replaced this long before its end (a handshake never gets one about to lapse).
LEAF_RENEW_BEFORE = 3600.0
LEAF_CACHE_SIZE = 4096


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def name_constraints(patterns: Iterable[HostPattern]) -> x509.NameConstraints:
    """Permitted = the bound hosts (ports play no part in certificates)."""
    entries = list(patterns)
    names = {p.name for p in entries if not p.is_ip and not p.wildcard}
    domains = {p.name for p in entries if p.wildcard}
    ips = sorted({p.name for p in entries if p.is_ip})
    permitted: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(names)]
    permitted += [x509.DNSName("." + d) for d in sorted(domains)]
    excluded: list[x509.GeneralName] = []
    for name in sorted(names):
        below = "." + name
        # `api.example.com` would also permit `x.api.example.com`: excluded, unless bound.
        if not any(other.endswith(below) for other in (*names, *domains)) and not any(
            name.endswith("." + d) or name == d for d in domains
        ):
            excluded.append(x509.DNSName(below))
    if not permitted:
        permitted.append(x509.DNSName("invalid"))
    if ips:
        permitted += [x509.IPAddress(ipaddress.ip_network(ip)) for ip in ips]
    else:
        permitted += [
            x509.IPAddress(ipaddress.ip_network("0.0.0.0/32")),
            x509.IPAddress(ipaddress.ip_network("::/128")),
        ]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded or None)


@dataclass(frozen=True, slots=True)
class _Intermediate:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain_pem: bytes  # intermediate then root: what a leaf is presented with


def issue_intermediate(
    root: Authority, patterns: Iterable[HostPattern], now: dt.datetime | None = None
) -> _Intermediate:
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "signing-proxy"),
            x509.NameAttribute(NameOID.COMMON_NAME, "signing-proxy bound hosts"),
        ]
    )
    not_after = min(now + INTERMEDIATE_LIFETIME, root.cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(name_constraints(patterns), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(root.key, root.hash_algorithm())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + root.cert.public_bytes(
        serialization.Encoding.PEM
    )
    return _Intermediate(cert, key, chain)


def mint_leaf(
    intermediate: _Intermediate, host: str, now: dt.datetime | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for `host` (a name or an IP literal), at most `LEAF_LIFETIME`."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    san: x509.GeneralName = (
        x509.IPAddress(ipaddress.ip_address(host)) if is_ip_literal(host) else x509.DNSName(host)
    )
    not_before = now - BACKDATE
    not_after = min(not_before + LEAF_LIFETIME, intermediate.cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        # No common name: the name is in the (critical) subjectAltName alone.
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "signing-proxy")]))
        .issuer_name(intermediate.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([san]), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(intermediate.key.public_key()),
            critical=False,
        )
        .sign(intermediate.key, hashes.SHA256())
    )
    return cert, key


class Issuer:
    """The intermediate for one set of bound hosts, and the TLS context of each host served."""

    def __init__(self, root: Authority, patterns: Iterable[HostPattern]) -> None:
        self.root = root
        self.patterns = tuple(patterns)
        self._lock = threading.Lock()
        self._intermediate = issue_intermediate(root, self.patterns)
        self._contexts: OrderedDict[str, tuple[ssl.SSLContext, float]] = OrderedDict()
        self.minted = 0  # leaves minted (bench/, tests)

    def context_for(self, host: str) -> ssl.SSLContext:
        """The server TLS context presenting `host`'s leaf (minted on first use, then cached
        until `LEAF_RENEW_BEFORE` its end). `host` is in `normal_host` form."""
        now = time.time()
        cached = self._contexts.get(host)
        if cached is not None and cached[1] > now:
            self._contexts.move_to_end(host)
            return cached[0]
        with self._lock:
            intermediate = self._current_intermediate()
            cert, key = mint_leaf(intermediate, host)
            context = self._context(host, cert, key, intermediate.chain_pem)
            self.minted += 1
        renew_at = cert.not_valid_after_utc.timestamp() - LEAF_RENEW_BEFORE
        self._contexts[host] = (context, renew_at)
        self._contexts.move_to_end(host)
        while len(self._contexts) > LEAF_CACHE_SIZE:
            self._contexts.popitem(last=False)
        return context

    def _current_intermediate(self) -> _Intermediate:
        left = self._intermediate.cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
        if left < LEAF_LIFETIME + dt.timedelta(seconds=LEAF_RENEW_BEFORE):
            # A long-running process: a fresh intermediate, same constraints.
            self._intermediate = issue_intermediate(self.root, self.patterns)
            self._contexts.clear()
        return self._intermediate

    def _context(
        self, host: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, chain: bytes
    ) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        pem = (
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + cert.public_bytes(serialization.Encoding.PEM)
            + chain
        )
        # `ssl` loads certificates and keys from files only: a new private file (0600, made
        # exclusively by mkstemp), gone as soon as it is read — nothing is left behind.
        fd, name = tempfile.mkstemp(prefix="signing-proxy-leaf-", suffix=".pem")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(pem)
            context.load_cert_chain(path)
        finally:
            path.unlink(missing_ok=True)

        def check_sni(
            _tls: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext
        ) -> int | None:
            if server_name is not None and normal_host(server_name) != host:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            return None

        context.sni_callback = check_sni
        return context
