"""The performance bench: signing-proxy next to nginx as a reverse proxy, logs on as users run it.

One command: `python bench/run.py` (`--quick` for a short run). It starts

- a local upstream: nginx serving static files (1 worker), else `bench/fast_upstream.py`;
- **nginx-1w**, one nginx worker as a reverse proxy adding `Authorization: Bearer ...`
  (keep-alive to the upstream, request bodies streamed like ours), with its `access_log` on a
  real file (nginx's default `combined` format, unbuffered); the same worker also serves it
  with `access_log off` (**nginx-1w-nolog**), and a `return 200 "ok"` upstream with two more
  reverse-proxy servers in front of it (the **one-nginx** rows: one nginx worker serving the
  upstream and the reverse proxy, at c=32);
- **signing-proxy** (`python -m proxy run` at the default log level: the access log on,
  stderr to a file), **sp-json** (the same with `log.format: json`), **sp-nolog** (`log.level:
  warning`: no access log), **sp-again** (signing-proxy once more: the two's ratio is the
  bench's resolution), each with a bearer, an HMAC-SHA256 url+body and a one-nginx
  connection; with uvloop installed also **sp-asyncio** (the same, on asyncio's own loop), and
  for the scaling row signing-proxy `--workers 2`; with `--aiohttp-hop`, also the proxy on the
  previous aiohttp ClientSession hop; with `--baseline DIR`, also **sp-baseline**: the proxy's
  code from DIR (a checkout of an earlier commit, e.g. `git worktree add /tmp/base <commit>`),
  at the default log level, so a change is judged old next to new in the same alternating
  rounds;

and **floor** (`bench/floor_proxy.py`: the least a Python proxy on uvloop and llhttp does per
request, for the distance to it); then drives load with wrk pinned to CPU 0 and the servers to
CPU 1 (`taskset`; the `--workers 2` instance is left free to use both), contenders alternating
round by round, each proxy a fresh process every round (`--same-process`: one for the whole
run), and prints medians, ratios and the targets. CPU per request is the contender's
process-tree CPU time over the requests served. The 1 GiB rows come from
`bench/memory_1gib.py` (run as is). Needs Linux, wrk (installed with apt-get when missing and
run as root), and optionally nginx (`apt-get install nginx`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ab import free_port

BENCH = Path(__file__).resolve().parent
TOKEN = "bench-token-not-a-secret"
HMAC_KEY = "bench-hmac-key-not-a-secret"
TINY = b"hello, world\n"
TICK = os.sysconf("SC_CLK_TCK")
# wrk on CPU 0, the servers on the others (the method the figures were taken by): a
# server then never competes with the load generator, and every run wakes the same CPUs.
SERVER_CPUS = (
    f"1-{os.cpu_count() - 1}" if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else ""
)


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing it with apt-get ...", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit(
        "wrk is needed: `sudo apt-get install wrk` (Debian/Ubuntu), `brew install wrk` (macOS),"
        " or build it from https://github.com/wg/wrk"
    )


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU of `pid` and its descendants (Linux /proc), in seconds."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        child = int(entry.name)
        children.setdefault(int(fields[1]), []).append(child)
        times[child] = (int(fields[11]) + int(fields[12])) / TICK
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    base: str  # URL prefix; scenario paths are appended
    pid: int
    # How to start it again (the proxies): a fresh process each round (`Setup.restart`).
    argv: list[str] | None = None
    env: dict[str, str] | None = None
    pin: bool = True


@dataclass
class Setup:
    tmp: Path
    upstream_port: int
    upstream_kind: str
    pin: bool = True  # servers on SERVER_CPUS (`--no-pin`: anywhere)
    contenders: dict[str, Contender] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self,
        argv: list[str],
        port: int,
        what: str,
        env: dict[str, str] | None = None,
        *,
        pin: bool = True,
    ) -> subprocess.Popen[bytes]:
        if pin and self.pin and SERVER_CPUS:
            argv = ["taskset", "-c", SERVER_CPUS, *argv]
        proc = subprocess.Popen(
            argv,
            cwd=self.tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / f"{port}.log", "wb"),
        )
        self.procs.append(proc)
        wait_port(port, proc, what)
        return proc

    def restart(self, name: str) -> None:
        """Stop contender `name` and start the same command again on the same port.

        Why each round runs a fresh proxy process: a process's memory layout (address-space
        randomisation, hash seeds) moves its speed by several percent for its whole life, the
        same code in two processes side by side included (the `sp-again` row shows how far);
        a median over rounds is then a median over as many processes."""
        contender = self.contenders[name]
        if contender.argv is None:
            return
        old = next(p for p in self.procs if p.pid == contender.pid)
        old.send_signal(signal.SIGTERM)
        old.wait(30)
        self.procs.remove(old)
        port = int(contender.base.rsplit(":", 1)[1])
        proc = self.start(contender.argv, port, name, contender.env, pin=contender.pin)
        contender.pid = proc.pid


NGINX_COMMON = """
worker_processes 1;
{user}
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/{name}_body;
    proxy_temp_path {tmp}/{name}_proxy;
    fastcgi_temp_path {tmp}/{name}_fcgi;
    uwsgi_temp_path {tmp}/{name}_uwsgi;
    scgi_temp_path {tmp}/{name}_scgi;
    client_max_body_size 0;
    keepalive_requests 1000000;
    {body}
}}
"""

NGINX_UPSTREAM = """
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location = /post {{ return 200 "ok\\n"; }}
    }}
