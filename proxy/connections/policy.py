"""Pure decisions for clients and policy (docs/security.md, "Clients and policy").

No I/O, no clock of its own, no aiohttp: the pieces `access.py` puts together on the request
path, each testable alone.

- `candidate_keys()`: where a client key may sit, the way SDKs already send their `api_key`
  (`Authorization: Bearer|token`, Basic username or password, `X-Api-Key`,
  `Proxy-Authorization: Bearer`), with the header that carried it.
- `KeyRing`: which client a key belongs to: the presented key's SHA-256 looked up in a dict
  of the clients' digests (one hash, one lookup, whatever the number of clients), the entry
  found confirmed with `hmac.compare_digest`. Why a digest lookup leaks nothing usable is in
  the class.
- `compile_path_pattern()` / `segmentations()` / `Rule`: method and path allow-rules. A pattern
  is matched segment by segment against the percent-decoded route-relative path: `*` is one
  whole segment (or, inside a segment, any run of characters of that segment), `**` any number
  of segments. An upstream may decode `%2F` into a separator or keep it inside its segment, so
  a path is read both ways — split on its raw slashes then decoded, and decoded (again while
  `%25` leaves escapes) then split —
  and, when the two differ, allowed only when both are: `/repos/x%2Fy/issues` is
  `/repos/x/y/issues` to a rule `/repos/*/*/issues` and `/repos/{x/y}/issues` to a rule
  `/repos/*/issues`, so neither rule alone lets it through.
- `method_overrides()`: the methods a request names in `X-HTTP-Method-Override`,
  `X-HTTP-Method`, `X-Method-Override` or a `_method` query parameter, which many frameworks
  honour instead of the request's own: a method policy checks each of them too;
  `form_method_overrides()` the same for a `_method` field of a form body.
- `PolicyMatcher`: one policy's rules arranged for the request path (per method: any path,
  a set of literal paths, the glob patterns), built once per connection and policy.
- `TokenBucket`: a rate limit of `requests` per `per` seconds with bursts up to `requests`,
  on an injected clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")

# --- presenting a key ----------------------------------------------------------------------

_BEARER_SCHEMES = frozenset({b"bearer", b"token"})
# Each candidate costs a SHA-256 and a lookup: a head stuffed with key headers must not
# multiply that. Real requests carry one or two.
MAX_PRESENTED_KEYS = 8
# The headers that may carry a client key, as `candidate_keys` names them.
KEY_CARRIERS = ("x-api-key", "authorization", "proxy-authorization")


def candidate_keys(headers: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[str, bytes]]:
    """`(lowercase header name, key bytes)` for every place a client key may be, in header
    order (the first `MAX_PRESENTED_KEYS` of them), produced one at a time so that the caller
    stops at the first key it knows: the usual request pays for one candidate.

    Raw header bytes in, so nothing is decoded for a request that presents no key where one
    may be, and a key is compared as the bytes that were sent (UTF-8 for a non-ASCII key, as
    the config's key is hashed). A Basic credential offers both its username and its
    password: SDKs that take one secret put it in either (Stripe's as the username, others as
    the password).
    """
    left = MAX_PRESENTED_KEYS
    for name, value in headers:
        if len(name) not in _KEY_HEADER_LENGTHS:
            continue  # most headers: one length test
        low = name.lower()
        if low == b"x-api-key":
            value = value.strip()
            if value:
                yield "x-api-key", value
                left -= 1
        elif low == b"authorization" or low == b"proxy-authorization":
            scheme, _, rest = value.strip().partition(b" ")
            scheme, rest = scheme.lower(), rest.strip()
            if not rest:
                continue
            carrier = "authorization" if low == b"authorization" else "proxy-authorization"
            if scheme in _BEARER_SCHEMES and (carrier == "authorization" or scheme == b"bearer"):
                yield carrier, rest
                left -= 1
            elif scheme == b"basic" and carrier == "authorization":
                for part in _basic_parts(rest):
                    if left > 0:
                        yield carrier, part
                        left -= 1
        if left <= 0:
            return


_KEY_HEADER_LENGTHS = frozenset(
    len(n) for n in ("x-api-key", "authorization", "proxy-authorization")
)


def _basic_parts(token: bytes) -> list[bytes]:
    # RFC 7617 §2: base64(user-id ":" password); the user-id holds no colon.
    try:
        decoded = base64.b64decode(token, validate=True)
    except binascii.Error:
        return []
    username, _, password = decoded.partition(b":")
    return [part for part in (username, password) if part]


def key_digest(key: str | bytes) -> bytes:
    """SHA-256 of a key's bytes (UTF-8 for text): what `keySha256` holds, in hex."""
    return hashlib.sha256(key.encode("utf-8") if isinstance(key, str) else key).digest()


class KeyRing(Generic[T]):
    """Finds the owner of a presented key among the clients' key digests.

    One SHA-256 of the presented key and one dict lookup, whatever the number of clients: the
    cost of a request does not grow with the file, and does not depend on which client (if
    any) holds the key.

    Why looking the digest up in a dict is safe, although the dict compares with `==` and
    probes by hash: what its timing could reveal is how the *digest* of a guess relates to
    the stored digests (a shared hash slot, a common prefix). An attacker steers the key, not
    its SHA-256: making a digest start with chosen bytes is a preimage search, so learning
    "the digest of my guess shares 3 bytes with a client's digest" tells nothing about the
    client's key and cannot be built on byte by byte, the way an early-exit comparison of
    the keys themselves could be. (Python's bytes hash is also keyed per process.) The entry
    found is then confirmed with `hmac.compare_digest`, so the decision of record is still a
    constant-time comparison of the full digests.
    """

    __slots__ = ("_owners",)

    def __init__(self, owners: Sequence[tuple[bytes, T]]) -> None:
        # The first owner of a digest wins, as before (`check` refuses two clients with one key).
        self._owners: dict[bytes, tuple[bytes, T]] = {}
        for digest, owner in owners:
            self._owners.setdefault(digest, (digest, owner))

    def owner(self, key: str | bytes) -> T | None:
        digest = key_digest(key)
        entry = self._owners.get(digest)
        if entry is None or not hmac.compare_digest(digest, entry[0]):
            return None
        return entry[1]


# --- method and path rules -----------------------------------------------------------------

# One pattern segment: a literal (compared decoded), `ANY` for `*` (one non-empty segment), or
# a compiled glob for a `*` inside a segment such as `*.json`. `**` splits a pattern instead.
ANY = object()
Segment = str | re.Pattern[str] | object


class PatternError(ValueError):
    """A path pattern that cannot be used; the message says why."""


class PathPattern:
    """A compiled `/repos/*/**`-style pattern.

    Strategy: the pattern is cut at each `**` into chunks of plain segments. Without `**` a
    path matches when it has exactly as many segments and each matches. With `**`, the first
    chunk must match the first segments and the last chunk the last ones; each chunk between is
    placed at its leftmost match after the one before, which is never worse than a later place
    because the `**` on either side can take any number of segments.
    """

    __slots__ = ("chunks", "text")

    def __init__(self, text: str) -> None:
        if not text.startswith("/"):
            raise PatternError("must start with '/'")
        if any(ch in text for ch in "?#"):
            raise PatternError("matches the path only: no '?' or '#'")
        self.text = text
        chunks: list[list[Segment]] = [[]]
        for part in text[1:].split("/"):
            if part == "**":
                chunks.append([])
            else:
                chunks[-1].append(_segment(part))
        self.chunks = tuple(tuple(chunk) for chunk in chunks)

    def matches(self, path: Sequence[str]) -> bool:
        chunks = self.chunks
        first = chunks[0]
        if len(chunks) == 1:
            return len(path) == len(first) and _all_match(first, path, 0)
        last = chunks[-1]
        low, high = len(first), len(path) - len(last)
        if high < low or not _all_match(first, path, 0) or not _all_match(last, path, high):
            return False
        for chunk in chunks[1:-1]:
            size = len(chunk)
            while low + size <= high and not _all_match(chunk, path, low):
                low += 1
            if low + size > high:
                return False
            low += size
        return True


def _segment(text: str) -> Segment:
    if "**" in text:
        raise PatternError("'**' must be a whole segment")
    if text == "*":
        return ANY
    if "*" in text:
        parts = (re.escape(part) for part in text.split("*"))
        return re.compile("[\\s\\S]*".join(parts))
    # Written decoded or encoded alike (`a b` or `a%20b`): compared decoded.
    return unquote(text, errors="surrogateescape") if "%" in text else text


def _all_match(pattern: Sequence[Segment], path: Sequence[str], start: int) -> bool:
    for offset, want in enumerate(pattern):
        segment = path[start + offset]
        if want is ANY:
            if not segment:
                return False
        elif isinstance(want, str):
            if want != segment:
                return False
        elif not segment or want.fullmatch(segment) is None:  # type: ignore[attr-defined]
            return False
    return True


def compile_path_pattern(pattern: str) -> PathPattern:
    """Compile `/repos/*/**`-style text; raise `PatternError` when it is not a usable pattern."""
    return PathPattern(pattern)


def path_segments(raw_tail: str) -> tuple[str, ...]:
    """The route-relative path as percent-decoded segments, split on raw `/` only.

    `""` and `"/"` (the route itself) are the one empty segment, as the pattern `/` is.
    """
    if raw_tail in ("", "/"):
        return ("",)
    body = raw_tail[1:] if raw_tail.startswith("/") else raw_tail
    if "%" not in body:
        return tuple(body.split("/"))  # the usual path: nothing to decode
    return tuple(
        unquote(part, errors="surrogateescape") if "%" in part else part for part in body.split("/")
    )


# Decoding rounds for the decoded reading: `%252F` is `%2F` after one and `/` after two, as a
# chain of two decoding hops (a gateway, then the application) would read it.
_DECODE_ROUNDS = 4


def decoded_segments(raw_tail: str) -> tuple[str, ...]:
    """The route-relative path percent-decoded first (until decoding changes nothing, a few
    rounds at most), then split on `/`: an encoded slash is a separator here, as it is to an
    upstream that decodes before routing."""
    decoded = raw_tail[1:] if raw_tail.startswith("/") else raw_tail
    for _ in range(_DECODE_ROUNDS):
        if "%" not in decoded:
            break
        decoded = unquote(decoded, errors="surrogateescape")
    return ("",) if decoded in ("", "/") else tuple(decoded.split("/"))


def segmentations(raw_tail: str) -> tuple[tuple[str, ...], ...]:
    """Every way an upstream may read the path into segments: one, or two when decoding
    `%2F` into a separator changes it. A rule set allows the path only if it allows each."""
    raw = path_segments(raw_tail)
    if "%" not in raw_tail:
        return (raw,)
    decoded = decoded_segments(raw_tail)
    return (raw,) if decoded == raw else (raw, decoded)


# Headers (and a query parameter) through which frameworks let a request name another method:
# Symfony, Laravel, Express' method-override, Google APIs, Rails' `_method`.
METHOD_OVERRIDE_HEADERS = frozenset(
    {b"x-http-method-override", b"x-http-method", b"x-method-override"}
)
_OVERRIDE_LENGTHS = frozenset(len(name) for name in METHOD_OVERRIDE_HEADERS)


def method_overrides(headers: Iterable[tuple[bytes, bytes]], query: str) -> set[str]:
    """The methods a request names besides its own, uppercase (empty for nearly all)."""
    named: set[str] = set()
    for name, value in headers:
        if len(name) in _OVERRIDE_LENGTHS and name.lower() in METHOD_OVERRIDE_HEADERS:
            text = value.decode("latin-1")
            named.update(part.strip().upper() for part in text.split(",") if part.strip())
    if query:  # (`_method` may be written encoded: every name is decoded to be sure)
        for pair in query.split("&"):
            key, _, given = pair.partition("=")
            if unquote(key.replace("+", " ")) == "_method":
                named.add(unquote(given.replace("+", " ")).strip().upper())
    return named


@dataclass(frozen=True, slots=True)
class Rule:
    """One `policy.allow` entry: methods (None = any) and path patterns (None = any path)."""

    methods: frozenset[str] | None
    patterns: tuple[PathPattern, ...] | None
    source: str  # how the rule reads in the file, for `explain` and error details

    def allows(self, method: str, path: Sequence[str]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.patterns is None:
            return True
        for pattern in self.patterns:
            if pattern.matches(path):
                return True
        return False


def first_allowing(rules: Sequence[Rule], method: str, raw_tail: str) -> int | None:
    """Index of the first rule allowing `method` on `raw_tail` read the raw way, or None
    (default deny; also when a rule allows the raw reading but none the decoded one)."""
    first: int | None = None
    for path in segmentations(raw_tail):
        index = next((i for i, rule in enumerate(rules) if rule.allows(method, path)), None)
        if index is None:
            return None
        if first is None:
            first = index
    return first


class PolicyMatcher:
    """`first_allowing(rules, ...) is not None`, arranged for the request path.

    Built once per connection and policy. Per method named by a rule (and once for any other
    method, from the rules without `methods`): whether some rule allows any path, the set of
    literal paths (as segment tuples: one lookup), and the glob patterns to try. Which rule
    allowed does not matter here (`explain` asks `first_allowing`), so the rules can be
    merged; the answer is the same.
    """

    __slots__ = ("_by_method", "_other", "restricts_methods")

    def __init__(self, rules: Sequence[Rule]) -> None:
        named = {method for rule in rules if rule.methods is not None for method in rule.methods}
        self._by_method = {
            method: _arranged(r for r in rules if r.methods is None or method in r.methods)
            for method in named
        }
        self._other = _arranged(r for r in rules if r.methods is None)
        # A method policy: some method is allowed less than another (method overrides matter).
        self.restricts_methods = any(rule.methods is not None for rule in rules)

    def allows(self, method: str, raw_tail: str) -> bool:
        entry = self._by_method.get(method, self._other)
        if entry is None:
            return False
        any_path, literal, globs = entry
        if any_path:
            return True
        for path in segmentations(raw_tail):
            if not _path_allowed(path, literal, globs):
                return False
        return True


def _path_allowed(
    path: tuple[str, ...], literal: frozenset[tuple[str, ...]], globs: tuple[PathPattern, ...]
) -> bool:
    if path in literal:
        return True
    for pattern in globs:
        if pattern.matches(path):
            return True
    return False


_Arranged = tuple[bool, frozenset[tuple[str, ...]], tuple[PathPattern, ...]] | None


def _arranged(rules: Iterable[Rule]) -> _Arranged:
    any_path = False
    literal: set[tuple[str, ...]] = set()
    globs: list[PathPattern] = []
    seen = False
    for rule in rules:
        seen = True
        if rule.patterns is None:
            any_path = True
            continue
        for pattern in rule.patterns:
            chunks = pattern.chunks
            if len(chunks) == 1 and all(isinstance(part, str) for part in chunks[0]):
                literal.add(tuple(str(part) for part in chunks[0]))
            else:
                globs.append(pattern)
    return (any_path, frozenset(literal), tuple(globs)) if seen else None


# A `_method` field in a form body (Rails' Rack::MethodOverride, Laravel, Symfony): in
# `application/x-www-form-urlencoded` as `_method=VALUE` (the name possibly encoded), in
# `multipart/form-data` as a part named `_method`.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_FORM_FIELD = re.compile(rb"(?:^|&)(?:_|%5[Ff])method=([^&]{0,64})")
_MULTIPART_FIELD = re.compile(
    rb'name="?_method"?[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\n([^\r\n]{0,64})', re.IGNORECASE
)
# Bytes carried over between chunks so a field cut by a chunk boundary is still seen.
_FORM_OVERLAP = 512


def is_form(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";")[0].strip().lower() in FORM_TYPES


def form_method_overrides(chunks: Iterable[bytes], content_type: str) -> set[str]:
    """The methods a form body names in `_method` fields, uppercase."""
    pattern = _FORM_FIELD if "urlencoded" in content_type.lower() else _MULTIPART_FIELD
    named: set[str] = set()
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        for found in pattern.finditer(window):
            value = found.group(1).decode("latin-1")
            named.add(unquote(value.replace("+", " ")).strip().upper())
        tail = window[-_FORM_OVERLAP:]
    return named


# --- rate limits ---------------------------------------------------------------------------


class TokenBucket:
    """`requests` per `per` seconds, refilled continuously, bursts up to `requests`.

    Starts full. `take()` spends one token and returns 0.0, or spends nothing and returns the
    seconds until a token will be there (for `Retry-After`).
    """

    __slots__ = ("_capacity", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, requests: int, per: float, clock: Callable[[], float]) -> None:
        self._capacity = float(requests)
        self._rate = requests / per  # tokens per second
        self._clock = clock
        self._tokens = self._capacity
        self._stamp = clock()

    def continue_from(self, other: TokenBucket) -> None:
        """Take over `other`'s level and time when it has the same limit (a reload)."""
        if (other._capacity, other._rate) == (self._capacity, self._rate):
            self._tokens, self._stamp = other._tokens, other._stamp

    def take(self) -> float:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate
