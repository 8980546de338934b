"""Worker processes (docs/operations.md `run --workers N`): one data-plane port served by N
processes.

The parent binds N listening sockets to the same address with `SO_REUSEPORT` (so the kernel spreads
new client connections evenly over the workers, instead of waking them all for each one), then forks
one worker per socket. Binding happens before any fork, so a busy port fails the command at once,
and a worker restarted after a crash gets the very same socket (client connections queued on it are
not lost). Each worker builds its own event loop, database connection and upstream pool after the
fork: nothing with a thread or an open SQLite handle crosses it. State shared between workers (OAuth
2.0 tokens and their single-flight refresh) lives in the store.

The parent only supervises: SIGTERM/SIGINT are passed on to every worker, which drains its
in-flight requests (`timeouts.shutdownGrace`) and exits; the parent exits 0 when all have.
A worker that dies on its own is restarted (at most once a second). A supervisor that dies
without passing anything on (SIGKILL, OOM killer) takes its workers with it: on Linux each
worker asks the kernel for a SIGTERM when its parent goes, so no orphan keeps serving the port
with a configuration nobody supervises.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from .. import metrics

log = logging.getLogger("signing_proxy")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
RESTART_INTERVAL = 1.0  # seconds between restarts of a crashing worker
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Linux: have the kernel SIGTERM this process when `parent` exits (prctl(2)); elsewhere a
    no-op. Checked once more afterwards: the parent may have gone before the call."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def bind_reuseport(host: str, port: int, count: int, *, backlog: int = 1024) -> list[socket.socket]:
    """`count` listening sockets on one address; port 0 picks a free port shared by all."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # the others join the port the first one got
            sock.listen(backlog)
            sock.setblocking(False)
            sock.set_inheritable(True)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _hangup_before_serving(signum: int, _frame: FrameType | None) -> None:
    """A worker's SIGHUP stays blocked until its loop handles it; should one arrive anyway, it
    must not end the process (SIGHUP's default)."""


Worker = Callable[[int, socket.socket], int]
"""`worker(index, listening_socket)` serves until SIGTERM and returns the exit status."""


class Supervisor:
    """Fork, watch and stop the workers; runs in the parent, which serves nothing itself."""

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        worker: Worker,
        *,
        watch: str | None = None,
        loaded: bytes | None = None,
    ) -> None:
        self._sockets = list(sockets)
        self._worker = worker
        self._watch_path = watch  # `run --watch`: SIGHUP every worker when this file changes
        self._loaded = loaded  # the digest of the file the workers' config was read from
        self._pids: dict[int, int] = {}  # pid → worker index
        self._stopping = False
        self._failed = False

    def run(self) -> int:
        previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        stop_watching = threading.Event()
        try:
            for index in range(len(self._sockets)):
                self._spawn(index)
            if self._watch_path is not None:
                threading.Thread(
                    target=self._watch_file, args=(self._watch_path, stop_watching), daemon=True
                ).start()
            self._watch()
        finally:
            stop_watching.set()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for sock in self._sockets:
                sock.close()
        return 1 if self._failed else 0

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals wait until the new pid is recorded, so a SIGTERM can never miss a worker.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS | {signal.SIGHUP})
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                for signum in STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                # Held (blocked, as at the fork) until the worker's loop takes SIGHUP over and
                # unblocks it (server.py): a reload asked for while the worker starts is then
                # done once it serves, not lost. Never an exit, even if delivered early.
                signal.signal(signal.SIGHUP, _hangup_before_serving)
                die_with_parent(parent)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                for other, sock in enumerate(self._sockets):
                    if other != index:
                        sock.close()
                status = self._worker(index, self._sockets[index])
            except BaseException:
                logging.getLogger("signing_proxy.error").exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(status)
        self._pids[pid] = index
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS | {signal.SIGHUP})
        log.info("worker %d started (pid %d)", index, pid)

    def _watch(self) -> None:
        last_restart = 0.0
        while self._pids:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = self._pids.pop(pid, None)
            if index is None:
                continue
            metrics.worker_gone(pid)
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                # -SIGTERM: stopped before its loop took over the signal (nothing in flight).
                if code not in (0, -signal.SIGTERM):
                    self._failed = True
                continue
            log.error("worker %d (pid %d) exited with %d; restarting it", index, pid, code)
            pause = last_restart + RESTART_INTERVAL - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            last_restart = time.monotonic()
            if not self._stopping:
                self._spawn(index)

    def _on_hangup(self, signum: int, _frame: FrameType | None) -> None:
        """SIGHUP: every worker reloads its configuration (reload.py)."""
        self._reload_workers()

    def _reload_workers(self) -> None:
        if self._stopping:
            return
        log.info("reloading %d worker(s)", len(self._pids), extra={"event": "reload_signal"})
        for pid in list(self._pids):
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    def _watch_file(self, path: str, stop: threading.Event) -> None:
        # A thread: the parent's main loop blocks in os.wait(). One SIGHUP per change.
        from .filewatch import watch_file_blocking

        for _ in watch_file_blocking(path, stop, self._loaded):
            self._reload_workers()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("signal received: stopping %d worker(s)", len(self._pids))
        self._stopping = True
        for pid in list(self._pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
