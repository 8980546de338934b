"""signing-proxy: an outbound request-signing HTTP proxy (reference: docs/operations.md).

The command line: `run` (and `run -- CMD`, wrap.py), `env`, `check`, `explain`, `rotate-key`;
`python -m proxy` is the same program.

Config is found at `--config`, else `$SIGNING_PROXY_CONFIG`, else `./proxy.yaml`. An invalid
config prints one line per problem with its field path and exits 2, before any port is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import __version__
from ..config.address import split_host_port
from ..config.load import ConfigInvalid
from ..config.models import StoreSettings
from ..connections.runtime import Runtime, load_runtime
from ..errors import FieldError
from ..logs import setup_logging
from ..metrics import MULTIPROCESS_DIR
from ..store import Store, StoreError, open_store, verify_store
from ..tokens.manager import TokenManager
from .filewatch import content_digest
from .tuning import tune_for_serving

if TYPE_CHECKING:
    from .wrap import WrappedCommand

log = logging.getLogger("signing_proxy")

EXIT_INVALID = 2
EXIT_STORE = 1
EXIT_LISTEN = 1
DEFAULT_ECHO = "127.0.0.1:8099"
LOG_LEVELS = ("debug", "info", "warning", "error")


def listen_address(text: str) -> str:
    """argparse type for `--listen`: a bad address exits 2 before anything is bound."""
    try:
        split_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def worker_count(text: str) -> int:
    """argparse type for `--workers`: a whole number from 1 to 256."""
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"expected 1 to 256 processes, got {text!r}")
    return int(text)


def config_path(arg: str | None) -> str:
    return arg or os.environ.get("SIGNING_PROXY_CONFIG") or "proxy.yaml"


def load_or_report(
    path: str, *, offline: bool = False, print_warnings: bool = True
) -> Runtime | None:
    """Load the config; print problems (then None) and warnings (which do not stop it).

    `print_warnings=False`: the caller logs a valid config's warnings itself, once logging is
    set up (`run`: in `log.format: json` they are JSON lines like every other)."""
    try:
        runtime = load_runtime(path, offline=offline)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}" if not problem.field else str(problem), file=sys.stderr)
        _print_warnings(exc.warnings)
        return None
    if print_warnings:
        _print_warnings(runtime.warnings)
    return runtime


def _print_warnings(warnings: Sequence[FieldError]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    runtime = load_or_report(path, offline=args.offline)
    if runtime is None:
        return EXIT_INVALID
    if not args.offline:
        refused = start_refusals(runtime)
        if refused:
            return refused
    offline = " (offline: ${...} not resolved, those fields not checked)" if args.offline else ""
    print(f"{path}: ok, {len(runtime.config.connections)} connection(s){offline}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from ..errors import ProxyError
    from .explain import explain, explain_access, parse_header, read_data, render, render_access

    runtime = load_or_report(config_path(args.config))
    if runtime is None:
        return EXIT_INVALID
    try:
        headers = [parse_header(text) for text in args.header]
        body = read_data(args.data) if args.data is not None else None
    except (ValueError, OSError) as exc:
        print(f"explain: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        decision = explain_access(runtime, args.client, args.method, args.path, headers)
        if decision is not None:
            sys.stdout.write(render_access(decision))
            if not decision.allowed:
                return 1
        explanation = explain(runtime, args.method, args.path, headers, body)
    except ProxyError as exc:
        print(f"explain: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    sys.stdout.write(render(explanation))
    return 0


def start_refusals(runtime: Runtime) -> int:
    """What `run` would refuse at start after loading the file, in its words and with its exit
    status (0: nothing): the environment's listen address and log level, the store (read, not
    created), the listeners (bound and released at once). Every problem is printed."""
    config = runtime.config
    listen = _env_listen() or config.listen  # a bad one: printed, SystemExit(2), as in run
    if _env_log_level() is None:
        return EXIT_INVALID
    status = 0
    key = config.store.key.get_secret_value() if config.store.key else None
    url = config.store.url.get_secret_value() if config.store.url else None
    try:
        verify_store(config.store.path, key, url=url)
    except StoreError as exc:
        print(f"store: {exc}", file=sys.stderr)
        status = EXIT_STORE
    wanted = [listen, *([config.admin.listen] if config.admin is not None else [])]
    refusals, warnings = check_listeners(wanted)
    for line in refusals:
        print(line, file=sys.stderr)
        status = status or EXIT_LISTEN
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    return status


def cmd_run(args: argparse.Namespace) -> int:
    # SIGHUP reloads once serving (reload.py); until then it must not end the process either.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # `--watch` compares with what was read *before* loading: a change made meanwhile is seen.
    loaded = content_digest(config_path(args.config)) if args.watch else None
    runtime = load_or_report(config_path(args.config), print_warnings=False)
    if runtime is None:
        return EXIT_INVALID
    config = runtime.config
    listen = args.listen or _env_listen() or config.listen
    level = args.log_level or _env_log_level()
    if level is None:
        return EXIT_INVALID
    if args.client is not None and not args.command:
        print("run: --client: only with a command (run --client NAME -- CMD)", file=sys.stderr)
        return EXIT_INVALID
    if args.command:
        refused = _wrap_refusals(runtime, args)
        if refused:
            return refused
        # CMD's own output shares the terminal: the proxy says only what goes wrong.
        level = level or "warning"
    setup_logging(level or config.log.level, config.log.format, with_pid=args.workers > 1)
    log_warnings(runtime.warnings)
    store = open_store_or_report(config.store)
    if store is None:
        return EXIT_STORE
    if args.workers == 1:
        return _serve(runtime, args, store, listen, first=True, loaded=loaded)
    from .workers import Supervisor, bind_reuseport

    # Each worker opens its own database connection after the fork (nothing SQLite crosses it);
    # opening it here first still refuses a bad store before any port is bound.
    asyncio.run(store.close())
    host, port = split_host_port(listen)
    try:
        sockets = bind_reuseport(host, port, args.workers)
    except OSError as exc:
        print(f"listen {listen}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_LISTEN

    def worker(index: int, sock: socket.socket) -> int:
        store = open_store_or_report(config.store)
        if store is None:
            return EXIT_STORE
        # The admin listener and the demo echo upstream are served by the first worker.
        return _serve(runtime, args, store, sock, first=index == 0)

    watch = config_path(args.config) if args.watch else None
    # Metrics summed over the workers: each writes its own files here (proxy/metrics.py).
    with tempfile.TemporaryDirectory(prefix="signing-proxy-metrics-") as metrics_dir:
        os.environ[MULTIPROCESS_DIR] = metrics_dir
        return Supervisor(sockets, worker, watch=watch, loaded=loaded).run()


def _serve(
    runtime: Runtime,
    args: argparse.Namespace,
    store: Store,
    listen: str | socket.socket,
    *,
    first: bool,
    loaded: bytes | None = None,
) -> int:
    from ..dataplane.access_log import open_access_log
    from ..dataplane.plane import create_app
    from .reload import Reloader
    from .server import Listener, serve

    config = runtime.config
    # Every listener is bound before anything is served: a port in use is one line naming it.
    wanted = [listen]
    if config.admin is not None and first:
        wanted.append(config.admin.listen)
    if args.with_echo and first:
        wanted.append(args.with_echo)
    try:
        sockets = bind_listeners(wanted)
    except ListenError as exc:
        print(exc, file=sys.stderr)
        asyncio.run(store.close())
        return EXIT_LISTEN
    listen = sockets[0]
    wrapped = _wrapped_command(runtime, args, store, listen) if args.command else None
    tokens = TokenManager(store, redirect_uri=runtime.oauth2_redirect_uri)
    # The store and the token manager are shared by both listeners: closed by serve() after
    # both have drained, so an admin request in flight never meets a closed store.
    access_log = open_access_log(config.log.format, with_pid=args.workers > 1)
    plane = create_app(
        runtime, tokens=tokens, store=store, close_shared=False, access_log=access_log
    )
    apps: list[Listener] = [(plane, listen)]
    if config.admin is not None and first:
        from ..admin import create_admin_app_for

        # Same process, same template routes, store and token manager as the data plane.
        apps.append((create_admin_app_for(runtime, plane), sockets[1]))
    if args.with_echo and first:
        from .echo import create_echo_app

        apps.append((create_echo_app(), sockets[-1]))
    tune_for_serving()
    if first:
        log_routes(runtime)
    reloader = Reloader(config_path(args.config), plane, loaded=loaded)
    # With --workers the supervisor watches the file and signals every worker (workers.py).
    watch = reloader.watch if args.watch and args.workers == 1 else None
    grace = config.timeouts.shutdown_grace
    try:
        asyncio.run(
            serve(
                apps,
                shutdown_grace=grace,
                close_after=(tokens.close, store.close),
                reload=reloader.reload,
                watch=watch,
                until=wrapped,
            )
        )
    finally:
        if access_log is not None:
            access_log.close()  # every request has drained: its line is written before exit
    log.info("stopped", extra={"event": "shutdown"})
    return wrapped.status if wrapped is not None else 0


def _wrap_refusals(runtime: Runtime, args: argparse.Namespace) -> int:
    """What stops `run -- CMD` before any port is bound (printed; its exit status, or 0)."""
    from .forwarding import forward_proxy_refusal
    from .wrap import WrapError, client_key

    refusal = forward_proxy_refusal(runtime)
    if refusal is not None:
        print(f"run: {refusal}", file=sys.stderr)
        return EXIT_INVALID
    if args.workers > 1:
        print("run: --workers: a command is run with one proxy process", file=sys.stderr)
        return EXIT_INVALID
    try:
        client_key(runtime.config.clients, args.client)
    except WrapError as exc:
        print(f"run: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return 0


def _wrapped_command(
    runtime: Runtime, args: argparse.Namespace, store: Store, listen: socket.socket
) -> WrappedCommand:
    from .explain import config_secrets
    from .forwarding import bound_hosts, proxy_ca_source
    from .wrap import WrappedCommand, client_key

    host, port = listen.getsockname()[:2]
    return WrappedCommand(
        args.command,
        listen=(host, port),
        ca_source=proxy_ca_source(runtime, store),
        client_key=client_key(runtime.config.clients, args.client),
        bound_hosts=bound_hosts(runtime),
        secrets={secret for secret in config_secrets(runtime.config) if secret},
    )


def log_warnings(warnings: Sequence[FieldError]) -> None:
    """A valid config's warnings (an expired certificate, an empty secret), as log lines."""
    for warning in warnings:
        log.warning(
            "config warning: %s", warning, extra={"event": "config_warning", "field": warning.field}
        )


