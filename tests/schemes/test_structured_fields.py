"""The RFC 8941 serializer against an independent parser (PyPI `http-sf`, which
`http-message-signatures` is built on): whatever is written parses back to the same values, and
what RFC 8941 forbids is refused."""

from __future__ import annotations

from typing import Any

import http_sf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.schemes.structured_fields import (
    BareItem,
    InnerList,
    Item,
    Token,
    serialize_dictionary,
)

keys = st.from_regex(r"[a-z*][a-z0-9_\-.*]{0,8}", fullmatch=True)
tokens = st.from_regex(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]{0,8}", fullmatch=True).map(Token)
bare: st.SearchStrategy[BareItem] = st.one_of(
    st.integers(-999_999_999_999_999, 999_999_999_999_999),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    tokens,
    st.binary(max_size=20),
    st.booleans(),
)
params = st.lists(st.tuples(keys, bare), max_size=4, unique_by=lambda kv: kv[0])
items = st.builds(Item, bare, params)
members = st.one_of(items, st.builds(InnerList, st.lists(items, max_size=4), params))


def canon(value: Any) -> tuple[str, Any]:
    """A value of either library as (kind, Python value): http-sf's Token is its own class."""
    if isinstance(value, bool):
        return "boolean", value
    if isinstance(value, int):
        return "integer", value
    if isinstance(value, bytes):
        return "bytes", value
    if isinstance(value, Token) or type(value).__name__ == "Token":
        return "token", str(value)
    assert isinstance(value, str), type(value)
    return "string", value


def canon_params(pairs: Any) -> dict[str, tuple[str, Any]]:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return {key: canon(value) for key, value in items}


@given(st.dictionaries(keys, members, min_size=1, max_size=4))
def test_dictionary_round_trips_through_http_sf(dictionary: dict[str, Item | InnerList]) -> None:
    text = serialize_dictionary(dictionary)
    parsed: Any = http_sf.parse(text.encode("ascii"), tltype="dictionary")
    assert list(parsed) == list(dictionary)
    for key, member in dictionary.items():
        value, got_params = parsed[key]
        assert canon_params(got_params) == canon_params(member.params)
        if isinstance(member, InnerList):
            assert [(canon(v), canon_params(p)) for v, p in value] == [
                (canon(i.value), canon_params(i.params)) for i in member.items
            ]
        else:
            assert canon(value) == canon(member.value)


@pytest.mark.parametrize(
    "bad",
    [
        {"Upper": Item(1)},
        {"k": Item("caf\u00e9")},
        {"k": Item("line\nbreak")},
        {"k": Item(10**15)},
        {"k": Item(Token("1abc"))},
        {"k": Item(1, (("Bad", 1),))},
    ],
)
def test_what_rfc_8941_forbids_is_refused(bad: dict[str, Item]) -> None:
    with pytest.raises(ValueError):
        serialize_dictionary(bad)
