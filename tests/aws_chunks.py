"""aws-chunked bodies and their chunk signatures, written from the AWS document
(https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html, "Defining the chunk
body" and "Calculating the chunk signatures"), independently of the proxy's code."""

from __future__ import annotations

import hashlib
import hmac
import re

CHUNK_SIGNATURE = re.compile(rb"chunk-signature=([0-9a-f]{64})")


def aws_chunked(sizes: list[int], fill: bytes = b"a", signature: str = "0" * 64) -> bytes:
    """An aws-chunked body, every chunk signed with `signature` (a client's placeholder)."""
    out = b""
    for size in [*sizes, 0]:
        out += f"{size:x};chunk-signature={signature}\r\n".encode() + fill * size + b"\r\n"
    return out


def aws_chunk_signatures(
    secret: str, timestamp: str, scope: str, seed: str, chunks: list[bytes]
) -> list[str]:
    """Each chunk's signature: HMAC(signing key, "AWS4-HMAC-SHA256-PAYLOAD" \\n timestamp \\n
    scope \\n previous signature \\n sha256("") \\n sha256(chunk)), the first chained to `seed`
    (the request's own signature)."""
    date, region, service, _ = scope.split("/")
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    previous, found = seed, []
    empty = hashlib.sha256(b"").hexdigest()
    for chunk in chunks:
        text = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                timestamp,
                scope,
                previous,
                empty,
                hashlib.sha256(chunk).hexdigest(),
            ]
        )
        previous = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        found.append(previous)
    return found


def chunks_of(body: bytes) -> list[bytes]:
    """The data of each chunk of an aws-chunked body, the final empty one included."""
    chunks, pos = [], 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";", 1)[0], 16)
        chunks.append(body[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2
        if size == 0:
            return chunks