def log_routes(runtime: Runtime) -> None:
    """Start-up: each route and where it forwards (origin and path only: no userinfo, query)."""
    for connection in runtime.connections:
        target = connection.base.origin + connection.base.path
        log.info(
            "route %s -> %s (connection %s)",
            connection.route or "/",
            target,
            connection.name,
            extra={"event": "route", "route": connection.route or "/", "target": target,
                   "connection": connection.name},
        )  # fmt: skip
    for template in runtime.templates:
        log.info(
            "route %s -> connections of template %s (X-Connection-Id)",
            template.route,
            template.id,
            extra={"event": "route", "route": template.route, "template": template.id},
        )


class ListenError(Exception):
    """A listener could not be bound; the message names the address."""

    def __init__(self, address: str | socket.socket, error: OSError) -> None:
        # create_server's message repeats the address as a tuple; the errno's text is enough
        # (a resolver error's own text: its codes are not errnos).
        if isinstance(error, socket.gaierror) or not error.errno:
            reason = error.strerror or str(error)
        else:
            reason = os.strerror(error.errno)
        super().__init__(f"listen {address}: {reason}")
        self.address = address
        self.errno = error.errno


def bind_listeners(addresses: Sequence[str | socket.socket]) -> list[socket.socket]:
    """Bind each `HOST:PORT` (a socket passes through); on failure close what was bound."""
    bound: list[socket.socket] = []
    try:
        for address in addresses:
            bound.append(address if isinstance(address, socket.socket) else bind_tcp(address))
    except OSError as exc:
        for sock in bound:
            if sock not in addresses:
                sock.close()
        raise ListenError(addresses[len(bound)], exc) from None
    return bound


