"""Policy without bypasses (docs/security.md "Clients and policy").

- Encodings: a hypothesis test takes a policy and a path it denies, writes the path in every
  way an upstream might decode back to it (any character percent-encoded, upper or lower hex,
  `/` as `%2F`, escapes encoded again as `%25..`), and proves the policy allows none of them.
- Method overrides: `X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override` and a
  `_method` query parameter are matched as the method they name when a rule restricts methods.
- End to end on a real proxy: the refusals are 403 `request_forbidden` and nothing reaches the
  upstream.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from proxy.connections.policy import (
    PolicyMatcher,
    Rule,
    compile_path_pattern,
    form_method_overrides,
    method_overrides,
)
from tests import rawhttp
from tests.builders import bearer, connection
from tests.plane import MakeProxy
from tests.rawhttp import Message, RawUpstream

PATTERNS = [
    "/repos/*/issues",
    "/repos/*/*/issues",
    "/repos/acme/**",
    "/user",
    "/files/*.json",
    "/a/**/b",
    "/*",
]
SEGMENT_TEXT = st.text(alphabet="abxy-_~", min_size=1, max_size=4)


def matcher(patterns: list[str], methods: frozenset[str] | None = None) -> PolicyMatcher:
    paths = tuple(compile_path_pattern(p) for p in patterns)
    return PolicyMatcher([Rule(methods, paths, "test")])


@st.composite
def encodings(draw: st.DrawFn, path: str) -> str:
    """`path` with any of its characters (slashes after the first too) percent-encoded, in
    either case, some escapes encoded once more (`%` as `%25`)."""
    out = ["/"]
    for char in path[1:]:
        how = draw(st.sampled_from(["keep", "keep", "upper", "lower", "double"]))
        if how == "keep":
            out.append(char)
            continue
        escape = f"%{ord(char):02X}" if how != "lower" else f"%{ord(char):02x}"
        out.append(escape.replace("%", "%25", 1) if how == "double" else escape)
    return "".join(out)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3),
    st.lists(SEGMENT_TEXT, min_size=1, max_size=5),
    st.data(),
)
def test_no_encoding_of_a_denied_path_is_allowed(
    patterns: list[str], segments: list[str], data: st.DataObject
) -> None:
    policy = matcher(patterns)
    denied = "/" + "/".join(segments)
    assume(not policy.allows("GET", denied))
    encoded = data.draw(encodings(denied))
    assert not policy.allows("GET", encoded), (patterns, denied, encoded)


@settings(max_examples=200, deadline=None)
@given(st.lists(SEGMENT_TEXT, min_size=1, max_size=5), st.data())
def test_encodings_of_an_allowed_path_without_slashes_stay_allowed(
    segments: list[str], data: st.DataObject
) -> None:
    """The other side: encoding characters other than `/` changes nothing for a path `**`
    allows, so the check costs legitimate clients nothing."""
    policy = matcher(["/**"])
    path = "/" + "/".join(segments)
    encoded = data.draw(encodings(path))
    assert policy.allows("GET", encoded)


@pytest.mark.parametrize(
    ("pattern", "tail", "allowed"),
    [
        ("/repos/*/issues", "/repos/x%2Fy/issues", False),  # the report's bypass
        ("/repos/*/issues", "/repos/x%2fy/issues", False),
        ("/repos/*/issues", "/repos/x%252Fy/issues", False),  # decoded twice by two hops
        ("/repos/*/*/issues", "/repos/x%2Fy/issues", False),
        ("/repos/*/*/issues", "/repos/x/y/issues", True),
        ("/repos/**", "/repos/x%2Fy/issues", True),
        ("/repos/*/issues", "/repos/x%20y/issues", True),
    ],
)
def test_encoded_slashes(pattern: str, tail: str, allowed: bool) -> None:
    assert matcher([pattern]).allows("GET", tail) is allowed


def overrides(*headers: tuple[str, str], query: str = "") -> set[str]:
    raw = [(k.encode(), v.encode()) for k, v in headers]
    return method_overrides(raw, query)


def test_method_overrides_are_read_from_headers_and_query() -> None:
    assert overrides(("X-HTTP-Method-Override", "delete")) == {"DELETE"}
    assert overrides(("x-http-method", "PUT"), ("X-Method-Override", "PATCH")) == {"PUT", "PATCH"}
    assert overrides(query="a=1&_method=DELETE") == {"DELETE"}
    assert overrides(query="%5Fmethod=put") == {"PUT"}
    assert overrides(("X-Other", "DELETE"), query="method=DELETE") == set()


def test_method_overrides_in_form_bodies() -> None:
    form = "application/x-www-form-urlencoded"
    assert form_method_overrides([b"a=1&_method=delete&b=2"], form) == {"DELETE"}
    assert form_method_overrides([b"%5Fmethod=PUT"], form) == {"PUT"}
    assert form_method_overrides([b"a=1&my_method=x"], form) == set()
    # A field cut by a chunk boundary is still seen.
    assert form_method_overrides([b"a=" + b"x" * 100 + b"&_met", b"hod=PATCH"], form) == {"PATCH"}
    multipart = "multipart/form-data; boundary=XyZ"
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="title"\r\n\r\nhello\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--XyZ--\r\n'
    )
    assert form_method_overrides([body], multipart) == {"DELETE"}


TOKEN = "sk-policy-upstream-2b7e"


def tree(base: str) -> dict[str, Any]:
    policy = {
        "allow": [
            {"methods": ["GET", "HEAD"], "paths": ["/repos/*/issues"]},
            {"methods": ["POST"], "paths": ["/repos/acme/**"]},
        ]
    }
    return {"connections": [connection("gh", base, bearer(TOKEN), policy=policy)]}


FORBIDDEN = {
    "encoded slash": ("GET", "/gh/repos/x%2Fy/issues", ""),
    "lowercase encoded slash": ("GET", "/gh/repos/x%2fy/issues", ""),
    "X-HTTP-Method-Override": ("GET", "/gh/repos/x/issues", "X-HTTP-Method-Override: DELETE\r\n"),
    "X-HTTP-Method": ("GET", "/gh/repos/x/issues", "X-HTTP-Method: PUT\r\n"),
    "X-Method-Override": ("GET", "/gh/repos/x/issues", "X-Method-Override: DELETE\r\n"),
    "_method": ("GET", "/gh/repos/x/issues?_method=DELETE", ""),
    "POST overriding to DELETE": (
        "POST",
        "/gh/repos/acme/x",
        "X-HTTP-Method-Override: DELETE\r\nContent-Length: 0\r\n",
    ),
}
FORM = "Content-Type: application/x-www-form-urlencoded\r\n"
FORBIDDEN_FORMS = {
    "form _method": ("/gh/repos/acme/x", FORM, b"title=x&_method=DELETE"),
    "chunked form _method": ("/gh/repos/acme/x", FORM, b"_method=PUT"),
    "multipart _method": (
        "/gh/repos/acme/x",
        "Content-Type: multipart/form-data; boundary=B\r\n",
        b'--B\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--B--\r\n',
    ),
}


async def sent_through(make_proxy: MakeProxy, raw: bytes) -> tuple[Message, RawUpstream]:
    """The answer to `raw` from the proxy of `tree`; and its upstream."""
    async with rawhttp.raw_upstream() as upstream:
        port = rawhttp.port_of(await make_proxy(tree(upstream.base)))
        return await rawhttp.round_trip(port, raw), upstream


@pytest.mark.parametrize("name", FORBIDDEN_FORMS)
async def test_a_form_body_naming_another_method_is_403_before_anything_is_sent(
    make_proxy: MakeProxy, name: str
) -> None:
    target, headers, body = FORBIDDEN_FORMS[name]
    if name.startswith("chunked"):
        framing = "Transfer-Encoding: chunked\r\n"
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        framing, payload = f"Content-Length: {len(body)}\r\n", body
    raw = f"POST {target} HTTP/1.1\r\nHost: p\r\n{headers}{framing}\r\n".encode() + payload
    reply, upstream = await sent_through(make_proxy, raw)
    assert reply.status == 403
    assert '"request_forbidden"' in reply.body.decode()
    assert upstream.connections == 0


async def test_a_form_body_without_another_method_is_forwarded_whole(
    make_proxy: MakeProxy,
) -> None:
    body = b"title=x&state=open&method=none"
    raw = (
        f"POST /gh/repos/acme/x HTTP/1.1\r\nHost: p\r\n{FORM}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reply, upstream = await sent_through(make_proxy, raw)
    assert reply.status == 200
    [received] = upstream.received
    assert received.request.body == body
    assert received.request.get("Content-Length") == str(len(body))


@pytest.mark.parametrize("case", FORBIDDEN.values(), ids=FORBIDDEN.keys())
async def test_bypasses_are_403_and_nothing_goes_upstream(
    make_proxy: MakeProxy, case: tuple[str, str, str]
) -> None:
    method, target, headers = case
    raw = f"{method} {target} HTTP/1.1\r\nHost: p\r\n{headers}\r\n".encode()
    reply, upstream = await sent_through(make_proxy, raw)
    assert reply.status == 403
    assert '"request_forbidden"' in reply.body.decode()
    assert upstream.received == []


ALLOWED = {
    "plain": ("GET", "/gh/repos/x/issues", ""),
    "an override naming an allowed method": (
        "GET",
        "/gh/repos/x/issues",
        "X-HTTP-Method-Override: HEAD\r\n",
    ),
    "an encoded character that is no slash": ("GET", "/gh/repos/x%20y/issues", ""),
    "an encoded slash under **": ("POST", "/gh/repos/acme/a%2Fb", "Content-Length: 0\r\n"),
}


@pytest.mark.parametrize("case", ALLOWED.values(), ids=ALLOWED.keys())
async def test_allowed_requests_pass_byte_for_byte(
    make_proxy: MakeProxy, case: tuple[str, str, str]
) -> None:
    method, target, headers = case
    raw = f"{method} {target} HTTP/1.1\r\nHost: p\r\n{headers}\r\n".encode()
    reply, upstream = await sent_through(make_proxy, raw)
    assert reply.status == 200
    [received] = upstream.received
    assert received.request.target == target.removeprefix("/gh")
