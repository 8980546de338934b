"""`api-key` in a header, the query or a cookie (docs/request-path.md)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from proxy.messages import OutboundRequest
from proxy.schemes.api_key import ApiKeyScheme
from proxy.schemes.base import DEFAULT_CONTEXT

CANARY = "CANARYkey73"


def sign(scheme: ApiKeyScheme, request: OutboundRequest) -> OutboundRequest:
    return request.patched(scheme.sign(request, DEFAULT_CONTEXT))


def request(query: str = "", *headers: tuple[str, str]) -> OutboundRequest:
    return OutboundRequest("GET", "https://maps.example.com", "/geo", query, headers)


# --- header --------------------------------------------------------------------------------


def test_header_replaces_a_client_header_of_that_name_in_any_case() -> None:
    scheme = ApiKeyScheme("c", "X-Api-Key", "header", "real")
    signed = sign(scheme, request("", ("x-api-key", "sdk-dummy"), ("Accept", "*/*")))
    assert signed.headers == (("Accept", "*/*"), ("X-Api-Key", "real"))
    assert scheme.sets_headers == {"x-api-key"}


# --- query ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "key=v"),
        ("a=1", "a=1&key=v"),
        ("a=1&b=2", "a=1&b=2&key=v"),
        # A client-sent parameter of that name is removed, wherever it was.
        ("key=dummy&a=1", "a=1&key=v"),
        ("a=1&key=&key=x&b", "a=1&b&key=v"),
        ("key", "key=v"),
        # The rest of the client's query stays byte for byte (escapes, `+`, empty keys).
        ("q=a%20b+c&=x&&z=%2F", "q=a%20b+c&=x&z=%2F&key=v"),
    ],
)
def test_query_is_appended_last(query: str, expected: str) -> None:
    scheme = ApiKeyScheme("c", "key", "query", "v")
    signed = sign(scheme, request(query))
    assert signed.query == expected
    assert scheme.sets_headers == frozenset()


def rfc3986_encode(text: str) -> str:
    """Written from RFC 3986 §2.3 independently of the code: keep ALPHA DIGIT - . _ ~."""
    unreserved = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return "".join(
        ch if ch in unreserved else "".join(f"%{b:02X}" for b in ch.encode()) for ch in text
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("api key", "a b"),
        ("k", "a+b/c?d&e=f#g%h"),
        ("k", "~-._AZaz09"),
        ("k", "é€😀"),
        ("k[]", "!*'();:@$,"),
    ],
)
def test_query_encoding_escapes_all_but_unreserved(name: str, value: str) -> None:
    signed = sign(ApiKeyScheme("c", name, "query", value), request("a=1"))
    assert signed.query == f"a=1&{rfc3986_encode(name)}={rfc3986_encode(value)}"
    # Space is %20, never `+`, and the pair decodes back to what was configured.
    assert "+" not in signed.query.split("&", 1)[1]
    assert parse_qsl(signed.query)[-1] == (name, value)


def test_a_space_is_percent_20() -> None:
    assert sign(ApiKeyScheme("c", "k", "query", "a b"), request()).query == "k=a%20b"


def test_a_client_parameter_matching_the_encoded_name_is_removed() -> None:
    scheme = ApiKeyScheme("c", "api key", "query", "v")
    assert sign(scheme, request("api%20key=dummy&x=1")).query == "x=1&api%20key=v"


# --- cookie --------------------------------------------------------------------------------


def test_cookie_is_added_to_an_empty_request() -> None:
    signed = sign(ApiKeyScheme("c", "session", "cookie", "s3"), request())
    assert signed.headers == (("Cookie", "session=s3"),)


def test_cookie_merges_replacing_the_client_cookie_of_that_name() -> None:
    client = request("", ("Cookie", "a=1; session=dummy"), ("cookie", "b=2"), ("X", "y"))
    signed = sign(ApiKeyScheme("c", "session", "cookie", "s3"), client)
    # One Cookie header (RFC 6265 §5.4), client cookies kept in order, the credential's last.
    assert signed.headers == (("X", "y"), ("Cookie", "a=1; b=2; session=s3"))


def test_cookie_does_not_own_the_cookie_header() -> None:
    # Other client cookies must survive, so the Cookie header is merged, not owned.
    assert ApiKeyScheme("c", "session", "cookie", "v").sets_headers == frozenset()


# --- common --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["header", "query", "cookie"])
def test_describe_and_repr_carry_no_secret(where: str) -> None:
    scheme = ApiKeyScheme("c", "key", where, CANARY)  # type: ignore[arg-type]
    assert scheme.describe() == {"type": "api-key", "name": "key", "in": where}
    assert CANARY not in repr(scheme)
    assert scheme.sign(request(), DEFAULT_CONTEXT) is scheme.sign(request("x=1"), DEFAULT_CONTEXT)
