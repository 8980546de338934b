"""`signing-proxy run -- CMD ARGS...`: the proxy serves while CMD runs with it as its HTTPS
proxy (docs/https-proxy.md).

Once the listeners are bound, the run's trust files are written into a private temporary
directory, CMD starts with the environment of `childenv.py`, and the proxy serves until CMD
exits; then it drains as on SIGTERM, the directory is removed and the process exits with CMD's
status (128 + N when a signal N ended it; 127 when CMD is not found, 126 when it cannot be run).

Signals: SIGTERM, SIGINT, SIGQUIT, SIGUSR1 and SIGUSR2 are passed on to CMD, and the proxy keeps
serving until CMD has exited (CMD may need it to finish cleanly). A Ctrl-C or Ctrl-\\ typed at a
terminal already reached CMD, which shares the terminal's process group, so then none is sent a
second time. SIGHUP reloads the proxy's config, as it does without a command.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path

from ..config.clients import Client
from ..store import StoreError
from .childenv import ProxySettings, child_environment, no_proxy, proxy_url, withheld_names
from .trust import NoSystemCertificates, system_ca_pems, write_trust_files

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
EXIT_SETUP = 1
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT)  # what a terminal sends its whole group

# The proxy CA certificate (PEM), read from the store or the config once the proxy runs.
CaSource = Callable[[], Awaitable[bytes]]


class WrapError(Exception):
    """`run -- CMD` cannot start as asked; the message names the option or field."""


def client_key(clients: Sequence[Client], name: str | None) -> str | None:
    """The key the command presents (as the proxy URL's userinfo): none without `clients`;
    the one client's, or the one `--client NAME` names."""
    if not clients:
        if name is not None:
            raise WrapError("--client: the config has no clients: the proxy needs no key")
        return None
    if name is None:
        if len(clients) > 1:
            names = ", ".join(client.name for client in clients)
            raise WrapError(f"--client: name the client whose key the command uses ({names})")
        index, client = 0, clients[0]
    else:
        found = [(i, client) for i, client in enumerate(clients) if client.name == name]
        if not found:
            raise WrapError(f"--client: no client is named {name!r}")
        index, client = found[0]
    if client.key is None:
        raise WrapError(
            f"clients[{index}].keySha256: the file holds only the key's hash; the command needs "
            "the key itself: give the client a `key`"
        )
    return client.key.get_secret_value()


class WrappedCommand:
    """Runs CMD once the proxy serves; `status` is its exit status once it has run.

    Used as `serve(until=...)`: the proxy drains once this returns."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        listen: tuple[str, int],
        ca_source: CaSource,
        client_key: str | None = None,
        bound_hosts: Collection[str] = (),
        secrets: Collection[str] = (),
        inherited: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.listen = listen
        self.ca_source = ca_source
        self.client_key = client_key
        self.bound_hosts = bound_hosts
        self.secrets = secrets
        self.inherited = dict(os.environ if inherited is None else inherited)
        self.status = EXIT_SETUP

    async def __call__(self) -> None:
        with SignalRelay() as relay:
            try:
                system = system_ca_pems(self.inherited)
            except NoSystemCertificates as exc:
                print(f"signing-proxy run: {exc}", file=sys.stderr)
                return
            try:
                proxy_ca = await self.ca_source()
            except WrapError as exc:
                print(f"signing-proxy run: {exc}", file=sys.stderr)
                return
            except StoreError as exc:
                print(f"signing-proxy run: store: {exc}", file=sys.stderr)
                return
            directory = Path(tempfile.mkdtemp(prefix="signing-proxy-run-"))  # mode 0700
            try:
                files = write_trust_files(directory, system, proxy_ca)
                host, port = self.listen
                settings = ProxySettings(
                    proxy_url=proxy_url(host, port, self.client_key),
                    no_proxy=no_proxy(host, self.bound_hosts),
                    bundle=str(files.bundle),
                    proxy_ca=str(files.proxy_ca),
                )
                withheld = withheld_names(self.inherited, self.secrets)
                env = child_environment(self.inherited, settings, withheld)
                self.status = await relay.run(self.argv, env)
            finally:
                shutil.rmtree(directory, ignore_errors=True)


class SignalRelay:
    """While entered, the signals CMD should get are passed on to it (or, before it has
    started, stop it from starting)."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.stopped_by: signal.Signals | None = None

    def __enter__(self) -> SignalRelay:
        loop = asyncio.get_running_loop()
        for signum in FORWARDED_SIGNALS:
            loop.add_signal_handler(signum, self._forward, signum)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for signum in FORWARDED_SIGNALS:
            loop.remove_signal_handler(signum)

    def _forward(self, signum: signal.Signals) -> None:
        if signum in TERMINAL_SIGNALS and _in_foreground_of_terminal():
            return  # the terminal sent it to the whole process group, CMD included
        if self.process is None:
            if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                self.stopped_by = self.stopped_by or signum
        elif self.process.returncode is None:
            self.process.send_signal(signum)

    async def run(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        """Run `argv` with `env` and this process's standard streams; return its exit status
        the way a shell reports it."""
        if self.stopped_by is not None:
            return 128 + self.stopped_by
        try:
            self.process = await asyncio.create_subprocess_exec(*argv, env=dict(env))
        except FileNotFoundError:
            print(f"signing-proxy run: {argv[0]}: command not found", file=sys.stderr)
            return EXIT_NOT_FOUND
        except OSError as exc:
            print(f"signing-proxy run: {argv[0]}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_NOT_EXECUTABLE
        try:
            status = await self.process.wait()
        finally:
            if self.process.returncode is None:  # cancelled: CMD does not outlive the proxy
                self.process.kill()
                await self.process.wait()
        return status if status >= 0 else 128 - status


def _in_foreground_of_terminal() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):  # no terminal on stdin (a pipe, a service)
        return False
