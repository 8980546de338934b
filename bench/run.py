"""The performance bench (issues 6, 11): signing-proxy next to nginx as a reverse proxy.

One command: `python bench/run.py` (`--quick` for a short run). It starts

- a local upstream: nginx serving static files (1 worker), else `bench/fast_upstream.py`;
- the contenders: **direct** (wrk straight to the upstream), **nginx-1w** (nginx as a reverse
  proxy adding `Authorization: Bearer ...`, one worker, keep-alive to the upstream, request
  bodies streamed like ours), **signing-proxy** (`python -m proxy run`, a bearer connection,
  and an HMAC-SHA256 url+body connection), and for the scaling row signing-proxy `--workers 2`;
  with `--aiohttp-hop`, also the proxy on the previous aiohttp ClientSession hop; with
  `--baseline DIR`, also **sp-baseline**: the proxy's code from DIR (a checkout of an earlier
  commit, e.g. `git worktree add /tmp/base <commit>`), so a change is judged old next to new
  in the same alternating rounds;

then drives load with wrk pinned to CPU 0 and the servers to CPU 1 (`taskset`; the
`--workers 2` instance is left free to use both), contenders alternating round by round,
and prints medians, ratios to nginx-1w and the issue's targets. CPU per request is the
contender's process-tree CPU time over the requests served. The 1 GiB rows come from
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
# instead of spooled to a temp file (as ours does); everything else nginx's defaults.
NGINX_PROXY = """
    upstream origin {{ server 127.0.0.1:{upstream}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {token}";
            proxy_request_buffering off;
        }}
    }}
