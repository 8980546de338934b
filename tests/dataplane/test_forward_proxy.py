"""Forward-proxy mode on raw sockets (docs/forward-proxy.md): CONNECT to a bound host is
intercepted and served through the connection's chain; every host-binding rule is shown on
the wire (SNI, inner Host, unbound hosts, IP literals, absolute-form, blind tunnels)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509

from proxy.connections.runtime import build_runtime
from tests.forwardproxy import (
    CANARY,
    client_context,
    close,
    connect,
    connect_answer,
    forward_tree,
    intercepted,
    request,
    running_plane,
    through_tls,
)
from tests.rawhttp import Message, port_of, round_trip


def echoed(body: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(body)
    return document


def sent_header(document: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in document["headers"] if key.lower() == name.lower()]


def signed(reply: Message, target: str) -> None:
    """The echo upstream was asked for `target`, byte for byte, with the connection's credential."""
    assert reply.status == 200
    seen = echoed(reply.body)
    assert seen["target"] == target
    assert sent_header(seen, "Authorization") == [f"Bearer {CANARY}"]


def refused(answer: Message, status: int, code: str) -> None:
    """The proxy's own JSON error with `Proxy-Status`, as in the reverse mode."""
    assert answer.status == status, answer.body
    assert json.loads(answer.body)["code"] == code
    assert (answer.get("Proxy-Status") or "").startswith("signing-proxy")


async def test_a_bound_host_is_intercepted_and_signed(echo_server: TestServer) -> None:
    port = port_of(echo_server)
    async with (
        running_plane(forward_tree(port)) as (plane, proxy_port),
        intercepted(plane, proxy_port, f"localhost:{port}") as (reader, writer),
    ):
        tls = writer.get_extra_info("ssl_object")
        assert tls.selected_alpn_protocol() == "http/1.1"
        reply = await request(
            reader,
            writer,
            f"GET /v1/items?q=%2F1 HTTP/1.1\r\nHost: localhost:{port}\r\n"
            "Authorization: Bearer sk-placeholder\r\n\r\n",
        )
        # The app's dummy key is replaced by the connection's credential.
        signed(reply, "/v1/items?q=%2F1")
        # Keep-alive inside the tunnel: a second request on the same TLS session, a body.
        again = await request(
            reader,
            writer,
            f"POST /second HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Length: 5\r\n\r\n",
            b"hello",
        )
        assert again.status == 200 and echoed(again.body)["bodyLength"] == 5


async def test_connect_http_1_0_as_requests_sends_it(echo_server: TestServer) -> None:
    port = port_of(echo_server)
    async with running_plane(forward_tree(port)) as (plane, proxy_port):
        reader, writer, answer = await connect(proxy_port, f"127.0.0.1:{port}", version="1.0")
        try:
            assert answer.start_line.startswith("HTTP/1.0 200")
            # An IP literal named by the connection: no SNI is sent for an address.
            await through_tls(writer, client_context(plane), "127.0.0.1")
            reply = await request(
                reader, writer, f"GET /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
            )
            assert reply.status == 200
            assert sent_header(echoed(reply.body), "Authorization") == [f"Bearer {CANARY}"]
        finally:
            await close(writer)


async def test_sni_naming_another_host_ends_the_handshake(echo_server: TestServer) -> None:
    port = port_of(echo_server)
    async with running_plane(forward_tree(port)) as (plane, proxy_port):
        _, writer, answer = await connect(proxy_port, f"localhost:{port}")
        try:
            assert answer.status == 200
            context = client_context(plane)
            context.check_hostname = False  # the client would accept anything: the proxy won't
            context.verify_mode = ssl.CERT_NONE
            with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
                await through_tls(writer, context, "evil.example")
        finally:
            await close(writer)


