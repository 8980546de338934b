"""`python -m proxy run` as a real process for a test: `ProxyProcess`, one handle for the tests
that drive it from plain code (`start()`, `stop()`, `kill()`, `signal()`) and for those on an
event loop (`proxy_process()`, `astart()`, `astop()`: the same steps in a thread, so the loop
goes on serving the test's upstreams and providers while the proxy starts or drains).

A start is ready once every listener is known and `/healthz` answers (it must answer 200); a
stop is SIGTERM, and the exit status once the proxy has drained. Both are bounded for a broken
proxy only: on a loaded 2-core machine a start alone has taken over 20 s.

The output goes to an unnamed temporary file, not a pipe: nothing has to read it as it comes
for the proxy not to block on a full pipe (and its logging with it), and it stays readable after
the process ends, every start's in turn (`stderr`, `output()`). No `$SIGNING_PROXY_*` of the
test's own environment leaks into the proxy's.

Ports. By default the config's listeners name port 0: the kernel picks each port as the proxy
binds it, and the handle reads it back from the proxy's "listening on" log lines. A port picked
by the test and bound later by the proxy could be taken by another process in between (a busy
machine runs many suites and their outgoing connections draw from the same range). The config
names its ports (`free_port()`) only where the tests need one address across restarts (a load
balancer or a provider's redirect points at it: `ProxyProcess.on_tree()`, which starts again on
new ports when one was taken in the moment before the proxy bound it), or where the log level
hides those lines (`ports=`)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import IO, Any

import yaml

from tests.plainhttp import Reply, http
from tests.ports import free_port

TIMEOUT = 60.0  # one start, one stop
PORT_ATTEMPTS = 3  # starts of an `on_tree()` proxy whose named port was taken meanwhile
LISTENING = re.compile(rb"listening on http://(?:\[[^\]]*\]|[^\s:/\"]+):(\d+)")


def listening_ports(output: bytes) -> list[int]:
    """The ports the proxy's "listening on" lines name, each once, in the order first logged: the
    data plane's, then the management API's, then the demo echo's (`--with-echo`). Under `--workers`
    every worker logs the data-plane port they share, and only the first serves the others, so
    the order of first appearance holds there too."""
    ports: list[int] = []
    for found in LISTENING.finditer(output):
        port = int(found[1])
        if port not in ports:
            ports.append(port)
    return ports


def config_file(workdir: Path, tree: dict[str, Any], *, port: int = 0) -> Path:
    """`tree` as `workdir/proxy.yaml`, listening on 127.0.0.1:`port` (0: the kernel picks) with
    its store in `workdir`, where the tree does not say otherwise."""
    tree = {"listen": f"127.0.0.1:{port}", "store": {"path": str(workdir / "state.db")}, **tree}
    config = workdir / "proxy.yaml"
    config.write_text(yaml.safe_dump(tree))
    return config


class ProxyProcess:
    """`python -m proxy run --config <config> <args>`, started and stopped as often as a test
    needs. `ports` names the config's ports (data plane, then management API), else the first
    `listeners` logged are read back at each start; `env` is added to the clean environment;
    `with_stdout` logs stdout beside stderr (else it is dropped)."""

    def __init__(
        self,
        config: Path,
        *args: str,
        ports: Sequence[int] = (),
        listeners: int = 1,
        env: dict[str, str] | None = None,
        with_stdout: bool = False,
    ) -> None:
        self.config = config
        self.args = args
        self.ports = list(ports)
        self.listeners = listeners
        self.env = env
        self.with_stdout = with_stdout
        self._popen: subprocess.Popen[bytes] | None = None  # while a run is not over
        self._named = bool(ports)
        self._log: IO[bytes] | None = None  # this run's output
        self._earlier = b""  # the output of the runs that ended
        self._tree_ports: tuple[bool, int | None] | None = None  # `on_tree()`: admin, its port

    @classmethod
    def on_tree(
        cls,
        workdir: Path,
        tree: dict[str, Any],
        *,
        admin: bool = True,
        admin_port: int | None = None,
    ) -> ProxyProcess:
        """A proxy on `tree` written to a file in `workdir` with named ports (`free_port()`, or
        `admin_port` for the management API, which `admin=False` leaves out), the same ones at every
        restart; stdout is logged too."""
        port = free_port()
        ports = [port]
        tree = {"listen": f"127.0.0.1:{port}", **tree}
        if admin:
            ports.append(admin_port or free_port())
            tree["admin"] = {"listen": f"127.0.0.1:{ports[1]}", **tree.get("admin", {})}
        config = workdir / f"proxy-{port}.yaml"
        config.write_text(yaml.safe_dump(tree))
        proxy = cls(config, ports=ports, with_stdout=True)
        proxy._tree_ports = (admin, admin_port)
        return proxy

    @property
    def base(self) -> str:
        """The data plane's URL."""
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def admin(self) -> str:
        """The management API's URL (`listeners=2`, or a named admin port)."""
        return f"http://127.0.0.1:{self.ports[1]}"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The run not over yet."""
        assert self._popen is not None, "the proxy is not running"
        return self._popen

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def stderr(self) -> bytes:
        """Everything logged so far, over every start."""
        return self._earlier + self._this_run()

    def output(self) -> str:
        return self.stderr.decode(errors="replace")

    def _this_run(self) -> bytes:
        if self._log is None:
            return b""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def spawn(self) -> None:
        """Start the process; `wait_ready()` waits for it to serve."""
        assert self._popen is None, "the proxy is running already"
        self._log = tempfile.TemporaryFile()
        fd = self._log.fileno()
        # Appended to by every process that writes it (the workers of `--workers` too).
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_PROXY_")}
        self._popen = subprocess.Popen(
            [sys.executable, "-m", "proxy", "run", "--config", str(self.config), *self.args],
            cwd=self.config.parent,
            stdin=subprocess.DEVNULL,
            stdout=self._log if self.with_stdout else subprocess.DEVNULL,
            stderr=self._log,
            env={**environ, **(self.env or {})},
        )
        if not self._named:
            self.ports = []

    def wait_ready(self, timeout: float = TIMEOUT) -> bool:
        """Until every listener is known and `/healthz` answers, which must be a 200: True;
        False if the proxy exits first."""
        assert self._popen is not None
        deadline = time.monotonic() + timeout
        while self._popen.poll() is None:
            if not self.ports and len(ports := listening_ports(self._this_run())) >= self.listeners:
                self.ports = ports
            if self.ports:
                with suppress(OSError):  # not listening yet
                    status = http("GET", self.base + "/healthz", timeout=1.0).status
                    assert status == 200, f"/healthz answered {status}: {self.output()}"
                    return True
            if time.monotonic() > deadline:
                raise AssertionError(f"the proxy did not become ready: {self.output()}")
            time.sleep(0.05)
        return False

    def start(self, timeout: float = TIMEOUT) -> ProxyProcess:
        """Start and wait until ready; an AssertionError with the output if the proxy exits."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.spawn()
            try:
                if self.wait_ready(timeout):
                    return self
            except BaseException:
                self.kill()
                raise
            taken = b"Address already in use" in self._this_run()
            self._ended()
            if self._tree_ports is None or not taken or attempt == PORT_ATTEMPTS:
                raise AssertionError(f"the proxy exited: {self.output()}")
            self._move()
        raise AssertionError("unreachable")

    def _move(self) -> None:
        """New ports in the config file as it is now (a test may have edited the rest)."""
        assert self._tree_ports is not None
        admin, admin_port = self._tree_ports
        tree = yaml.safe_load(self.config.read_text())
        self.ports = [free_port()]
        tree["listen"] = f"127.0.0.1:{self.ports[0]}"
        if admin:
            self.ports.append(admin_port or free_port())
            tree["admin"]["listen"] = f"127.0.0.1:{self.ports[1]}"
        self.config.write_text(yaml.safe_dump(tree))

    def signal(self, signum: int) -> None:
        assert self._popen is not None
        self._popen.send_signal(signum)

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM, and the exit status once the proxy has ended (killed after `timeout`); 0 if
        it is not running."""
        if self._popen is None:
            return 0
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(10)
        return self._ended()

    def wait(self, timeout: float = TIMEOUT) -> int:
        """The exit status once the proxy ends by itself or on a signal already sent; an
        AssertionError with the output if it runs on past `timeout`."""
        assert self._popen is not None
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the proxy ran on past {timeout} s: {self.output()}") from None
        return self._ended()

    def kill(self) -> None:
        """SIGKILL, if it runs."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait(10)
        if self._popen is not None:
            self._ended()

    def _ended(self) -> int:
        """The exit status of the ended process; its output joins the earlier runs'."""
        assert self._popen is not None and self._log is not None
        code = self._popen.wait()
        self._earlier += self._this_run()
        self._log.close()
        self._popen, self._log = None, None
        return code

    async def astart(self) -> ProxyProcess:
        return await asyncio.to_thread(self.start)

    async def astop(self, timeout: float = TIMEOUT) -> int:
        return await asyncio.to_thread(self.stop, timeout)

    async def await_exit(self, timeout: float = TIMEOUT) -> int:
        return await asyncio.to_thread(self.wait, timeout)

    # The management-API and data-plane requests of the tests that drive the proxy from plain code.
    def get(self, path: str, timeout: float = 10.0, headers: dict[str, str] | None = None) -> Reply:
        return http("GET", self.base + path, timeout=timeout, headers=headers)

    def readyz(self) -> Reply:
        return http("GET", self.admin + "/readyz")


@asynccontextmanager
async def proxy_process(
    config: Path,
    *args: str,
    listeners: int = 1,
    ports: Sequence[int] = (),
    env: dict[str, str] | None = None,
    starting: Callable[[ProxyProcess], Awaitable[None]] | None = None,
) -> AsyncIterator[ProxyProcess]:
    """The proxy on `config` with extra `run` `args` and `env`, ready once `listeners` ports
    are logged (2 with the management API) or on the named `ports`; stopped with SIGTERM at the end,
    which must end it with 0. `starting(proxy)` runs once the process is spawned, before it is
    waited for."""
    proxy = ProxyProcess(config, *args, ports=ports, listeners=listeners, env=env)
    proxy.spawn()
    try:
        if starting is not None:
            await starting(proxy)
        if not await asyncio.to_thread(proxy.wait_ready):
            raise AssertionError(f"the proxy did not start listening: {proxy.stderr!r}")
        yield proxy
        assert proxy.running, "the proxy stopped by itself"
        assert await proxy.astop() == 0
    finally:
        proxy.kill()