def check_listeners(addresses: Sequence[str]) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for binding `addresses` together as `run` does; nothing stays
    bound. An address another process holds now is a warning, not a refusal: `check` is run
    beside the proxy it checks (before a reload), whose ports are in use by design."""
    try:
        bound = bind_listeners(addresses)
    except ListenError as exc:
        if exc.errno == errno.EADDRINUSE and isinstance(exc.address, str):
            try:
                bind_tcp(exc.address).close()  # alone it binds: the file names it twice
            except OSError as alone:
                if alone.errno == errno.EADDRINUSE:
                    return [], [
                        f"{exc} (held by another process now; run refuses to start while it is)"
                    ]
        return [str(exc)], []
    for sock in bound:
        sock.close()
    return [], []


def bind_tcp(address: str) -> socket.socket:
    host, port = split_host_port(address)
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    # SO_REUSEADDR (set by create_server) as aiohttp would: a restart is not blocked by TIME_WAIT.
    return socket.create_server((host, port), family=family, backlog=1024)


def _env_log_level() -> str | None:
    """`$SIGNING_PROXY_LOG_LEVEL` ("" when unset); None, printed, when it is not a level."""
    level = os.environ.get("SIGNING_PROXY_LOG_LEVEL", "").lower()
    if level and level not in LOG_LEVELS:
        print(f"$SIGNING_PROXY_LOG_LEVEL: expected one of {', '.join(LOG_LEVELS)}", file=sys.stderr)
        return None
    return level


def _env_listen() -> str | None:
    """`$SIGNING_PROXY_LISTEN` (the container sets it); checked like `--listen`."""
    value = os.environ.get("SIGNING_PROXY_LISTEN")
    if not value:
        return None
    try:
        split_host_port(value)
    except ValueError as exc:
        print(f"$SIGNING_PROXY_LISTEN: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID) from None
    return value


def cmd_env(args: argparse.Namespace) -> int:
    from .exports import print_exports
    from .forwarding import forward_proxy_refusal

    runtime = load_or_report(config_path(args.config))
    if runtime is None:
        return EXIT_INVALID
    refusal = forward_proxy_refusal(runtime)
    if refusal is not None:
        print(f"env: {refusal}", file=sys.stderr)
        return EXIT_INVALID
    listen = args.listen or _env_listen() or runtime.config.listen
    store = open_store_or_report(runtime.config.store)
    if store is None:
        return EXIT_STORE
    return print_exports(runtime, store, listen=listen, client=args.client, directory=args.dir)


def cmd_rotate_key(args: argparse.Namespace) -> int:
    from ..store.rotate import rotate_store_key

    runtime = load_or_report(config_path(args.config))
    if runtime is None:
        return EXIT_INVALID
    try:
        print(rotate_store_key(runtime.config.store))
    except StoreError as exc:
        print(f"store: {exc}", file=sys.stderr)
        return EXIT_STORE
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    from .ca import print_ca

    runtime = load_or_report(config_path(args.config))
    if runtime is None:
        return EXIT_INVALID
    store = open_store_or_report(runtime.config.store)
    if store is None:
        return EXIT_STORE
    return print_ca(runtime.config, store)


def open_store_or_report(settings: StoreSettings) -> Store | None:
    """Open the store of docs/security.md before any port is bound; print why not and return
    None."""
    key = settings.key.get_secret_value() if settings.key else None
    url = settings.url.get_secret_value() if settings.url else None
    try:
        return open_store(settings.path, key, url=url)
    except StoreError as exc:
        print(f"store: {exc}", file=sys.stderr)
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signing-proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"signing-proxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="serve the proxy")
    run.add_argument("--config", help="path to proxy.yaml")
    run.add_argument(
        "--listen", type=listen_address, help="data-plane HOST:PORT (overrides the file)"
    )
    run.add_argument(
        "--with-echo",
        nargs="?",
        const=DEFAULT_ECHO,
        type=listen_address,
        metavar="HOST:PORT",
        help=f"also serve the bundled echo upstream (default {DEFAULT_ECHO}) for a demo",
    )
    run.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        metavar="N",
        help="serve the data plane from N processes on one port (default 1)",
    )
    run.add_argument(
        "--watch",
        action="store_true",
        help="reload the config whenever the file changes (SIGHUP always reloads)",
    )
    run.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="override log.level (also $SIGNING_PROXY_LOG_LEVEL)",
    )
    run.add_argument(
        "--client",
        metavar="NAME",
        help="with a command: the client (of `clients`) whose key the command presents",
    )
    run.add_argument(
        "command",
        nargs="*",
        metavar="-- CMD ARGS",
        help="run CMD with the proxy as its HTTPS_PROXY and its CA trusted "
        "(docs/https-proxy.md); exit with CMD's status",
    )
    run.set_defaults(func=cmd_run)

    env = sub.add_parser(
        "env",
        help="print the shell exports that make commands use a running proxy as HTTPS_PROXY",
        description="Print, as POSIX shell exports, what `run -- CMD` gives CMD, for the proxy "
        'running on this config: eval "$(signing-proxy env)". The trust files are written '
        "(0600) into --dir, by default a `trust` directory beside the store's file "
        "(docs/https-proxy.md).",
    )
    env.add_argument("--config", help="path to proxy.yaml")
    env.add_argument(
        "--listen", type=listen_address, help="the data plane's HOST:PORT, if not the file's"
    )
    env.add_argument("--client", metavar="NAME", help="the client whose key the commands present")
    env.add_argument("--dir", metavar="DIR", help="where to write the trust files")
    env.set_defaults(func=cmd_env)

    check = sub.add_parser(
        "check",
        help="validate the config and exit (0 valid, 2 invalid)",
        description="Validate the config and exit (0 valid, 2 invalid). The store is not "
        "opened: an 'oauth1' credential ({state, oauthToken, oauthVerifier}) is checked for its "
        "shape only; `run` exchanges it at tokenEndpoint when its oauthToken names a live "
        "OAuth 1.0a flow of the store, else requests on its connection get 502 "
        "credential_reauthorization_required.",
    )
    check.add_argument("--config", help="path to proxy.yaml")
    check.add_argument(
        "--offline",
        action="store_true",
        help="check the structure without the secrets: ${...} is not resolved (for CI)",
    )
    check.set_defaults(func=cmd_check)

    from .ca import add_parser as add_ca_parser

    add_ca_parser(sub).set_defaults(func=cmd_ca)

    rotate = sub.add_parser("rotate-key", help="re-seal the store's secrets under a new key")
    rotate.add_argument("--config", help="path to proxy.yaml")
    rotate.set_defaults(func=cmd_rotate_key)

    explain = sub.add_parser(
        "explain", help="print the upstream request as it would go out (masked); send nothing"
    )
    explain.add_argument("--config", help="path to proxy.yaml")
    explain.add_argument("method", help="HTTP method, e.g. POST")
    explain.add_argument("path", help="the path as sent to the proxy, e.g. /partner/v2/items?x=1")
    explain.add_argument(
        "--header", "-H", action="append", default=[], metavar="'K: V'", help="a client header"
    )
    explain.add_argument("--data", "-d", metavar="@FILE|TEXT", help="the body (@- for stdin)")
    explain.add_argument(
        "--client",
        metavar="NAME",
        help="say whether this client (of `clients`) may make the request, and which rule decides",
    )
    explain.set_defaults(func=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
