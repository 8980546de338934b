"""The pure decisions of clients and policy (`proxy/connections/policy.py`): key extraction, the key
ring,
path globs on percent-decoded segments, and the token bucket on a fixed clock."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.connections.policy import (
    KeyRing,
    PatternError,
    PolicyMatcher,
    Rule,
    TokenBucket,
    candidate_keys,
    compile_path_pattern,
    first_allowing,
    key_digest,
    path_segments,
)

KEY = "ck_live_7Hq2"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("latin-1")


# --- presenting a key ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("Authorization", f"Bearer {KEY}")], [("authorization", KEY)]),
        ([("authorization", f"bearer   {KEY} ")], [("authorization", KEY)]),
        ([("Authorization", f"token {KEY}")], [("authorization", KEY)]),  # GitHub's SDKs
        ([("X-Api-Key", KEY)], [("x-api-key", KEY)]),  # Anthropic's SDK
        ([("Proxy-Authorization", f"Bearer {KEY}")], [("proxy-authorization", KEY)]),
        # Stripe's key as the Basic username, others' as the password: both are offered.
        ([("Authorization", basic(KEY, ""))], [("authorization", KEY)]),
        (
            [("Authorization", basic("user", KEY))],
            [("authorization", "user"), ("authorization", KEY)],
        ),
        # Not a key: no value, unknown schemes, Basic that is not base64, token on Proxy-Auth.
        ([("Authorization", "Bearer")], []),
        ([("Authorization", "Bearer   ")], []),
        ([("Authorization", f"Digest {KEY}")], []),
        ([("Authorization", "Basic !!!notbase64")], []),
        ([("Proxy-Authorization", f"token {KEY}")], []),
        ([("X-Api-Key", " ")], []),
        ([("X-Other", KEY)], []),
    ],
)
def test_candidate_keys(headers: list[tuple[str, str]], expected: list[tuple[str, str]]) -> None:
    assert list(candidate_keys(raw(headers))) == [(name, key.encode()) for name, key in expected]


def raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header pairs as the server hands them over: bytes as received."""
    return [(k.encode("utf-8"), v.encode("utf-8")) for k, v in headers]


def test_a_non_ascii_key_is_compared_as_the_utf8_bytes_sent() -> None:
    ring = KeyRing([(key_digest("clé-ünïcode"), "owner")])
    [(_, key)] = list(candidate_keys(raw([("X-Api-Key", "clé-ünïcode")])))
    assert ring.owner(key) == "owner"
    [(_, key)] = list(candidate_keys(raw([("Authorization", basic("clé-ünïcode", ""))])))
    assert ring.owner(key) == "owner"


def test_presented_keys_keep_header_order() -> None:
    headers = [
        ("X-Api-Key", "a"),
        ("Authorization", "Bearer b"),
        ("Proxy-Authorization", "Bearer c"),
    ]
    assert [key for _, key in candidate_keys(raw(headers))] == [b"a", b"b", b"c"]


def test_only_the_first_few_candidates_are_tried() -> None:
    headers = [("X-Api-Key", f"k{i}") for i in range(1000)]
    assert [key for _, key in candidate_keys(raw(headers))] == [f"k{i}".encode() for i in range(8)]


def test_key_ring_finds_the_owner_by_digest() -> None:
    ring = KeyRing([(key_digest("k1"), "one"), (key_digest("k2"), "two")])
    assert ring.owner("k1") == "one"
    assert ring.owner("k2") == "two"
    assert ring.owner("k3") is None
    assert ring.owner("") is None
    # keySha256 in the file is the hex SHA-256 of the key's UTF-8 bytes.
    assert key_digest("k1") == hashlib.sha256(b"k1").digest()


@pytest.mark.parametrize("position", [0, 1, 500, 999])
def test_the_owner_does_not_depend_on_where_the_client_sits(position: int) -> None:
    # One client, or the same client at any place among 1000: the same answer.
    keys = [f"ck-{i:04d}-{'x' * (i % 7)}" for i in range(1000)]
    alone = KeyRing([(key_digest(keys[position]), "me")])
    crowd = KeyRing(
        [(key_digest(k), "me" if i == position else f"c{i}") for i, k in enumerate(keys)]
    )
    for ring in (alone, crowd):
        assert ring.owner(keys[position]) == "me"
        assert ring.owner(keys[position].encode()) == "me"
        # A near miss (one byte off, a prefix, an extension) is nobody's.
        assert ring.owner(keys[position][:-1] + "?") is None
        assert ring.owner(keys[position][:-1]) is None
        assert ring.owner(keys[position] + "x") is None