"""

# The reverse proxy: keep-alive to the upstream (as ours has), and request bodies streamed
# instead of spooled to a temp file (as ours does); everything else nginx's defaults. One worker
# serves it twice, with its access log on a file and off, and the one-nginx upstream (`return
# 200`) with two more reverse proxies in front of it, also with the log on and off.
NGINX_PROXY = """
    upstream origin {{ server 127.0.0.1:{upstream}; keepalive 128; }}
    upstream one {{ server 127.0.0.1:{one}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{one};
        location / {{ return 200 "ok"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        access_log {tmp}/nginx-1w.access.log;
        {location}
    }}
    server {{
        listen 127.0.0.1:{port_nolog};
        {location}
    }}
    server {{
        listen 127.0.0.1:{port_one};
        access_log {tmp}/nginx-one.access.log;
        {location_one}
    }}
    server {{
        listen 127.0.0.1:{port_one_nolog};
        {location_one}
    }}
"""
NGINX_LOCATION = """location / {{
            proxy_pass http://{origin};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {token}";
            proxy_request_buffering off;
        }}"""


PROXY = [sys.executable, "-m", "proxy"]
# The same program with `import uvloop` failing, as on an install without it: asyncio's loop.
PROXY_WITHOUT_UVLOOP = [
    sys.executable,
    "-c",
    "import sys; sys.modules['uvloop'] = None; from proxy.cli import main; sys.exit(main())",
]


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def nginx_conf(tmp: Path, name: str, body: str) -> Path:
    for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        (tmp / f"{name}_{sub}").mkdir(exist_ok=True)
    conf = tmp / f"{name}.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_COMMON.format(user=user, tmp=tmp, name=name, body=body))
    return conf


def proxy_config(tmp: Path, port: int, upstream: int, one: int, log: str = "{}") -> Path:
    """The proxy's config: `log` is its `log:` mapping (`{}`: the defaults, info and text)."""
    config = tmp / f"proxy-{port}.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"log: {log}\n"
        f"store: {{path: {tmp}/state-{port}.db}}\n"
        "connections:\n"
        "  - name: up\n"
        f"    baseUrl: http://127.0.0.1:{upstream}\n"
        "    credentials:\n"
        "      - authSchemeConfig: {type: bearer}\n"
        f"        credential: {{type: string, data: {{string: {{value: {TOKEN}}}}}}}\n"
        "  - name: one\n"
        f"    baseUrl: http://127.0.0.1:{one}\n"
        "    credentials:\n"
        "      - authSchemeConfig: {type: bearer}\n"
        f"        credential: {{type: string, data: {{string: {{value: {TOKEN}}}}}}}\n"
        "  - name: hmac\n"
        f"    baseUrl: http://127.0.0.1:{upstream}\n"
        "    credentials:\n"
        "      - authSchemeConfig:\n"
        "          type: hmac\n"
        "          hmac: {name: X-Signature, in: header, algorithm: sha256,"
        " digestInputs: [url, body], encoding: hex}\n"
        f"        credential: {{type: string, data: {{string: {{value: {HMAC_KEY}}}}}}}\n"
    )
    return config


@contextmanager
def running(args: argparse.Namespace) -> Iterator[Setup]:
    with tempfile.TemporaryDirectory(prefix="signing-proxy-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        www = tmp / "www"
        www.mkdir()
        (www / "tiny").write_bytes(TINY)
        (www / "64k").write_bytes(b"x" * 65536)
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        setup = Setup(tmp, free_port(), "nginx" if nginx else "bench/fast_upstream.py")
        setup.pin = not args.no_pin
        try:
            up = setup.upstream_port
            if nginx:
                conf = nginx_conf(tmp, "upstream", NGINX_UPSTREAM.format(port=up, tmp=tmp))
                proc = setup.start([nginx, "-c", str(conf), "-g", "daemon off;"], up, "nginx")
            else:
                script = str(BENCH / "fast_upstream.py")
                proc = setup.start([sys.executable, script, str(up)], up, "fast upstream")
            setup.contenders["direct"] = Contender("direct", f"http://127.0.0.1:{up}", proc.pid)
            one = up  # the one-nginx upstream; without nginx the rows are left out
            if nginx:
                one, port, nolog, port_one, one_nolog = (free_port() for _ in range(5))
                body = NGINX_PROXY.format(
                    upstream=up,
                    one=one,
                    port=port,
                    port_nolog=nolog,
                    port_one=port_one,
                    port_one_nolog=one_nolog,
                    tmp=tmp,
                    location=NGINX_LOCATION.format(origin="origin", token=TOKEN),
                    location_one=NGINX_LOCATION.format(origin="one", token=TOKEN),
                )
                conf = nginx_conf(tmp, "proxy", body)
                proc = setup.start([nginx, "-c", str(conf), "-g", "daemon off;"], port, "nginx")
                for name, at in (
                    ("nginx-1w", port),
                    ("nginx-1w-nolog", nolog),
                    ("nginx-one", port_one),
                    ("nginx-one-nolog", one_nolog),
                ):
                    setup.contenders[name] = Contender(name, f"http://127.0.0.1:{at}", proc.pid)
            proxies: list[tuple[str, str, list[str], list[str], dict[str, str] | None]] = [
                # name, log settings, the command before `run`, `run`'s extra arguments, env
                ("signing-proxy", "{}", PROXY, [], None),
                # The same again: the two's ratio is what this bench cannot tell apart.
                ("sp-again", "{}", PROXY, [], None),
                ("sp-json", "{format: json}", PROXY, [], None),
                ("sp-nolog", "{level: warning}", PROXY, [], None),
                ("signing-proxy-2w", "{}", PROXY, ["--workers", "2"], None),
            ]
            if has_uvloop():
                proxies.append(("sp-asyncio", "{}", PROXY_WITHOUT_UVLOOP, [], None))
            if args.baseline:
                # The baseline's package is found first: PYTHONPATH precedes site-packages.
                env = {**os.environ, "PYTHONPATH": str(Path(args.baseline).resolve())}
                proxies.append(("sp-baseline", "{}", PROXY, [], env))
            for name, log, command, extra, env in proxies:
                port = free_port()
                config = proxy_config(tmp, port, up, one, log)
                argv = [*command, "run", "--config", str(config), *extra]
                proc = setup.start(argv, port, name, env, pin=not extra)
                setup.contenders[name] = Contender(
                    name, f"http://127.0.0.1:{port}", proc.pid, argv, env, not extra
                )
            # The floor: the least a Python proxy on uvloop and llhttp does (floor_proxy.py).
            port = free_port()
            argv = [sys.executable, str(BENCH / "floor_proxy.py"), str(port), str(up), TOKEN]
            proc = setup.start(argv, port, "floor")
            setup.contenders["floor"] = Contender(
                "floor", f"http://127.0.0.1:{port}", proc.pid, argv
            )
            if args.aiohttp_hop:
                port = free_port()
                config = proxy_config(tmp, port, up, one, "{level: warning}")
                argv = [sys.executable, str(BENCH / "aiohttp_hop.py"), str(config)]
                proc = setup.start(argv, port, "aiohttp hop")
                setup.contenders["sp-aiohttp-hop"] = Contender(
                    "sp-aiohttp-hop", f"http://127.0.0.1:{port}", proc.pid
                )
            yield setup
        finally:
            for proc in reversed(setup.procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in setup.procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# --- load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    path: str  # after the contender's base; signing-proxy's routes are prefixed below
    connections: int
    script: str | None = None
    route: str = "/up"
    contenders: tuple[str, ...] = ("direct", "nginx-1w", "signing-proxy", "sp-baseline",
                                   "sp-aiohttp-hop")  # fmt: skip


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # contender CPU per request
    errors: int


LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(binary: str, url: str, scenario: Scenario, seconds: float, pid: int, tmp: Path) -> Result:
    argv = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    argv += [
        binary,
        "-t1",
        f"-c{scenario.connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
    ]
    if scenario.script:
        script = tmp / f"{scenario.key}.lua"
        script.write_text(scenario.script)
        argv += ["-s", str(script)]
    before = tree_cpu_seconds(pid)
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    cpu = tree_cpu_seconds(pid) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {m[0]: float(m[1]) * UNIT_MS[m[2]] for m in LATENCY.findall(out)}
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*?timeout (\d+)"):
        match = re.search(pattern, out)
        errors += int(match.group(1)) if match else 0
    return Result(
        rps, latency.get("50", 0.0), latency.get("99", 0.0), cpu / max(requests, 1) * 1e6, errors
    )


POST_1MIB = (
    'wrk.method = "POST"\n'
    'wrk.body = string.rep("a", 1048576)\n'
    'wrk.headers["Content-Type"] = "application/octet-stream"\n'
)

# Who runs in each scenario (those started; `sp-baseline` and `sp-aiohttp-hop` where listed).
EVERY = ("direct", "nginx-1w", "signing-proxy", "sp-baseline", "sp-aiohttp-hop")
SCENARIOS = [
    Scenario(
        "tiny",
        "tiny GET, c=50",
        "/tiny",
        50,
        contenders=(
            "direct",
            "nginx-1w",
            "nginx-1w-nolog",
            "signing-proxy",
            "sp-again",
            "sp-json",
            "sp-nolog",
            "sp-asyncio",
            "sp-baseline",
            "sp-aiohttp-hop",
            "floor",
        ),
    ),
    Scenario(
        "one",
        "one nginx worker: upstream + proxy, tiny GET c=32",
        "/",
        32,
        route="/one",
        contenders=(
            "nginx-one",
            "nginx-one-nolog",
            "signing-proxy",
            "sp-again",
            "sp-nolog",
            "sp-baseline",
        ),
    ),
    Scenario("64k", "64 KiB GET, c=50", "/64k", 50),
    Scenario(
        "c1", "tiny GET, c=1 (latency)", "/tiny", 1, contenders=(*EVERY, "sp-asyncio", "floor")
    ),
    Scenario("post", "1 MiB POST streamed, c=10", "/post", 10, POST_1MIB),
    Scenario(
        "hmac",
        "1 MiB POST HMAC-SHA256 url+body, c=10",
        "/post",
        10,
        POST_1MIB,
        "/hmac",
        contenders=("signing-proxy", "sp-baseline"),
    ),
    Scenario(
        "scale",
        "tiny GET, c=50, workers",
        "/tiny",
        50,
        contenders=("signing-proxy", "signing-proxy-2w"),
    ),
]


def plan(setup: Setup) -> list[tuple[Scenario, str]]:
    """(scenario, contender) pairs of one round."""
    return [(s, name) for s in SCENARIOS for name in s.contenders if name in setup.contenders]


def url_for(setup: Setup, scenario: Scenario, name: str) -> str:
    contender = setup.contenders[name]
    route = scenario.route if name.startswith(("signing-proxy", "sp-")) else ""
    return contender.base + route + scenario.path


def memory_rows(size_mib: int) -> list[str]:
    script = BENCH / "memory_1gib.py"
    if not script.exists():
        return ["(bench/memory_1gib.py missing: no 1 GiB rows)"]
    done = subprocess.run(
        [sys.executable, str(script), "--size-mib", str(size_mib)],
        capture_output=True,
        text=True,
        check=False,
    )
    return (done.stdout + done.stderr).strip().splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender [3]")
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per run [5]")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, 256 MiB memory run")
    parser.add_argument("--memory-mib", type=int, default=1024, help="memory run size [1024]")
    parser.add_argument("--no-memory", action="store_true", help="skip the 1 GiB memory run")
    parser.add_argument(
        "--aiohttp-hop",
        action="store_true",
        help="also run the proxy on the previous aiohttp ClientSession hop",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the servers run on any CPU (wrk stays on CPU 0)",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run the proxy's code from DIR (a checkout of an earlier commit) side by side",
    )
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="keep one process per proxy contender for the whole run (default: a fresh one"
        " each round)",
    )
    parser.add_argument(
        "--only", help="comma-separated scenario keys: " + ",".join(s.key for s in SCENARIOS)
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.memory_mib = 1, 2.0, 256
    if not Path("/proc/self/stat").exists():
        print("needs Linux /proc", file=sys.stderr)
        return 2
    binary = ensure_wrk()
    results: dict[tuple[str, str], list[Result]] = {}
    with running(args) as setup:
        pairs = plan(setup)
        if args.only:
            keep = set(args.only.split(","))
            pairs = [(s, n) for s, n in pairs if s.key in keep]
        print(
            f"upstream: {setup.upstream_kind}; {args.rounds} round(s) x {args.seconds:g} s;"
            f" wrk on CPU 0, servers on CPU {(not args.no_pin and SERVER_CPUS) or 'any'};"
            f" {os.cpu_count()} CPUs",
            flush=True,
        )
        for round_no in range(args.rounds):
            if round_no and not args.same_process:
                for name in dict.fromkeys(n for _, n in pairs):
                    setup.restart(name)
            for scenario, name in dict.fromkeys(pairs):  # warm-up: pools filled, code hot
                wrk(
                    binary,
                    url_for(setup, scenario, name),
                    scenario,
                    1,
                    setup.contenders[name].pid,
                    setup.tmp,
                )
            for scenario, name in pairs:
                result = wrk(
                    binary,
                    url_for(setup, scenario, name),
                    scenario,
                    args.seconds,
                    setup.contenders[name].pid,
                    setup.tmp,
                )
                results.setdefault((scenario.key, name), []).append(result)
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)
    report(results)
    if not args.no_memory:
        print(f"\n1 GiB rows (bench/memory_1gib.py --size-mib {args.memory_mib}):")
        for line in memory_rows(args.memory_mib):
            print("  " + line)
    return 0


def med(results: list[Result], attr: str) -> float:
    return float(statistics.median(float(getattr(r, attr)) for r in results))


def report(results: dict[tuple[str, str], list[Result]]) -> None:
    def get(key: str, name: str, attr: str) -> float | None:
        runs = results.get((key, name))
        return med(runs, attr) if runs else None

    for scenario in SCENARIOS:
        names = [n for n in scenario.contenders if (scenario.key, n) in results]
        if not names:
            continue
        print(f"\n{scenario.title} (medians)")
        print(
            f"  {'contender':18}{'req/s':>10}{'min-max req/s':>20}{'p50 ms':>10}{'p99 ms':>10}"
            f"{'CPU us/req':>12}"
        )
        for name in names:
            runs = results[(scenario.key, name)]
            span = f"{min(r.rps for r in runs):,.0f}-{max(r.rps for r in runs):,.0f}"
            print(
                f"  {name:18}{med(runs, 'rps'):>10,.0f}{span:>20}{med(runs, 'p50_ms'):>10.3f}"
                f"{med(runs, 'p99_ms'):>10.3f}{med(runs, 'cpu_us'):>12.1f}"
            )
    errors = sum(r.errors for runs in results.values() for r in runs)
    print(f"\n(non-2xx responses and timeouts over all runs: {errors})")

    def ratio(key: str, a: str, b: str) -> float | None:
        """The ratio of the medians, and the per-round ratios' range printed beside it."""
        top, bottom = get(key, a, "rps"), get(key, b, "rps")
        return top / bottom if top is not None and bottom else None

    def rounds(key: str, a: str, b: str) -> str:
        one, two = results.get((key, a)), results.get((key, b))
        if not one or not two:
            return ""
        each = [x.rps / y.rps for x, y in zip(one, two, strict=False) if y.rps]
        return f"  (rounds {min(each):.2f}-{max(each):.2f})" if each else ""

    def verdict(label: str, value: float | None, target: float | None, unit: str = "x",
                higher: bool = True, note: str = "") -> None:  # fmt: skip
        if value is None:
            return
        line = f"  {label:58} {value:8.3f}{unit}"
        if target is not None:
            ok = value >= target if higher else value <= target
            line += f"  target {'>=' if higher else '<='} {target}{unit}  "
            line += "MET" if ok else "MISSED"
        print(line + note)

    def compare(label: str, key: str, a: str, b: str, target: float | None) -> None:
        verdict(label, ratio(key, a, b), target, note=rounds(key, a, b))

    print("\naccess log on (nginx: access_log to a file; proxy: the default level), one run:")
    compare("tiny GET c=50, signing-proxy / nginx-1w", "tiny", "signing-proxy", "nginx-1w", 0.5)
    compare("one nginx c=32, signing-proxy / nginx-one", "one", "signing-proxy", "nginx-one", None)
    compare("64 KiB GET c=50, signing-proxy / nginx-1w", "64k", "signing-proxy", "nginx-1w", 0.9)
    sp50, d50 = get("c1", "signing-proxy", "p50_ms"), get("c1", "direct", "p50_ms")
    sp99, d99 = get("c1", "signing-proxy", "p99_ms"), get("c1", "direct", "p99_ms")
    if sp50 is not None and d50 is not None:
        verdict("c=1 added p50 over direct", sp50 - d50, 0.05, " ms", higher=False)
    if sp99 is not None and d99 is not None:
        verdict("c=1 added p99 over direct", sp99 - d99, None, " ms")
    hmac_rps, post_rps = get("hmac", "signing-proxy", "rps"), get("post", "nginx-1w", "rps")
    if hmac_rps is not None and post_rps:
        verdict("1 MiB HMAC POST / nginx-1w plain 1 MiB POST", hmac_rps / post_rps, 0.6)
    print("\nthe bench's own resolution (the same proxy in two processes, same rounds):")
    compare("tiny GET c=50, signing-proxy / sp-again", "tiny", "signing-proxy", "sp-again", None)
    compare("one nginx c=32, signing-proxy / sp-again", "one", "signing-proxy", "sp-again", None)
    print("\nwhat the access log costs (logs on / logs off, same server, same rounds):")
    compare("signing-proxy text / sp-nolog, tiny c=50", "tiny", "signing-proxy", "sp-nolog", 0.9)
    compare("sp-json / sp-nolog, tiny c=50", "tiny", "sp-json", "sp-nolog", 0.9)
    compare("signing-proxy / sp-nolog, one nginx c=32", "one", "signing-proxy", "sp-nolog", 0.9)
    compare("nginx-1w / nginx-1w-nolog, tiny c=50", "tiny", "nginx-1w", "nginx-1w-nolog", None)
    compare("nginx-one / nginx-one-nolog, c=32", "one", "nginx-one", "nginx-one-nolog", None)
    if ("tiny", "floor") in results:
        print("\nthe floor (bench/floor_proxy.py: uvloop, llhttp, a bearer added, nothing else):")
        compare("tiny GET c=50, sp-nolog / floor", "tiny", "sp-nolog", "floor", None)
        compare("tiny GET c=50, floor / nginx-1w-nolog", "tiny", "floor", "nginx-1w-nolog", None)
        floor_cpu, proxy_cpu = get("tiny", "floor", "cpu_us"), get("tiny", "sp-nolog", "cpu_us")
        if floor_cpu is not None and proxy_cpu is not None:
            print(
                f"  CPU per tiny GET: the floor {floor_cpu:.1f} us, sp-nolog {proxy_cpu:.1f} us:"
                f" {proxy_cpu - floor_cpu:.1f} us of the proxy's own work"
            )
        floor50 = get("c1", "floor", "p50_ms")
        if floor50 is not None and d50 is not None:
            verdict("c=1 added p50 over direct, the floor", floor50 - d50, None, " ms")
    print("\nlogs off on both:")
    compare("tiny GET c=50, sp-nolog / nginx-1w-nolog", "tiny", "sp-nolog", "nginx-1w-nolog", None)
    compare("one nginx c=32, sp-nolog / nginx-one-nolog", "one", "sp-nolog", "nginx-one-nolog",
            None)  # fmt: skip
    if ("tiny", "sp-asyncio") in results:
        print("\nuvloop (signing-proxy) against asyncio's own loop (sp-asyncio), logs on:")
        compare("tiny GET c=50, signing-proxy / sp-asyncio", "tiny", "signing-proxy",
                "sp-asyncio", None)  # fmt: skip
        asyncio50 = get("c1", "sp-asyncio", "p50_ms")
        if asyncio50 is not None and d50 is not None:
            verdict("c=1 added p50 over direct, sp-asyncio", asyncio50 - d50, 0.05, " ms", False)
    if ("tiny", "sp-baseline") in results:
        print("\nthis code against --baseline, both logs on:")
        compare("tiny GET c=50, signing-proxy / sp-baseline", "tiny", "signing-proxy",
                "sp-baseline", None)  # fmt: skip
        compare("one nginx c=32, signing-proxy / sp-baseline", "one", "signing-proxy",
                "sp-baseline", None)  # fmt: skip
    for name in ("signing-proxy", "sp-baseline"):
        hmac = get("hmac", name, "rps")
        if hmac is not None:
            cpu = get("hmac", name, "cpu_us") or 0
            print(f"  ({name}: 1 MiB HMAC POST {hmac:.1f} req/s, {cpu:.0f} us CPU/request)")
    one, two = get("scale", "signing-proxy", "rps"), get("scale", "signing-proxy-2w", "rps")
    if one and two:
        print(
            f"\nworkers: tiny GET c=50, 1 worker {one:,.0f} req/s, 2 workers {two:,.0f} req/s"
            f" ({two / one:.2f}x; 2 CPUs shared with wrk and the upstream)"
        )


if __name__ == "__main__":
    sys.exit(main())
