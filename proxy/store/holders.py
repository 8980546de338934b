"""Who holds a store: every process serving from it holds it shared, `rotate-key` exclusively.

A key rotation beside a running proxy would leave that proxy sealing new rows under the old key:
the store then holds values under two keys and the next start cannot open some of them. So
`rotate-key` refuses while any process holds the store, and learns that from the store itself,
not from process lists (a replica may run on another machine):

- SQLite: a `flock(2)` lock on the database file. `flock` locks belong to the open file
  description and do not interact with the POSIX record locks SQLite takes on the same file
  (Linux `flock(2)`, "Notes"). The kernel drops them with the process, so a killed proxy holds
  nothing. The descriptor is closed only after SQLite's own connection: closing any descriptor
  of a file drops that process's POSIX locks on it (`fcntl(2)`). Local file systems only: NFS
  emulates `flock` with record locks, but a WAL-mode SQLite store must be local anyway (its
  `-shm` index is shared memory).
- PostgreSQL: a session-level shared advisory lock (`pg_advisory_lock_shared`) on a database
  connection each process keeps open while it serves; the server drops it with the session.

A process that opens the store waits while a rotation holds it, then opens under whatever key
the rotation left: never half-way through one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from . import StoreError

# Any constant: the advisory lock every serving process holds shared (PostgreSQL).
PG_HOLDERS_LOCK = 0x53494748


class StoreInUse(StoreError):
    """`rotate-key` met a process that holds the store."""


def hold_shared(db_path: Path) -> int:
    """Open the database file (creating it empty if missing) and hold it shared, waiting while
    a rotation holds it; return the descriptor, to be closed after SQLite's connection."""
    fd = os.open(db_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


def hold_exclusive(db_path: Path) -> int:
    """Hold the database file alone, at once, or raise `StoreInUse`; return the descriptor."""
    fd = os.open(db_path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreInUse(in_use_message(str(db_path))) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def in_use_message(store: str) -> str:
    return (
        f"{store} is in use by a running proxy; stop every process serving from it "
        "(every worker and replica), then run rotate-key again"
    )