def test_the_first_of_two_owners_of_one_digest_wins() -> None:
    # `check` refuses this; the ring still answers deterministically.
    ring = KeyRing([(key_digest("k"), "first"), (key_digest("k"), "second")])
    assert ring.owner("k") == "first"


# --- path patterns -------------------------------------------------------------------------


def allowed(pattern: str, tail: str, method: str = "GET", methods: set[str] | None = None) -> bool:
    rule = Rule(frozenset(methods) if methods else None, (compile_path_pattern(pattern),), pattern)
    return first_allowing([rule], method, tail) == 0


@pytest.mark.parametrize(
    ("pattern", "tail", "expected"),
    [
        ("/user", "/user", True),
        ("/user", "/user/", False),
        ("/user", "/users", False),
        ("/user", "/user/x", False),
        ("/repos/*/*/issues", "/repos/octo/hello/issues", True),
        ("/repos/*/*/issues", "/repos/octo/issues", False),
        ("/repos/*/*/issues", "/repos/octo//issues", False),  # `*` is one non-empty segment
        ("/repos/*/*/issues", "/repos/octo/hello/issues/1", False),
        # An encoded slash may be a separator to the upstream or content of its segment: the
        # path is allowed only when both readings are, so neither rule alone lets it through.
        ("/repos/*/*/issues", "/repos/octo%2Fhello/issues", False),
        ("/repos/*/issues", "/repos/octo%2Fhello/issues", False),
        ("/repos/**/issues", "/repos/octo%2Fhello/issues", True),
        ("/files/**", "/files/a%2Fb", True),
        ("/repos/acme/**", "/repos/acme%2F..%2Fother/x", False),
        ("/repos/acme/**", "/repos/acme", True),
        ("/repos/acme/**", "/repos/acme/", True),
        ("/repos/acme/**", "/repos/acme/a/b/c", True),
        ("/repos/acme/**", "/repos/acmeX/a", False),
        ("/repos/**/pulls", "/repos/a/b/pulls", True),
        ("/repos/**/pulls", "/repos/pulls", True),
        ("/repos/**/pulls", "/repos/a/b/pulls/1", False),
        # Two `**`: each chunk between them is found in order.
        ("/a/**/b/**/c", "/a/b/c", True),
        ("/a/**/b/**/c", "/a/x/y/b/z/c", True),
        ("/a/**/b/**/c", "/a/x/b/b/c", True),
        ("/a/**/b/**/c", "/a/c/b", False),
        ("/a/**/b/*/**/c", "/a/b/c", False),
        ("/a/**/b/*/**/c", "/a/b/b/c", True),
        ("/**/x/**", "/x", True),
        ("/**/x/**", "/a/b", False),
        ("/**", "", True),
        ("/**", "/anything/at/all", True),
        ("/", "", True),
        ("/", "/", True),
        ("/", "/x", False),
        # Matched on the percent-decoded text, written either way in the pattern.
        ("/files/my report.pdf", "/files/my%20report.pdf", True),
        ("/files/my%20report.pdf", "/files/my%20report.pdf", True),
        ("/files/*.pdf", "/files/a%2Eb.pdf", True),
        ("/files/*.pdf", "/files/a.txt", False),
        ("/v1/chat/completions", "/v1/chat/%63ompletions", True),
        ("/v1/chat/completions", "/V1/chat/completions", False),  # paths are case-sensitive
    ],
)
def test_path_globs(pattern: str, tail: str, expected: bool) -> None:
    assert allowed(pattern, tail) is expected


def test_segments_split_on_raw_slashes_only() -> None:
    assert path_segments("/a%2Fb/c") == ("a/b", "c")
    assert path_segments("") == ("",)
    assert path_segments("/") == ("",)
    assert path_segments("/a/") == ("a", "")


