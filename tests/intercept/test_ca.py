"""The forward proxy's CA (docs/forward-proxy.md): made once and kept sealed in the store
(SQLite and PostgreSQL, surviving a reopen and a key rotation, shared by processes on one
store), or given in the config; leaves of at most 24 h under a name-constrained intermediate
that real clients — curl (OpenSSL) and Python's `ssl` — enforce."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sqlite3
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from proxy.config.hosts import parse_host_pattern
from proxy.config.load import ConfigInvalid
from proxy.config.models import ForwardProxy, ForwardProxyCA, ProxyConfig
from proxy.connections.runtime import build_runtime
from proxy.errors import FieldError
from proxy.intercept.authority import Authority, generate_root
from proxy.intercept.ca import STORE_SETTING, ca_certificate_pem, load_authority
from proxy.intercept.issuer import LEAF_LIFETIME, Issuer, mint_leaf
from proxy.store import open_store
from proxy.store.crypto import new_key_text, parse_key
from proxy.store.sqlite import rotate_key
from tests.pg import PgServer

CONFIG = ProxyConfig(forward_proxy=ForwardProxy(enabled=True))
BOUND = [parse_host_pattern("api.bound.test", 443), parse_host_pattern("*.wild.test", 443)]


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@asynccontextmanager
async def tls_server(
    leaf: x509.Certificate, key: ec.EllipticCurvePrivateKey, chain: bytes, tmp: Path
) -> AsyncIterator[int]:
    """A TLS server on loopback presenting `leaf` (+ `chain`), answering one HTTP/1.0 line."""
    bundle = tmp / "server.pem"
    bundle.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + pem(leaf)
        + chain
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(bundle)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def python_accepts(port: int, name: str, root: str) -> bool:
    context = ssl.create_default_context(cadata=root)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=name), 5
        )
    except ssl.SSLCertVerificationError:
        return False
    writer.close()
    return True


async def curl_accepts(port: int, name: str, root_file: Path) -> bool:
    process = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--max-time",
        "5",
        "--cacert",
        str(root_file),
        "--resolve",
        f"{name}:{port}:127.0.0.1",
        f"https://{name}:{port}/",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode == 0:
        assert out == b"ok"
        return True
    assert process.returncode == 60, err  # "peer certificate cannot be authenticated"
    return False


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("api.bound.test", True),
        ("a.wild.test", True),
        ("evil.test", False),
        ("x.api.bound.test", False),  # below an exact entry
        ("wild.test", False),  # the wildcard's domain itself
        ("api.bound.test.evil.test", False),
    ],
)
async def test_curl_and_python_refuse_a_leaf_for_an_unbound_name(
    tmp_path: Path, name: str, bound: bool
) -> None:
    # The intermediate's key signs a leaf for `name` (what a stolen key could do): clients
    # trusting the root accept it only for a bound host.
    root = generate_root()
    issuer = Issuer(root, BOUND)
    intermediate = issuer._current_intermediate()
    leaf, key = mint_leaf(intermediate, name)
    root_file = tmp_path / "root.pem"
    root_file.write_text(root.cert_pem)
    async with tls_server(leaf, key, intermediate.chain_pem, tmp_path) as port:
        assert await python_accepts(port, name, root.cert_pem) is bound
        assert await curl_accepts(port, name, root_file) is bound


def test_a_leaf_is_ecdsa_p256_for_at_most_24_hours_and_cached() -> None:
    issuer = Issuer(generate_root(), BOUND)
    first = issuer.context_for("api.bound.test")
    assert issuer.context_for("api.bound.test") is first and issuer.minted == 1
    issuer.context_for("b.wild.test")
    assert issuer.minted == 2
    leaf, key = mint_leaf(issuer._current_intermediate(), "api.bound.test")
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= LEAF_LIFETIME
    assert LEAF_LIFETIME <= dt.timedelta(hours=24)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["api.bound.test"]


async def test_the_ca_is_made_once_and_kept_sealed_in_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    key = new_key_text()
    first_store = open_store(str(db), key)
    first = await ca_certificate_pem(CONFIG, first_store)
    # A second process on the same file gets the same CA.
    second_store = open_store(str(db), key)
    assert await ca_certificate_pem(CONFIG, second_store) == first
    await first_store.close()
    await second_store.close()
    with sqlite3.connect(db) as database:
        (sealed,) = database.execute(
            "SELECT value FROM meta WHERE name = ?", (f"sealed:{STORE_SETTING}",)
        ).fetchone()
    assert b"PRIVATE KEY" not in sealed and b"CERTIFICATE" not in sealed
    # A key rotation re-seals it; the CA stays the same.
    new_key = new_key_text()
    assert rotate_key(db, parse_key(key), parse_key(new_key)) >= 2
    reopened = open_store(str(db), new_key)
    try:
        assert await ca_certificate_pem(CONFIG, reopened) == first
    finally:
        await reopened.close()


async def test_replicas_on_postgresql_share_one_ca(postgres: PgServer) -> None:
    url, key = postgres.new_database(), new_key_text()
    replicas = [open_store(None, key, url=url) for _ in range(3)]
    try:
        # Made at once by three replicas: one wins, all present the same root.
        roots = await asyncio.gather(*(load_authority(CONFIG, s) for s in replicas))
        assert len({root.cert_pem for root in roots}) == 1
    finally:
        for replica in replicas:
            await replica.close()


def test_a_ca_given_in_the_config_signs_the_intermediate(tmp_path: Path) -> None:
    root = generate_root()
    key_pem = root.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    (tmp_path / "ca.pem").write_text(root.cert_pem)
    given = ForwardProxyCA(cert=str(tmp_path / "ca.pem"), key=SecretStr(key_pem))  # file, PEM
    config = ProxyConfig(forward_proxy=ForwardProxy(enabled=True, ca=given))
    loaded = asyncio.run(load_authority(config, open_store(None)))
    assert loaded.cert == root.cert
    issuer = Issuer(loaded, BOUND)
    assert issuer._current_intermediate().cert.issuer == root.cert.subject


def test_check_names_the_field_of_a_ca_that_cannot_sign(tmp_path: Path) -> None:
    leaf_only = Authority(generate_root().cert, generate_root().key)  # key of another cert
    tree = {
        "forwardProxy": {
            "enabled": True,
            "ca": {
                "cert": leaf_only.cert_pem,
                "key": leaf_only.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
            },
        }
    }
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(tree, {})
    assert FieldError("forwardProxy.ca.key", "does not belong to the certificate") in (
        caught.value.problems
    )