"""


def nginx_conf(tmp: Path, name: str, body: str) -> Path:
    for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        (tmp / f"{name}_{sub}").mkdir(exist_ok=True)
    conf = tmp / f"{name}.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_COMMON.format(user=user, tmp=tmp, name=name, body=body))
    return conf


def proxy_config(tmp: Path, port: int, upstream: int) -> Path:
    config = tmp / f"proxy-{port}.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        "log: {level: warning}\n"
        f"store: {{path: {tmp}/state-{port}.db}}\n"
        "connections:\n"
        "  - name: up\n"
        f"    baseUrl: http://127.0.0.1:{upstream}\n"
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
            if nginx:
                port = free_port()
                body = NGINX_PROXY.format(port=port, upstream=up, token=TOKEN)
                conf = nginx_conf(tmp, "proxy", body)
                proc = setup.start([nginx, "-c", str(conf), "-g", "daemon off;"], port, "nginx")
                setup.contenders["nginx-1w"] = Contender(
                    "nginx-1w", f"http://127.0.0.1:{port}", proc.pid
                )
            for name, extra in (("signing-proxy", []), ("signing-proxy-2w", ["--workers", "2"])):
                port = free_port()
                config = proxy_config(tmp, port, up)
                argv = [sys.executable, "-m", "proxy", "run", "--config", str(config), *extra]
                proc = setup.start(argv, port, name, pin=not extra)
                setup.contenders[name] = Contender(name, f"http://127.0.0.1:{port}", proc.pid)
            if args.baseline:
                port = free_port()
                config = proxy_config(tmp, port, up)
                argv = [sys.executable, "-m", "proxy", "run", "--config", str(config)]
                # The baseline's package is found first: PYTHONPATH precedes site-packages.
                env = {**os.environ, "PYTHONPATH": str(Path(args.baseline).resolve())}
                proc = setup.start(argv, port, "baseline", env)
                setup.contenders["sp-baseline"] = Contender(
                    "sp-baseline", f"http://127.0.0.1:{port}", proc.pid
                )
            if args.aiohttp_hop:
                port = free_port()
                config = proxy_config(tmp, port, up)
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

SCENARIOS = [
    Scenario("tiny", "tiny GET, c=50", "/tiny", 50),
    Scenario("64k", "64 KiB GET, c=50", "/64k", 50),
    Scenario("c1", "tiny GET, c=1 (latency)", "/tiny", 1),
    Scenario("post", "1 MiB POST streamed, c=10", "/post", 10, POST_1MIB),
    Scenario("hmac", "1 MiB POST HMAC-SHA256 url+body, c=10", "/post", 10, POST_1MIB, "/hmac"),
    Scenario("scale", "tiny GET, c=50, workers", "/tiny", 50),
]


def plan(setup: Setup) -> list[tuple[Scenario, str]]:
    """(scenario, contender) pairs of one round."""
    singles = [
        n
        for n in ("direct", "nginx-1w", "signing-proxy", "sp-baseline", "sp-aiohttp-hop")
        if n in setup.contenders
    ]
    pairs: list[tuple[Scenario, str]] = []
    for scenario in SCENARIOS:
        if scenario.key == "hmac":
            pairs += [(scenario, n) for n in ("signing-proxy", "sp-baseline") if n in singles]
        elif scenario.key == "scale":
            pairs += [(scenario, "signing-proxy"), (scenario, "signing-proxy-2w")]
        else:
            pairs += [(scenario, name) for name in singles]
    return pairs


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
        for scenario, name in dict.fromkeys(pairs):  # warm-up: pools filled, code paths hot
            wrk(
                binary,
                url_for(setup, scenario, name),
                scenario,
                1,
                setup.contenders[name].pid,
                setup.tmp,
            )
        for round_no in range(args.rounds):
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
    names = ["direct", "nginx-1w", "signing-proxy", "sp-baseline", "sp-aiohttp-hop"]
    present = [n for n in names if any(k[1] == n for k in results)]
    print()
    print(f"{'scenario (medians)':42}" + "".join(f"{n:>16}" for n in present) + f"{'sp/nginx':>10}")

    def row(title: str, key: str, attr: str, fmt: str) -> None:
        cells, values = "", {}
        for name in present:
            runs = results.get((key, name))
            if runs:
                values[name] = med(runs, attr)
                cells += f"{format(values[name], fmt):>16}"
            else:
                cells += f"{'-':>16}"
        ratio = ""
        if "nginx-1w" in values and "signing-proxy" in values and values["nginx-1w"]:
            ratio = f"{values['signing-proxy'] / values['nginx-1w']:.2f}x"
        print(f"{title:42}{cells}{ratio:>10}")

    def spread(key: str) -> None:
        # min-max over the rounds: how far one round may stray from the median on a busy host
        cells = ""
        for name in present:
            runs = results.get((key, name))
            span = (
                f"{min(r.rps for r in runs):,.0f}-{max(r.rps for r in runs):,.0f}" if runs else "-"
            )
            cells += f"{span:>16}"
        print(f"{'  req/s min-max':42}{cells}")

    for scenario in SCENARIOS:
        if scenario.key in ("hmac", "scale") or not any(k[0] == scenario.key for k in results):
            continue
        row(f"{scenario.title}: req/s", scenario.key, "rps", ",.0f")
        spread(scenario.key)
        row("  p50 ms", scenario.key, "p50_ms", ".3f")
        row("  p99 ms", scenario.key, "p99_ms", ".3f")
        row("  contender CPU us/request", scenario.key, "cpu_us", ".1f")
    errors = sum(r.errors for runs in results.values() for r in runs)
    print(f"(non-2xx responses and timeouts over all runs: {errors})")

    def get(key: str, name: str, attr: str) -> float | None:
        runs = results.get((key, name))
        return med(runs, attr) if runs else None

    print("\ntargets (single worker, ratios to nginx-1w in this run):")

    def verdict(label: str, value: float | None, target: float, unit: str, higher: bool) -> None:
        if value is None:
            print(f"  {label:50} n/a")
            return
        ok = value >= target if higher else value <= target
        sign = ">=" if higher else "<="
        print(
            f"  {label:50} {value:8.3f}{unit}  target {sign} {target}{unit}  "
            f"{'MET' if ok else 'MISSED'}"
        )

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    verdict(
        "tiny GET c=50, signing-proxy / nginx-1w",
        ratio(get("tiny", "signing-proxy", "rps"), get("tiny", "nginx-1w", "rps")),
        0.5,
        "x",
        True,
    )
    verdict(
        "64 KiB GET c=50, signing-proxy / nginx-1w",
        ratio(get("64k", "signing-proxy", "rps"), get("64k", "nginx-1w", "rps")),
        0.9,
        "x",
        True,
    )
    sp50, d50 = get("c1", "signing-proxy", "p50_ms"), get("c1", "direct", "p50_ms")
    sp99, d99 = get("c1", "signing-proxy", "p99_ms"), get("c1", "direct", "p99_ms")
    verdict(
        "c=1 added p50 over direct",
        None if sp50 is None or d50 is None else sp50 - d50,
        0.05,
        " ms",
        False,
    )
    if sp99 is not None and d99 is not None:
        print(f"  {'c=1 added p99 over direct':50} {sp99 - d99:8.3f} ms  (no target)")
    verdict(
        "1 MiB HMAC POST / nginx-1w plain 1 MiB POST",
        ratio(get("hmac", "signing-proxy", "rps"), get("post", "nginx-1w", "rps")),
        0.6,
        "x",
        True,
    )
    for name in ("signing-proxy", "sp-baseline"):
        hmac_rps = get("hmac", name, "rps")
        if hmac_rps is not None:
            print(
                f"  {f'({name}: 1 MiB HMAC POST req/s, CPU us/request)':50} {hmac_rps:8.1f}"
                f"  {get('hmac', name, 'cpu_us') or 0:.0f} us"
            )
    one, two = get("scale", "signing-proxy", "rps"), get("scale", "signing-proxy-2w", "rps")
    if one and two:
        print(
            f"\nworkers: tiny GET c=50, 1 worker {one:,.0f} req/s, 2 workers {two:,.0f} req/s"
            f" ({two / one:.2f}x; 2 CPUs shared with wrk and the upstream)"
        )


if __name__ == "__main__":
    sys.exit(main())
