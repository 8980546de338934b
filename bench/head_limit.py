"""What the response-head limits cost on the tiny-GET path: ns per parsed response, side by side.

`H1Connection` parses a typical small upstream response (one segment: head and a 2-byte body),
once as shipped (head byte count and field count checked) and once through a subclass
with the checks taken out (the parser fed directly, as before the limits). Alternating rounds,
medians and fastest rounds; the ratios are the figure (1.00 = no measurable cost).

    python bench/head_limit.py [--rounds 9] [--n 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from proxy.http1.connection import H1Connection

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 01 Dec 2026 12:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
)


class Unbounded(H1Connection):
    """The parse path without the limits: bytes go straight to llhttp, every field is kept."""

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self._feed(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._ignore:
            self._headers.append((name, value))


class Transport:
    """Enough of a transport for `end()`; nothing is written in this bench."""

    def resume_reading(self) -> None: ...

    def pause_reading(self) -> None: ...


def ns_per_response(conn: H1Connection, n: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(n):
        conn.begin("GET")
        conn.request_sent = True
        conn.data_received(RESPONSE)
        conn.take_buffered()
        conn.end()
    return (time.perf_counter_ns() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    bounded, unbounded = H1Connection(loop), Unbounded(loop)
    for conn in (bounded, unbounded):
        conn.transport = Transport()  # type: ignore[assignment]
        assert ns_per_response(conn, 10) > 0 and conn.head is not None
    results: dict[str, list[float]] = {"bounded": [], "unbounded": []}
    for _ in range(args.rounds):
        results["unbounded"].append(ns_per_response(unbounded, args.n))
        results["bounded"].append(ns_per_response(bounded, args.n))
    loop.close()
    for name, values in results.items():
        print(f"{name:>10}: median {statistics.median(values):7.0f} ns/response "
              f"(min {min(values):.0f}, max {max(values):.0f}, {args.rounds} rounds)")  # fmt: skip
    ratio = statistics.median(results["bounded"]) / statistics.median(results["unbounded"])
    # On a shared machine the fastest round is the least disturbed one: its ratio too.
    best = min(results["bounded"]) / min(results["unbounded"])
    print(f"bounded / unbounded: {ratio:.3f} (medians), {best:.3f} (fastest rounds)")


if __name__ == "__main__":
    main()
