"""A raw upstream that records every byte it receives and judges the framing strictly.

For the tests that prove what reaches an upstream (request smuggling, bytes in = bytes out):
each TCP connection's bytes are kept exactly as they arrived, each request is cut out by the
strictest reading of RFC 9112 (§2.2 CRLF only, §5 no whitespace before a colon, §6.3 one
Content-Length of digits or `Transfer-Encoding: chunked` alone, never both, §7.1 strict chunk
size lines), and anything a lenient server might read differently is a `problem`, after which
that connection is closed. Every well-framed request is answered `200 ok`.
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
FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")  # RFC 9110 §5.5, no CR, LF, NUL, DEL
REQUEST_LINE = re.compile(rb"([A-Z]+) (/[\x21-\x7e]*|\*) HTTP/1\.1")  # origin-form only
CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,16})\r\n")


class Misframed(Exception):
    """What the recorder refused to read, and why."""


@dataclass
class Request:
    """One request as the upstream cut it out: its exact bytes and the parts of its head."""

    raw: bytes
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def head(self) -> bytes:
        return self.raw[: self.raw.index(b"\r\n\r\n") + 4]


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
        try:
            while True:
                first = await reader.read(1)
                if not first:
                    return
                seen += first
                request = await self._read_request(reader, seen, first, number)
                self.requests.append(request)
                writer.write(OK)
                await writer.drain()
        except Misframed as exc:
            self.problems.append(f"connection {number}: {exc}")
        except asyncio.LimitOverrunError:
            self.problems.append(f"connection {number}: a line or head over 64 KiB")
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, seen: bytearray, first: bytes, number: int
    ) -> Request:
        start = len(seen) - 1
        rest = await reader.readuntil(b"\r\n\r\n")  # the stream's limit: 64 KiB
        seen += rest
        head = first + rest
        if len(head) > MAX_HEAD:
            raise Misframed("head too large")
        lines = head[:-4].split(b"\r\n")
        if any(b"\n" in line or b"\r" in line for line in lines):
            raise Misframed(f"bare CR or LF in the head: {head!r}")
        match = REQUEST_LINE.fullmatch(lines[0])
        if match is None:
            raise Misframed(f"request line: {lines[0]!r}")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or TOKEN.fullmatch(name) is None:
                raise Misframed(f"field line: {line!r}")
            value = value.strip(b" \t")
            if FIELD_VALUE.fullmatch(value) is None:
                raise Misframed(f"field value: {line!r}")
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        body = await self._read_body(reader, seen, headers)
        return Request(
            bytes(seen[start:]),
            match.group(1).decode(),
            match.group(2).decode("latin-1"),
            headers,
            body,
            number,
        )

    async def _read_body(
        self, reader: asyncio.StreamReader, seen: bytearray, headers: list[tuple[str, str]]
    ) -> bytes:
        lengths = [v for k, v in headers if k.lower() == "content-length"]
        codings = [v for k, v in headers if k.lower() == "transfer-encoding"]
        if [k for k, _ in headers if k.lower() == "host"] != ["Host"]:
            raise Misframed("not exactly one Host")
        if lengths and codings:
            raise Misframed("both Content-Length and Transfer-Encoding")
        if len(lengths) > 1 or len(codings) > 1:
            raise Misframed("a framing header twice")
        if codings:
            if codings[0] != "chunked":
                raise Misframed(f"Transfer-Encoding {codings[0]!r}")
            return await self._read_chunked(reader, seen)
        if lengths:
            if not lengths[0].isdigit() or not lengths[0].isascii() or len(lengths[0]) > 12:
                raise Misframed(f"Content-Length {lengths[0]!r}")
            body = await reader.readexactly(int(lengths[0]))
            seen += body
            return body
        return b""

    async def _read_chunked(self, reader: asyncio.StreamReader, seen: bytearray) -> bytes:
        parts: list[bytes] = []
        while True:
            line = await reader.readuntil(b"\r\n")
            seen += line
            match = CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise Misframed(f"chunk size line {line!r}")
            size = int(match.group(1), 16)
            data = await reader.readexactly(size + 2)
            seen += data
            if size == 0:
                if data != b"\r\n":
                    raise Misframed("a trailer section")
                return b"".join(parts)
            if not data.endswith(b"\r\n"):
                raise Misframed("chunk data not followed by CRLF")
            parts.append(data[:-2])


def wire_upstream() -> contextlib.AbstractAsyncContextManager[WireUpstream]:
    """Serve a `WireUpstream` on 127.0.0.1 for the duration of the block."""
    return serving(WireUpstream())
