"""Re-signing an `aws-chunked` body (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`) as it passes.

The client cut its body into chunks `<hex size>;chunk-signature=<64 hex>\\r\\n<data>\\r\\n`, ending
with a zero-size chunk, and signed each with its own (placeholder) key, each signature chained to
the one before. A chunk's signature depends only on the previous signature and the chunk's bytes
(`aws_signing.chunk_string_to_sign`), so `ChunkResigner` rewrites each signature with the real key
as the chunk goes by: the sizes, and so the body's length and `Content-Length`, stay exactly as
the client sent them.

A signature is written before its chunk's data, and covers that data, so one chunk at a time is
held (the SDKs send 64 KiB or 128 KiB chunks); a chunk larger than `MAX_CHUNK_BYTES` is refused.
Never the body as a whole.

Sans-I/O, like h11: `feed()` takes whatever bytes arrived and returns the bytes ready to send,
`finish()` says whether the body ended where the format ends. The data plane drives it.
"""

from __future__ import annotations

import hashlib
import re

from ..errors import InvalidRequest
from .aws_signing import Scope, chunk_string_to_sign, signature

MAX_CHUNK_BYTES = 16 * 1024 * 1024
# `<size>;chunk-signature=<64 hex>`: 16 hex digits cover any size, so a longer line is garbage.
_MAX_LINE = 16 + len(";chunk-signature=") + 64
_CHUNK_LINE = re.compile(rb"([0-9a-fA-F]{1,16});chunk-signature=[0-9a-f]{64}")

_SIZE_LINE, _DATA, _DATA_END, _DONE = range(4)


class AwsChunkedError(InvalidRequest):
    def __init__(self, message: str) -> None:
        super().__init__("bad_aws_chunked", message)


class ChunkResigner:
    """Rewrites every `chunk-signature` of an aws-chunked body; one per request body."""

    def __init__(self, key: bytes, timestamp: str, scope: Scope, seed_signature: str) -> None:
        self._key = key
        self._timestamp = timestamp
        self._scope = scope
        self._previous = seed_signature  # the request's own signature chains the first chunk
        self._state = _SIZE_LINE
        self._pending = bytearray()
        self._size = 0
        self._size_text = b""
        self.chunks = 0

    def __repr__(self) -> str:
        return f"ChunkResigner(scope={self._scope}, chunks={self.chunks})"

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes of the client's body; return those ready to go upstream."""
        pending = self._pending
        pending += data
        out: list[bytes] = []
        while True:
            if self._state == _SIZE_LINE:
                end = pending.find(b"\r\n", 0, _MAX_LINE + 2)
                if end < 0:
                    if len(pending) > _MAX_LINE:
                        raise AwsChunkedError("an aws-chunked chunk line is too long to be one")
                    break
                self._start_chunk(bytes(pending[:end]))
                del pending[: end + 2]
            elif self._state == _DATA:
                if len(pending) < self._size:
                    break
                chunk = bytes(pending[: self._size])
                del pending[: self._size]
                out.append(self._signed_line(chunk) + chunk)
                self._state = _DATA_END
            elif self._state == _DATA_END:
                if len(pending) < 2:
                    break
                if pending[:2] != b"\r\n":
                    raise AwsChunkedError("an aws-chunked chunk is longer than its size says")
                del pending[:2]
                out.append(b"\r\n")
                self._state = _SIZE_LINE if self._size else _DONE
            else:
                if pending:
                    raise AwsChunkedError("bytes follow the final aws-chunked chunk")
                break
        return b"".join(out)

    def finish(self) -> None:
        """The client's body has ended: it must have ended with the final chunk."""
        if self._state != _DONE:
            raise AwsChunkedError("the aws-chunked body ended before its final chunk")

    def _start_chunk(self, line: bytes) -> None:
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            raise AwsChunkedError(
                "an aws-chunked chunk line must be '<hex size>;chunk-signature=<64 hex digits>'"
            )
        self._size_text = match.group(1)
        self._size = int(self._size_text, 16)
        if self._size > MAX_CHUNK_BYTES:
            raise AwsChunkedError(f"an aws-chunked chunk is larger than {MAX_CHUNK_BYTES} bytes")
        self._state = _DATA

    def _signed_line(self, chunk: bytes) -> bytes:
        digest = hashlib.sha256(chunk).hexdigest()
        text = chunk_string_to_sign(self._timestamp, self._scope, self._previous, digest)
        self._previous = signature(self._key, text)
        self.chunks += 1
        return self._size_text + b";chunk-signature=" + self._previous.encode("ascii") + b"\r\n"
