"""Pure decisions for clients and policy (docs/security.md, "Clients and policy").

No I/O, no clock of its own, no aiohttp: the pieces `access.py` puts together on the request
path, each testable alone.

- `presented_keys()`: where a client key may sit, the way SDKs already send their `api_key`
  (`Authorization: Bearer|token`, Basic username or password, `X-Api-Key`,
  `Proxy-Authorization: Bearer`), with the header that carried it.
- `KeyRing`: which client a key belongs to, by SHA-256 digest compared with
  `hmac.compare_digest` against every client (the time taken does not depend on which, if any,
  matched, nor on how much of a guess was right).
- `compile_path_pattern()` / `path_segments()` / `Rule`: method and path allow-rules. A pattern
  is matched segment by segment against the percent-decoded route-relative path: `*` is one
  whole segment (or, inside a segment, any run of characters of that segment), `**` any number
  of segments. The path is split on its *raw* slashes before decoding, so `%2F` is content of
  its segment, never a separator: `/repos/*/*/issues` does not match `/repos/a%2Fb/issues`.
- `TokenBucket`: a rate limit of `requests` per `per` seconds with bursts up to `requests`,
  on an injected clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")

# --- presenting a key ----------------------------------------------------------------------

_BEARER_SCHEMES = frozenset({b"bearer", b"token"})
# Each candidate costs a SHA-256 and a comparison with every client: a head stuffed with
# key headers must not multiply that. Real requests carry one or two.
MAX_PRESENTED_KEYS = 8


def presented_keys(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, bytes]]:
    """`(lowercase header name, key bytes)` for every place a client key may be, in header
    order (the first `MAX_PRESENTED_KEYS` of them).

    Raw header bytes in, so nothing is decoded for a request that presents no key where one
    may be, and a key is compared as the bytes that were sent (UTF-8 for a non-ASCII key, as
    the config's key is hashed). A Basic credential offers both its username and its
    password: SDKs that take one secret put it in either (Stripe's as the username, others as
    the password).
    """
    found: list[tuple[str, bytes]] = []
    for name, value in headers:
        if len(name) not in _KEY_HEADER_LENGTHS:
            continue  # most headers: one length test
        low = name.lower()
        if low == b"x-api-key":
            if value.strip():
                found.append(("x-api-key", value.strip()))
        elif low in (b"authorization", b"proxy-authorization"):
            scheme, _, rest = value.strip().partition(b" ")
            scheme, rest = scheme.lower(), rest.strip()
            if not rest:
                continue
            carrier = low.decode()
            if scheme in _BEARER_SCHEMES and (carrier == "authorization" or scheme == b"bearer"):
                found.append((carrier, rest))
            elif scheme == b"basic" and carrier == "authorization":
                found += [(carrier, part) for part in _basic_parts(rest)]
        if len(found) >= MAX_PRESENTED_KEYS:
            return found[:MAX_PRESENTED_KEYS]
    return found


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
    """Finds the owner of a presented key among the clients' key digests."""

    def __init__(self, owners: Sequence[tuple[bytes, T]]) -> None:
        self._owners = tuple(owners)

    def owner(self, key: str | bytes) -> T | None:
        digest = key_digest(key)
        found: T | None = None
        # Every digest is compared, the match included: no early exit to time.
        for candidate, owner in self._owners:
            if hmac.compare_digest(digest, candidate) and found is None:
                found = owner
        return found


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
    return tuple(
        unquote(part, errors="surrogateescape") if "%" in part else part for part in body.split("/")
    )


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
    """Index of the first rule allowing `method` on `raw_tail`, or None (default deny)."""
    path = path_segments(raw_tail)
    for index, rule in enumerate(rules):
        if rule.allows(method, path):
            return index
    return None


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
