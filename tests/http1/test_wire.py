"""Request encoding (RFC 9112 §3, §6): byte-exact request line, no header injection, framing."""

from __future__ import annotations

import pytest

from proxy.errors import ProxyError
from proxy.http1.wire import Framing, Origin, encode_head, parse_origin, plan_framing

HEADERS = (("X-Trace", "a b"), ("accept", "*/*"))


def test_request_line_and_headers_go_out_as_given() -> None:
    head = encode_head("GET", "/a%2Fb?x=%20&y", "api.test:8443", HEADERS, None)
    assert head == (
        b"GET /a%2Fb?x=%20&y HTTP/1.1\r\nHost: api.test:8443\r\nX-Trace: a b\r\naccept: */*\r\n\r\n"
    )


def test_latin1_header_bytes_round_trip() -> None:
    # Inbound header bytes are decoded as latin-1, so encoding must give the same bytes back.
    raw = "caf\xe9"
    head = encode_head("GET", "/", "h", (("X-Name", raw),), None)
    assert b"X-Name: caf\xe9\r\n" in head


@pytest.mark.parametrize(
    "headers",
    [
        (("X-Evil", "a\r\nInjected: 1"),),
        (("X-Evil", "a\nInjected: 1"),),
        (("X-Evil\r\nInjected", "1"),),
        (("X-Evil", "a\0b"),),
    ],
)
def test_line_breaks_in_headers_are_refused(headers: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(ProxyError) as caught:
        encode_head("GET", "/", "h", headers, None)
    assert caught.value.code == "bad_header"


def test_a_line_break_in_the_target_is_refused() -> None:
    with pytest.raises(ProxyError):
        encode_head("GET", "/x\r\nHost: evil", "h", (), None)


@pytest.mark.parametrize(
    ("headers", "size", "streamed", "expected"),
    [
        ((), None, False, (Framing.NONE, 0, None)),
        # Bodyless, whatever the method: nothing added (bytes in = bytes out).
        ((), 0, False, (Framing.NONE, 0, None)),
        ((("Content-Length", "0"),), None, False, (Framing.NONE, 0, None)),
        ((("Content-Length", "0"),), 0, False, (Framing.NONE, 0, None)),
        ((), 5, False, (Framing.LENGTH, 5, "Content-Length: 5")),
        ((("content-length", "5"),), 5, False, (Framing.LENGTH, 5, None)),
        ((), None, True, (Framing.CHUNKED, None, "Transfer-Encoding: chunked")),
        ((("Content-Length", "9"),), None, True, (Framing.LENGTH, 9, None)),
    ],
)
def test_framing(
    headers: tuple[tuple[str, str], ...],
    size: int | None,
    streamed: bool,
    expected: tuple[Framing, int | None, str | None],
) -> None:
    assert plan_framing(headers, size, streamed) == expected


@pytest.mark.parametrize(
    ("headers", "size"),
    [((("Content-Length", "4"),), 5), ((("Content-Length", "5x"),), 5)],
)
def test_a_wrong_declared_length_is_refused(
    headers: tuple[tuple[str, str], ...], size: int
) -> None:
    with pytest.raises(ProxyError):
        plan_framing(headers, size, False)


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("http://api.test", Origin("http", "api.test", 80, "api.test")),
        ("https://api.test", Origin("https", "api.test", 443, "api.test")),
        ("https://api.test:8443", Origin("https", "api.test", 8443, "api.test:8443")),
        ("http://[::1]:8080", Origin("http", "::1", 8080, "[::1]:8080")),
        ("https://[::1]", Origin("https", "::1", 443, "[::1]")),
    ],
)
def test_parse_origin(origin: str, expected: Origin) -> None:
    assert parse_origin(origin) == expected


@pytest.mark.parametrize("origin", ["ftp://x", "http://", "api.test", "http://a/b"])
def test_parse_origin_refuses_what_is_not_an_origin(origin: str) -> None:
    with pytest.raises(ProxyError):
        parse_origin(origin)
