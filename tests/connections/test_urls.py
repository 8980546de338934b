"""Unit tests of `proxy/connections/urls.py`: baseUrl parsing, joins, escape detection, response
rewrites."""

from __future__ import annotations

import pytest

from proxy.connections.urls import (
    BadUrl,
    is_escaping,
    join_path,
    parse_base_url,
    rewrite_link,
    rewrite_location,
    same_place,
)

PROXY = "http://localhost:8080/gh"


@pytest.mark.parametrize(
    ("text", "origin", "path"),
    [
        ("https://api.github.com", "https://api.github.com", ""),
        ("https://API.GitHub.com/", "https://api.github.com", "/"),
        ("https://api.example.com:443/v1", "https://api.example.com", "/v1"),
        ("http://127.0.0.1:8099/api/", "http://127.0.0.1:8099", "/api/"),
        ("HTTP://h:80/a%20b", "http://h", "/a%20b"),
        ("https://[::1]:8443/x", "https://[::1]:8443", "/x"),
    ],
)
def test_parse_base_url(text: str, origin: str, path: str) -> None:
    base = parse_base_url(text)
    assert base.origin == origin
    assert base.path == path


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ftp://h/x", "http"),
        ("https:///x", "host"),
        ("https://user:pw@h/", "user:password"),
        ("https://h/x?k=v", "query"),
        ("https://h/x#f", "fragment"),
        ("https://h/x?", "query"),
        ("https://h:99999/", "valid"),
        ("api.github.com", "http"),
    ],
)
def test_parse_base_url_refuses(text: str, why: str) -> None:
    with pytest.raises(BadUrl, match=why):
        parse_base_url(text)


@pytest.mark.parametrize(
    ("base", "tail", "joined"),
    [
        ("https://h/api", "", "/api"),
        ("https://h/api", "/", "/api/"),
        ("https://h/api/", "", "/api/"),
        ("https://h/api/", "/x", "/api/x"),
        ("https://h", "", "/"),
        ("https://h", "/x%2Fy", "/x%2Fy"),
        ("https://h/", "/x", "/x"),
    ],
)
def test_join_path(base: str, tail: str, joined: str) -> None:
    assert join_path(parse_base_url(base), tail) == joined


@pytest.mark.parametrize(
    "tail",
    [
        "/..",
        "/.",
        "/a/../b",
        "/%2e%2e",
        "/%2E",
        "/.%2E",
        "/..%2F",
        "/a%2F..%2Fb",
        "/..%5C",
        "/%2E%2E%5Cx",
        "/..\\x",
        "/%252e%252e",
        "/%25252E%25252E",
        "/..;/x",  # Tomcat/Spring treat `..;` as `..`
        "/.;x",
    ],
)
def test_is_escaping(tail: str) -> None:
    assert is_escaping(tail)


@pytest.mark.parametrize(
    "tail",
    ["", "/", "/a/b", "/...", "/.well-known", "/a..b", "/v1.2", "/%2e1", "/x;v=..", "/a%2Fb"],
)
def test_is_not_escaping(tail: str) -> None:
    assert not is_escaping(tail)


BASE = parse_base_url("https://api.example.com/v1")


@pytest.mark.parametrize(
    ("url", "rest"),
    [
        ("https://api.example.com/v1/items?page=2", "/items?page=2"),
        ("https://API.EXAMPLE.COM:443/v1/items", "/items"),
        ("https://api.example.com/v1", ""),
        ("https://api.example.com/v1?x=1", "?x=1"),
        ("/v1/items", "/items"),
        ("//api.example.com/v1/items", "/items"),  # network-path reference (RFC 3986 §4.2)
        ("http://api.example.com/v1/items", None),  # other scheme
        ("https://api.example.com:8443/v1/items", None),  # other port
        ("https://evil.example/v1/items", None),
        ("https://api.example.com/v10/items", None),  # not on a segment boundary
        ("https://api.example.com/other", None),
        ("/other", None),
        ("items?page=2", None),  # relative: the client resolves it against the proxy URL
        ("https://api.example.com.evil.example/v1/x", None),
    ],
)
def test_same_place(url: str, rest: str | None) -> None:
    assert same_place(url, BASE) == rest


def test_same_place_with_empty_base_path() -> None:
    base = parse_base_url("https://api.example.com")
    assert same_place("https://api.example.com/x", base) == "/x"
    assert same_place("https://api.example.com", base) == "/"
    assert same_place("https://api.example.com?page=2", base) == "/?page=2"


@pytest.mark.parametrize(
    ("value", "rewritten"),
    [
        ("https://api.example.com/v1/items?page=2", PROXY + "/items?page=2"),
        ("/v1/items/7", PROXY + "/items/7"),
        ("https://api.example.com/v1", PROXY),
        ("https://elsewhere.example/v1/x", "https://elsewhere.example/v1/x"),
        ("https://api.example.com/login", "https://api.example.com/login"),
        ("items/7", "items/7"),
    ],
)
def test_rewrite_location(value: str, rewritten: str) -> None:
    assert rewrite_location(value, BASE, PROXY) == rewritten


def test_rewrite_link_rewrites_each_uri_under_base() -> None:
    value = (
        '<https://api.example.com/v1/items?page=2>; rel="next", '
        '<https://api.example.com/v1/items?page=9>; rel="last", '
        '<https://docs.example.com/pagination>; rel="help"'
    )
    assert rewrite_link(value, BASE, PROXY) == (
        f'<{PROXY}/items?page=2>; rel="next", '
        f'<{PROXY}/items?page=9>; rel="last", '
        '<https://docs.example.com/pagination>; rel="help"'
    )