def test_methods() -> None:
    assert allowed("/x", "/x", "GET", {"GET", "HEAD"})
    assert not allowed("/x", "/x", "POST", {"GET", "HEAD"})
    assert allowed("/x", "/x", "DELETE")  # no methods: any


def test_first_allowing_rule_wins_and_no_rule_denies() -> None:
    rules = [
        Rule(frozenset({"GET"}), (compile_path_pattern("/a/**"),), "r0"),
        Rule(None, (compile_path_pattern("/a/b"),), "r1"),
        Rule(frozenset({"POST"}), None, "r2"),
    ]
    assert first_allowing(rules, "GET", "/a/b") == 0
    assert first_allowing(rules, "PUT", "/a/b") == 1
    assert first_allowing(rules, "POST", "/zzz") == 2
    assert first_allowing(rules, "PUT", "/zzz") is None
    assert first_allowing([], "GET", "/") is None  # an empty policy denies everything


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("user", "must start with '/'"),
        ("/a?b", "matches the path only"),
        ("/a#b", "matches the path only"),
        ("/a**/b", "'**' must be a whole segment"),
    ],
)
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match=re.escape(message)):
        compile_path_pattern(pattern)


# --- token bucket --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_bursts_then_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(3, 60, clock)  # 3 per minute: one token every 20 s
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(20.0)
    clock.now += 5
    assert bucket.take() == pytest.approx(15.0)  # a refused request spends nothing
    clock.now += 15
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(20.0)
    clock.now += 3600  # never more than the burst
    assert [bucket.take() for _ in range(4)][-1] == pytest.approx(20.0)


def test_token_bucket_with_a_clock_going_backwards_does_not_mint_tokens() -> None:
    clock = Clock()
    bucket = TokenBucket(1, 1, clock)
    assert bucket.take() == 0.0
    clock.now -= 100
    assert bucket.take() == pytest.approx(1.0)


def test_a_bucket_continues_from_another_with_the_same_limit_only() -> None:
    clock = Clock()
    old = TokenBucket(2, 60, clock)
    assert old.take() == 0.0 and old.take() == 0.0
    same, other = TokenBucket(2, 60, clock), TokenBucket(3, 60, clock)
    same.continue_from(old)
    other.continue_from(old)
    assert same.take() == pytest.approx(30.0)  # empty, as the old one was
    assert other.take() == 0.0  # another limit starts full


# --- the chunked matcher against a naive one -----------------------------------------------


def naive_match(pattern: list[str], path: list[str]) -> bool:
    """Segment-by-segment backtracking over `**`: slow, obviously right, for comparison."""
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(naive_match(rest, path[skip:]) for skip in range(len(path) + 1))
    if not path:
        return False
    if head == "*":
        ok = path[0] != ""
    else:
        ok = head == path[0]
    return ok and naive_match(rest, path[1:])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "*", "**"]), min_size=1, max_size=6),
    st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=7),
)
def test_the_matcher_agrees_with_naive_backtracking(pattern: list[str], path: list[str]) -> None:
    compiled = compile_path_pattern("/" + "/".join(pattern))
    assert compiled.matches(tuple(path)) is naive_match(pattern, path)


_PATTERNS = ["/a", "/a/b", "/", "/*", "/a/*", "/*.json", "/a/**", "/**/b", "/a%2Fb", "/a/b%20c"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.frozensets(st.sampled_from(["GET", "POST", "HEAD"]), min_size=1),
            st.none() | st.lists(st.sampled_from(_PATTERNS), min_size=1, max_size=3),
        ),
        max_size=4,
    ),
    st.sampled_from(["GET", "POST", "HEAD", "DELETE"]),
    st.lists(st.sampled_from(["a", "b", "", "x.json", "a%2Fb", "b%20c", "b c"]), max_size=4),
)
def test_the_request_path_matcher_agrees_with_first_allowing(
    spec: list[tuple[frozenset[str] | None, list[str] | None]], method: str, parts: list[str]
) -> None:
    rules = [
        Rule(
            methods,
            None if paths is None else tuple(compile_path_pattern(p) for p in paths),
            "rule",
        )
        for methods, paths in spec
    ]
    tail = "/" + "/".join(parts)
    expected = first_allowing(rules, method, tail) is not None
    assert PolicyMatcher(rules).allows(method, tail) is expected