async def test_an_inner_host_naming_another_host_is_421(echo_server: TestServer) -> None:
    port = port_of(echo_server)
    async with (
        running_plane(forward_tree(port)) as (plane, proxy_port),
        intercepted(plane, proxy_port, f"localhost:{port}") as (reader, writer),
    ):
        for host in ("evil.example", f"127.0.0.1:{port}", "localhost:1"):
            reply = await request(reader, writer, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")
            refused(reply, 421, "misdirected_request")


@pytest.mark.parametrize("target", ["unbound.example:443", "127.0.0.2:{port}", "localhost:1"])
async def test_an_unbound_host_is_403(echo_server: TestServer, target: str) -> None:
    port = port_of(echo_server)
    async with running_plane(forward_tree(port)) as (_, proxy_port):
        refused(await connect_answer(proxy_port, target.format(port=port)), 403, "host_not_allowed")


async def test_an_ip_literal_is_unbound_unless_named(echo_server: TestServer) -> None:
    port = port_of(echo_server)
    tree = forward_tree(port)
    tree["connections"][0]["hosts"] = [f"localhost:{port}"]  # only the name
    async with running_plane(tree) as (_, proxy_port):
        refused(await connect_answer(proxy_port, f"127.0.0.1:{port}"), 403, "host_not_allowed")


async def test_absolute_form_http_to_a_bound_host_is_served(echo_server: TestServer) -> None:
    port = port_of(echo_server)
    async with running_plane(forward_tree(port)) as (_, proxy_port):
        reply = await round_trip(
            proxy_port,
            f"GET http://localhost:{port}/a/b?c=%20 HTTP/1.1\r\nHost: localhost:{port}\r\n"
            "Connection: close\r\n\r\n".encode(),
        )
        signed(reply, "/a/b?c=%20")
        unbound = await round_trip(
            proxy_port,
            b"GET http://unbound.example/ HTTP/1.1\r\nHost: unbound.example\r\n\r\n",
        )
        refused(unbound, 403, "host_not_allowed")


async def test_absolute_form_https_is_400(echo_server: TestServer) -> None:
    port = port_of(echo_server)
    async with running_plane(forward_tree(port)) as (_, proxy_port):
        reply = await round_trip(
            proxy_port,
            f"GET https://localhost:{port}/ HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode(),
        )
        refused(reply, 400, "bad_request")


async def test_connect_is_405_when_the_mode_is_off(echo_server: TestServer) -> None:
    port = port_of(echo_server)
    tree = forward_tree(port)
    tree["forwardProxy"]["enabled"] = False
    async with running_plane(tree) as (_, proxy_port):
        refused(await connect_answer(proxy_port, f"localhost:{port}"), 405, "method_not_allowed")


# -- clients: the key in Proxy-Authorization ---------------------------------------------------

CLIENT_KEY = "fwd-client-key-77a1"


def with_client(tree: dict[str, Any]) -> dict[str, Any]:
    tree["clients"] = [{"name": "agent", "key": CLIENT_KEY, "connections": ["echo"]}]
    return tree


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "credentials",
    [f"Basic {basic(CLIENT_KEY, '')}", f"Basic {basic('x', CLIENT_KEY)}", f"Bearer {CLIENT_KEY}"],
)
async def test_a_client_key_in_proxy_authorization(
    echo_server: TestServer, credentials: str
) -> None:
    port = port_of(echo_server)
    key = f"Proxy-Authorization: {credentials}\r\n"
    async with (
        running_plane(with_client(forward_tree(port))) as (plane, proxy_port),
        intercepted(plane, proxy_port, f"localhost:{port}", headers=key) as (reader, writer),
    ):
        reply = await request(reader, writer, f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
        assert reply.status == 200
        seen = echoed(reply.body)
        assert CLIENT_KEY not in json.dumps(seen)  # the client key never goes upstream


@pytest.mark.parametrize("headers", ["", "Proxy-Authorization: Bearer not-a-key\r\n"])
async def test_no_or_an_unknown_client_key_is_407(echo_server: TestServer, headers: str) -> None:
    port = port_of(echo_server)
    async with running_plane(with_client(forward_tree(port))) as (_, proxy_port):
        answer = await connect_answer(proxy_port, f"localhost:{port}", headers=headers)
        refused(answer, 407, "client_unauthorized")
        assert answer.get("Proxy-Authenticate") == 'Basic realm="signing-proxy"'


# -- unmatched: tunnel -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tcp_echo() -> AsyncIterator[int]:
    """A plain TCP server that sends back what it receives, uppercased (not HTTP at all)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_unmatched_tunnel_relays_bytes_blind(echo_server: TestServer) -> None:
    tree = forward_tree(port_of(echo_server), unmatched="tunnel", tunnelPrivateAddresses=True)
    async with tcp_echo() as port, running_plane(tree) as (_, proxy_port):
        reader, writer, answer = await connect(proxy_port, f"127.0.0.1:{port}")
        try:
            assert answer.status == 200
            writer.write(b"not even http\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(15), 5) == b"NOT EVEN HTTP\r\n"
        finally:
            await close(writer)


@pytest.mark.parametrize("target", ["127.0.0.1:{port}", "169.254.169.254:80", "localhost:{port}"])
async def test_a_blind_tunnel_reaches_no_private_address(
    echo_server: TestServer, target: str
) -> None:
    tree = forward_tree(port_of(echo_server), unmatched="tunnel")
    tree["connections"][0]["hosts"] = []
    async with tcp_echo() as port, running_plane(tree) as (_, proxy_port):
        refused(await connect_answer(proxy_port, target.format(port=port)), 403, "host_not_allowed")


async def test_a_reload_with_other_hosts_issues_a_new_intermediate(
    echo_server: TestServer,
) -> None:
    port = port_of(echo_server)
    tree = forward_tree(port)
    tree["connections"][0]["hosts"] = [f"127.0.0.1:{port}"]
    async with running_plane(tree) as (plane, proxy_port):
        assert plane.forward is not None
        before = plane.forward.issuer
        await plane.reload(build_runtime(tree, {}))
        assert plane.forward.issuer is before  # same hosts: the intermediate and leaves stay
        refused(await connect_answer(proxy_port, f"localhost:{port}"), 403, "host_not_allowed")
        tree["connections"][0]["hosts"].append(f"localhost:{port}")
        await plane.reload(build_runtime(tree, {}))
        after = plane.forward.issuer
        assert after is not before and after.root.cert == before.root.cert
        constraints = after._current_intermediate().cert.extensions.get_extension_for_class(
            x509.NameConstraints
        )
        permitted = constraints.value.permitted_subtrees or []
        assert x509.DNSName("localhost") in permitted
        async with intercepted(plane, proxy_port, f"localhost:{port}") as (reader, writer):
            get = f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"
            assert (await request(reader, writer, get)).status == 200


async def test_a_client_without_the_connection_is_403_before_any_tls(
    echo_server: TestServer,
) -> None:
    port = port_of(echo_server)
    tree = with_client(forward_tree(port))
    tree["clients"].append({"name": "other", "key": "fwd-other-key-19b0", "connections": ["x"]})
    tree["connections"].append({"name": "x", "baseUrl": "http://127.0.0.1:9", "hosts": []})
    async with running_plane(tree) as (_, proxy_port):
        answer = await connect_answer(
            proxy_port,
            f"localhost:{port}",
            headers="Proxy-Authorization: Bearer fwd-other-key-19b0\r\n",
        )
        refused(answer, 403, "client_forbidden")


async def test_a_client_hello_sent_with_the_connect_is_the_handshakes(
    echo_server: TestServer,
) -> None:
    # Some clients send their ClientHello without waiting for the 200: it arrives with the
    # CONNECT head and must start the handshake, not be lost.
    port = port_of(echo_server)
    async with running_plane(forward_tree(port)) as (plane, proxy_port):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_context(plane).wrap_bio(incoming, outgoing, server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        try:
            head = f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"
            writer.write(head.encode() + outgoing.read())
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert answer.startswith(b"HTTP/1.1 200")
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    writer.write(outgoing.read())
                    incoming.write(await asyncio.wait_for(reader.read(65536), 5))
            assert tls.selected_alpn_protocol() == "http/1.1"
        finally:
            await close(writer)


async def test_an_open_tunnel_follows_each_reload(echo_server: TestServer) -> None:
    """A keep-alive tunnel outlives reloads: each request in it is let in and signed by the config
    loaded now — a rotated credential is the new one, a revoked client key and an unbound host are
    refused — never by what the config said at the CONNECT."""
    port = port_of(echo_server)
    tree = with_client(forward_tree(port))
    get = f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"
    key = f"Proxy-Authorization: Bearer {CLIENT_KEY}\r\n"
    async with running_plane(tree) as (plane, proxy_port):
        target = f"localhost:{port}"
        async with intercepted(plane, proxy_port, target, headers=key) as (reader, writer):
            seen = echoed((await request(reader, writer, get)).body)
            assert sent_header(seen, "Authorization") == [f"Bearer {CANARY}"]

            # Day two, three times over: each reload is seen by the next request in the tunnel.
            for generation in range(3):
                rotated = f"fwd-rotated-token-{generation}"
                credential = tree["connections"][0]["credentials"][0]["credential"]
                credential["data"]["string"]["value"] = rotated
                await plane.reload(build_runtime(tree, {}))
                seen = echoed((await request(reader, writer, get)).body)
                assert sent_header(seen, "Authorization") == [f"Bearer {rotated}"]

            tree["clients"][0]["key"] = "another-client-key-0000000000000000"
            await plane.reload(build_runtime(tree, {}))
            refused(await request(reader, writer, get), 407, "client_unauthorized")

        tree = forward_tree(port)
        async with (
            running_plane(tree) as (plane, proxy_port),
            intercepted(plane, proxy_port, f"localhost:{port}") as (reader, writer),
        ):
            assert (await request(reader, writer, get)).status == 200
            tree["connections"][0]["hosts"] = [f"127.0.0.1:{port}"]  # localhost unbound
            await plane.reload(build_runtime(tree, {}))
            refused(await request(reader, writer, get), 403, "host_not_allowed")


@pytest.mark.parametrize(
    ("address", "leads_to"),
    [
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64 (RFC 6052) of the metadata address
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("2002:7f00:1::", "127.0.0.1"),  # 6to4 (RFC 3056)
        ("::127.0.0.1", "127.0.0.1"),  # IPv4-compatible (RFC 4291 §2.5.5.1)
        ("::ffff:10.1.2.3", "10.1.2.3"),  # IPv4-mapped
    ],
)
async def test_a_blind_tunnel_reaches_no_private_ipv4_behind_an_ipv6_form(
    address: str, leads_to: str
) -> None:
    """`is_global` judges these by their IPv6 prefix and says yes (Python 3.11); the address they
    lead to is private, so the tunnel is refused before any connect."""
    from proxy.dataplane.connect import embedded_ipv4, tunnel_address
    from proxy.errors import ProxyError

    assert str(embedded_ipv4(ipaddress.ip_address(address))) == leads_to
    with pytest.raises(ProxyError) as refused_with:
        await tunnel_address(address, 443)
    assert refused_with.value.code == "host_not_allowed"
    # A public address in the same forms still goes through.
    assert await tunnel_address("64:ff9b::808:808", 443) == ("64:ff9b::808:808", 443)
