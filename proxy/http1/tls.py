"""TLS terminated inside a client connection (an intercepted CONNECT tunnel), on memory BIOs.

`ServerTLS` stands in for the connection's transport once the tunnel is set up: what the
server writes is encrypted onto the raw socket, what arrives is decrypted by `feed` before
the HTTP/1.1 parser sees it. Done here rather than with `loop.start_tls` for two reasons: a
handshake that fails (an SNI naming another host: `unrecognized_name`, RFC 6066 §3) must still
send its alert, which asyncio's and uvloop's TLS transports drop when they abort; and bytes the
client sent right after its CONNECT (its ClientHello, read with the head) belong to the
handshake, which `start_tls` could not be handed.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, cast

READ_SIZE = 64 * 1024  # one buffer per session, read into (no allocation per read)


class TLSClosed(Exception):
    """The client ended the TLS session (close_notify)."""


class ServerTLS:
    """The server side of one TLS session over `raw` (a transport-like object)."""

    def __init__(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        self.raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.handshaken = False
        self._closed = False
        self._buffer = bytearray(READ_SIZE)
        self._view = memoryview(self._buffer)

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the socket; the plaintext they complete (b"" for none yet).

        Raises:
            ssl.SSLError: the handshake or a record failed (its alert is sent already).
            TLSClosed: the client sent close_notify.
        """
        self._incoming.write(data)
        if not self.handshaken:
            try:
                self.sslobj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return b""
            except ssl.SSLError:
                self._flush()  # the alert
                raise
            self.handshaken = True
        chunks: list[bytes] = []
        closed = False
        try:
            while True:
                # With a buffer, `read` returns the count (typeshed says bytes).
                size = cast(int, self.sslobj.read(READ_SIZE, self._buffer))
                if not size:  # (with memory BIOs, nothing read is the client's close_notify)
                    closed = True
                    break
                chunks.append(bytes(self._view[:size]))
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            closed = True
        except ssl.SSLError:
            self._flush()
            raise
        self._flush()  # TLS 1.3 session tickets after the handshake, key updates
        if closed and not chunks:
            raise TLSClosed
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _flush(self) -> None:
        pending = self._outgoing.pending
        if pending and not self.raw.is_closing():
            self.raw.write(self._outgoing.read())

    # -- what the server uses of a transport ------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            return
        view = memoryview(data)
        while view:
            written = self.sslobj.write(view)
            view = view[written:]
        self._flush()

    def write_eof(self) -> None:
        """close_notify, then the TCP half-close (RFC 8446 §6.1)."""
        self._notify_close()
        if not self.raw.is_closing():
            self.raw.write_eof()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self._notify_close()
        self.raw.close()

    def abort_quietly(self) -> None:
        """After a failed handshake: close the socket once the alert is written."""
        self._closed = True
        self.raw.close()

    def abort(self) -> None:
        self._closed = True
        self.raw.abort()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.sslobj
        return self.raw.get_extra_info(name, default)

    def _notify_close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.handshaken:
            try:
                self.sslobj.unwrap()
            except ssl.SSLError:
                pass  # (it waits for the client's close_notify: not needed to close)
            self._flush()
