"""A strict HTTP/1.1 request reader, and a raw upstream that records every byte through it.

For the tests that prove what reaches an upstream (request smuggling, bytes in = bytes out):
`parse_request` cuts one request out of a byte string by the strictest reading of RFC 9112
(§2.2 CRLF only, §3 a known version and origin-form, §5 a token name and no whitespace before
the colon, field values without CR, LF, NUL or DEL, §6.3 one `Content-Length` of digits or a
`Transfer-Encoding` of exactly `chunked`, never both, §7.1 strict chunk size lines). Anything a
lenient server might read differently raises `Misframed`.

`WireUpstream` keeps each TCP connection's bytes exactly as they arrived, cuts requests with
it (no chunk extensions or trailers: the proxy frames its own chunks), answers each `200 ok`,
and records a `problem` (then closes) on anything misframed. The smuggling tests also use
`parse_request` as the oracle for what a client unambiguously sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

from tests.rawhttp import RawUpstream, serving

MAX_HEAD = 64 * 1024
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2
FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")  # RFC 9110 §5.5: no CR, LF, NUL, DEL
REQUEST_LINE = re.compile(rb"([A-Z]+) (/[\x21-\x7e]*) HTTP/1\.([01])")  # origin-form only
CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,15})\r\n")
# RFC 9112 §7.1.1: `;name[=token|quoted-string]`, optional whitespace around `;` and `=`.
CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*[!#$%&\'*+\-.^_`|~0-9A-Za-z]+"
    rb'(?:[ \t]*=[ \t]*(?:[!#$%&\'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]'
    rb'|\\[\t \x21-\x7e\x80-\xff])*"))?)*'
)


class Misframed(Exception):
    """What the strict reader refused, and why."""


class Incomplete(Exception):
    """More bytes are needed to finish the request."""


@dataclass
class Request:
    """One request as cut out: its exact bytes and the parts of its head."""

    raw: bytes
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int = 0

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def head(self) -> bytes:
        return self.raw[: self.raw.index(b"\r\n\r\n") + 4]

    @property
    def closes(self) -> bool:
        """The connection ends after this request (RFC 9112 §9.3)."""
        tokens = {t.strip().lower() for v in self.get_all("Connection") for t in v.split(",")}
        if self.version == "1.0":
            return "keep-alive" not in tokens
        return "close" in tokens


def parse_request(data: bytes, *, client: bool = False) -> tuple[Request, int]:
    """The request at the start of `data` and its length. `client` reads as a client may
    write: chunk extensions, a trailer section, identical repeated Content-Length values (the
    proxy itself never sends any of them)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEAD or b"\n" in data.replace(b"\r\n", b""):
            raise Misframed("no CRLF CRLF head end")
        raise Incomplete
    if end + 4 > MAX_HEAD:
        raise Misframed("head too large")
    lines = data[:end].split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise Misframed("bare CR or LF in the head")
    line = lines[0]
    if client:
        # RFC 9112 §3: a recipient MAY split the request line on runs of SP.
        line = re.sub(rb" +", b" ", line)
    match = REQUEST_LINE.fullmatch(line)
    if match is None:
        raise Misframed(f"request line {lines[0][:80]!r}")
    headers = [_field(line) for line in lines[1:]]
    version = "1." + match.group(3).decode()
    body, size = _body(data, end + 4, headers, version, client)
    request = Request(
        data[:size], match.group(1).decode(), match.group(2).decode(), version, headers, body
    )
    return request, size


def _field(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    if not colon or TOKEN.fullmatch(name) is None:
        raise Misframed(f"field line {line[:80]!r}")
    value = value.strip(b" \t")
    if FIELD_VALUE.fullmatch(value) is None:
        raise Misframed(f"field value {line[:80]!r}")
    return name.decode("latin-1"), value.decode("latin-1")


def _body(
    data: bytes, start: int, headers: list[tuple[str, str]], version: str, client: bool
) -> tuple[bytes, int]:
    lower = [(k.lower(), v) for k, v in headers]
    hosts = [v for k, v in lower if k == "host"]
    lengths = [v for k, v in lower if k == "content-length"]
    codings = [v for k, v in lower if k == "transfer-encoding"]
    if len(hosts) > 1 or (version == "1.1" and not hosts):
        raise Misframed("not exactly one Host")
    if lengths and codings:
        raise Misframed("both Content-Length and Transfer-Encoding")
    if client and lengths:
        # A client's repeated or listed identical values are one (RFC 9112 §6.3 rule 5).
        values = {v.strip(" \t") for line in lengths for v in line.split(",")}
        lengths = list(values) if len(values) == 1 else lengths + ["conflict"]
    if len(lengths) > 1 or len(codings) > 1:
        raise Misframed("a framing header twice")
    if codings:
        if codings[0].lower() != "chunked" or version != "1.1":
            raise Misframed(f"Transfer-Encoding {codings[0]!r} in HTTP/{version}")
        return _chunked(data, start, client)
    if lengths:
        text = lengths[0]
        if not text.isascii() or not text.isdigit() or len(text) > 15:
            raise Misframed(f"Content-Length {text!r}")
        end = start + int(text)
        if len(data) < end:
            raise Incomplete
        return data[start:end], end
    return b"", start


def _chunked(data: bytes, pos: int, client: bool) -> tuple[bytes, int]:
    parts: list[bytes] = []
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise Incomplete
        line = data[pos : eol + 2]
        size_text, _, ext = line[:-2].partition(b";")
        if ext and not (client and CHUNK_EXT.fullmatch(b";" + ext)):
            raise Misframed(f"chunk extension {line[:80]!r}")
        match = CHUNK_SIZE.fullmatch(size_text + b"\r\n")
        if match is None:
            raise Misframed(f"chunk size line {line[:80]!r}")
        size = int(match.group(1), 16)
        pos = eol + 2
        if size == 0:
            return b"".join(parts), _trailers(data, pos, client)
        if len(data) < pos + size + 2:
            raise Incomplete
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise Misframed("chunk data not followed by CRLF")
        parts.append(data[pos : pos + size])
        pos += size + 2


def _trailers(data: bytes, pos: int, client: bool) -> int:
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise Incomplete
        if eol == pos:
            return pos + 2
        if not client:
            raise Misframed("a trailer section")
        line = data[pos:eol]
        if b"\r" in line or b"\n" in line:
            raise Misframed("bare CR or LF in a trailer")
        _field(line)
        pos = eol + 2


@dataclass
class WireUpstream(RawUpstream):
    """`RawUpstream`'s server and addresses, with the strict recording reader of this module."""

    streams: list[bytearray] = field(default_factory=list)  # each connection's bytes
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def all_bytes(self) -> bytes:
        return b"".join(bytes(c) for c in self.streams)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(self.streams)
        seen = bytearray()
        self.streams.append(seen)
        self.writers.add(writer)
        pending = b""
        try:
            while data := await reader.read(65536):
                seen += data
                pending += data
                while pending:
                    try:
                        request, size = parse_request(pending)
                    except Incomplete:
                        break
                    request.connection = number
                    self.requests.append(request)
                    pending = pending[size:]
                    writer.write(OK)
                    await writer.drain()
        except Misframed as exc:
            self.problems.append(f"connection {number}: {exc}")
        except ConnectionError:
            return
        finally:
            self.writers.discard(writer)
            writer.close()


def wire_upstream() -> contextlib.AbstractAsyncContextManager[WireUpstream]:
    """Serve a `WireUpstream` on 127.0.0.1 for the duration of the block."""
    return serving(WireUpstream())
