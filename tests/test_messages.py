"""`RequestPatch` and `OutboundRequest.patched`: how a signer's changes land on the request.

Pure tests of the value types, then one multi-credential connection through the real echo
upstream to show credentials apply in list order, each seeing what the earlier ones left.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from proxy.messages import OutboundRequest, RequestPatch, encode_query_component
from tests.builders import api_key, basic, bearer, connection
from tests.plane import MakeProxy

BASE = OutboundRequest(
    method="PUT",
    origin="https://api.example.com:8443",
    path="/v1/a%2Fb",
    query="x=1&y=%20",
    headers=(("Accept", "*/*"), ("X-Trace", "t1"), ("x-trace", "t2")),
)


def test_url_and_target_keep_raw_bytes() -> None:
    assert BASE.url == "https://api.example.com:8443/v1/a%2Fb?x=1&y=%20"
    assert BASE.target == "/v1/a%2Fb?x=1&y=%20"
    bare = dataclasses.replace(BASE, query="")
    assert (bare.url, bare.target) == ("https://api.example.com:8443/v1/a%2Fb", "/v1/a%2Fb")


def test_header_lookup_is_case_insensitive_and_returns_the_first() -> None:
    assert BASE.header("x-TRACE") == "t1"
    assert BASE.header("missing") is None


def test_empty_patch_changes_nothing() -> None:
    assert BASE.patched(RequestPatch()) == BASE


def test_headers_replace_every_client_copy_of_any_case() -> None:
    patched = BASE.patched(RequestPatch(headers={"X-TRACE": "proxy"}))
    assert patched.headers == (("Accept", "*/*"), ("X-TRACE", "proxy"))


def test_patched_is_a_new_value_and_the_original_is_untouched() -> None:
    patched = BASE.patched(RequestPatch(headers={"A": "1"}, query={"k": "v"}, cookies={"c": "d"}))
    assert patched is not BASE
    assert BASE.headers == (("Accept", "*/*"), ("X-Trace", "t1"), ("x-trace", "t2"))
    assert BASE.query == "x=1&y=%20"
    with pytest.raises(dataclasses.FrozenInstanceError):
        patched.query = ""  # type: ignore[misc]


def test_query_is_appended_last() -> None:
    once = BASE.patched(RequestPatch(query={"key": "a b"}))
    assert once.query == "x=1&y=%20&key=a%20b"
    twice = once.patched(RequestPatch(query={"sig": "s"}))
    assert twice.query == "x=1&y=%20&key=a%20b&sig=s"


def test_query_patch_removes_client_parameters_of_that_name_only() -> None:
    request = dataclasses.replace(BASE, query="key=1&keys=2&x=&key")
    assert request.patched(RequestPatch(query={"key": "v"})).query == "keys=2&x=&key=v"


def test_query_patch_on_an_empty_query() -> None:
    request = dataclasses.replace(BASE, query="")
    assert request.patched(RequestPatch(query={"k": "v"})).url.endswith("/v1/a%2Fb?k=v")


def test_encode_query_component_against_rfc3986_unreserved() -> None:
    # RFC 3986 §2.3 unreserved stay; everything else is %XX of its UTF-8 bytes, uppercase hex.
    assert encode_query_component("AZaz09-._~") == "AZaz09-._~"
    assert encode_query_component(" +/?#&=%") == "%20%2B%2F%3F%23%26%3D%25"
    assert encode_query_component("é") == "%C3%A9"


def test_cookies_merge_into_one_header_replacing_same_name() -> None:
    request = dataclasses.replace(
        BASE, headers=(("Cookie", "a=1;  sid=old ;b=2"), ("Accept", "*/*"), ("COOKIE", "c=3"))
    )
    patched = request.patched(RequestPatch(cookies={"sid": "new", "z": "9"}))
    assert patched.headers == (("Accept", "*/*"), ("Cookie", "a=1; b=2; c=3; sid=new; z=9"))


def test_headers_then_cookies_then_query_in_one_patch() -> None:
    patch = RequestPatch(headers={"Cookie": "from-header=1"}, cookies={"c": "2"}, query={"q": "3"})
    patched = BASE.patched(patch)
    # A header patch lands first; cookies then merge into whatever Cookie is there.
    assert patched.header("cookie") == "from-header=1; c=2"
    assert patched.query.endswith("&q=3")


# --- list order through a real upstream ----------------------------------------------------


async def test_credentials_apply_in_list_order(echo_server: Any, make_proxy: MakeProxy) -> None:
    base = str(echo_server.make_url("/up"))
    credentials = [
        basic("first", "pw"),
        bearer("second"),  # replaces the Basic header set before it
        api_key("X-Key", "header", "one"),
        api_key("x-key", "header", "two"),  # later wins, names compared case-insensitively
        api_key("key", "query", "q1"),
        api_key("key", "query", "q 2"),  # removes the earlier `key=` and appends its own
        api_key("sid", "cookie", "s1"),
        api_key("other", "cookie", "o"),
    ]
    proxy = await make_proxy({"connections": [connection("multi", base, *credentials)]})
    response = await proxy.get(
        "/multi/path?key=client&a=1",
        headers={"Authorization": "Basic sdk", "Cookie": "sid=client; keep=1"},
    )
    assert response.status == 200
    seen = await response.json()
    assert seen["target"] == "/up/path?a=1&key=q%202"
    headers = [(k.lower(), v) for k, v in seen["headers"]]
    assert [v for k, v in headers if k == "authorization"] == ["Bearer second"]
    assert [v for k, v in headers if k == "x-key"] == ["two"]
    assert [v for k, v in headers if k == "cookie"] == ["keep=1; sid=s1; other=o"]
