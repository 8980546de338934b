"""Serialising RFC 8941 Structured Field Values: the subset HTTP message signatures write.

RFC 9421 writes `Signature-Input` and `Signature` as Dictionaries (RFC 8941 §3.2) and the
`@signature-params` line of the signature base as an Inner List (§3.1.1); RFC 9530 writes
`Content-Digest` as a Dictionary of Byte Sequences. The proxy only ever writes these fields, so
this module serialises (§4.1) and never parses. Each function follows the numbered algorithm of
its section and refuses what the algorithm calls a failure with `ValueError`.

Python values stand for the bare item types: `int` Integer, `str` String, `Token` Token,
`bytes` Byte Sequence, `bool` Boolean (Decimals are not written by any of these fields).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "BareItem",
    "InnerList",
    "Item",
    "Token",
    "serialize_dictionary",
    "serialize_inner_list",
    "serialize_item",
]


class Token(str):
    """An RFC 8941 §3.3.4 Token (written without quotes), as opposed to a String."""

    __slots__ = ()


BareItem = int | str | bytes | bool
Parameters = Sequence[tuple[str, BareItem]]

# §3.1.2: key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
# §3.3.4: token = ( ALPHA / "*" ) *( tchar / ":" / "/" ), tchar from RFC 9110 §5.6.2
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_MAX_INTEGER = 999_999_999_999_999


@dataclass(frozen=True, slots=True)
class Item:
    """A bare item with its parameters (§3.3)."""

    value: BareItem
    params: Parameters = ()


@dataclass(frozen=True, slots=True)
class InnerList:
    """An Inner List (§3.1.1): items and the list's own parameters."""

    items: Sequence[Item] = ()
    params: Parameters = field(default=())


def serialize_item(item: Item) -> str:
    """§4.1.3."""
    return _bare_item(item.value) + _parameters(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    """§4.1.1.1: `(` the items separated by single spaces `)` then the parameters."""
    return "(" + " ".join(serialize_item(i) for i in inner.items) + ")" + _parameters(inner.params)


def serialize_dictionary(members: Mapping[str, Item | InnerList]) -> str:
    """§4.1.2: `key=member` joined by `, `; a Boolean true member is written as its key alone."""
    out: list[str] = []
    for key, member in members.items():
        text = _key(key)
        if isinstance(member, InnerList):
            text += "=" + serialize_inner_list(member)
        elif member.value is True:
            text += _parameters(member.params)
        else:
            text += "=" + serialize_item(member)
        out.append(text)
    return ", ".join(out)


def _parameters(params: Iterable[tuple[str, BareItem]]) -> str:
    """§4.1.1.2: `;key` for a Boolean true value, else `;key=value`."""
    out = ""
    for key, value in params:
        out += ";" + _key(key)
        if value is not True:
            out += "=" + _bare_item(value)
    return out


def _key(key: str) -> str:
    """§4.1.1.3."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a structured-field key (RFC 8941 §3.1.2)")
    return key


def _bare_item(value: BareItem) -> str:
    """§4.1.3.1. `bool` is tested before `int`: in Python a bool is an int."""
    if isinstance(value, bool):
        return "?1" if value else "?0"  # §4.1.9
    if isinstance(value, int):
        if abs(value) > _MAX_INTEGER:  # §4.1.4
            raise ValueError("an integer has at most 15 digits (RFC 8941 §3.3.1)")
        return str(value)
    if isinstance(value, Token):
        if not _TOKEN.fullmatch(value):  # §4.1.7
            raise ValueError(f"{value!r} is not a token (RFC 8941 §3.3.4)")
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bytes):
        # §4.1.8: base64 with padding (RFC 4648 §4) between colons.
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    raise TypeError(f"no structured-field type for {type(value).__name__}")


def _string(value: str) -> str:
    """§4.1.6: printable ASCII only; backslash and double quote escaped."""
    if any(not (0x20 <= ord(ch) <= 0x7E) for ch in value):
        raise ValueError("a structured-field string holds printable ASCII only (RFC 8941 §3.3.3)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
