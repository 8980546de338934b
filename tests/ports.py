"""Loopback ports for tests that must name a port before the server binds it."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def free_port() -> int:
    """A loopback port that was free a moment ago, for a server that must be told its port before
    it starts (a config file names it) and so cannot listen on port 0 and report what it got.

    Picked at random below the kernel's ephemeral range (`ip_local_port_range`), from which every
    port-0 bind and every outgoing connection on the machine draws: none of those can take it in
    the moment before the server binds it, only another test's pick among thousands."""
    low = ephemeral_low()
    for _ in range(100):
        port = _random.randrange(low - PICK_SPAN, low) if low - PICK_SPAN >= 1024 else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or in TIME_WAIT): another one
            found: int = sock.getsockname()[1]
            return found
    raise AssertionError("no free port below the ephemeral range")


PICK_SPAN = 12000
_random = random.SystemRandom()


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; 49152, IANA's, elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152
