"""Where the proxy's time goes under load, access log on: py-spy (and perf) on run.py's set-up.

`python bench/where_time_goes.py` starts what `run.py` starts (servers pinned to CPU 1, wrk
to CPU 0), drives the tiny GET at c=50 against **signing-proxy** (default log level: the access
log on, stderr to a file) or `--contender sp-nolog`/`sp-json`, and meanwhile records the proxy
with `py-spy record -r 500 -f raw` (wall-clock samples of the running threads; idle ones left
out). It prints the share of the samples in each of our modules and in the access-log point's
functions (inclusive), and the leaf frames. With `--perf`, also `perf record -F 2000 -g` on the
same process and the share per shared object (`perf report --sort dso`). Needs py-spy (the
`dev` extra) and root or ptrace rights.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

from run import SCENARIOS, ensure_wrk, running, url_for, wrk

# Inclusive shares worth naming (function, file suffix).
FUNCTIONS = [
    ("log_access", "middleware.py"),
    ("request", "access_log.py"),
    ("__call__", "access_line.py"),
    ("request_done", "metrics.py"),
    ("_run", "access_log.py"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0, help="recording length [15]")
    parser.add_argument("--contender", default="signing-proxy", help="[signing-proxy]")
    parser.add_argument("--perf", action="store_true", help="also perf record, by shared object")
    parser.add_argument("--out", default="profile.raw", help="py-spy's raw output [profile.raw]")
    args = parser.parse_args()
    args.no_pin, args.baseline, args.aiohttp_hop = False, None, False
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is needed: pip install py-spy (in the dev extra)")
    binary = ensure_wrk()
    tiny = next(s for s in SCENARIOS if s.key == "tiny")
    with running(args) as setup:
        contender = setup.contenders[args.contender]
        url = url_for(setup, tiny, args.contender)
        wrk(binary, url, tiny, 2, contender.pid, setup.tmp)  # warm
        load_seconds = args.seconds + 4
        load = subprocess.Popen(
            ["taskset", "-c", "0", binary, "-t1", "-c50", f"-d{load_seconds:.0f}s", url],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)
        record = [spy, "record", "-r", "500", "-f", "raw", "-o", args.out]
        record += ["-d", f"{args.seconds:.0f}", "--pid", str(contender.pid), "--nonblocking"]
        subprocess.run(record, check=True, capture_output=True)
        perf_out = None
        if args.perf and shutil.which("perf"):
            perf_out = Path(args.out).with_suffix(".perf")
            subprocess.run(
                ["perf", "record", "-F", "2000", "-g", "-o", str(perf_out), "-p",
                 str(contender.pid), "--", "sleep", "2"],
                check=False, capture_output=True,
            )  # fmt: skip
        out, _ = load.communicate()
    print(out.strip().splitlines()[-2] if out else "")
    summarise(Path(args.out))
    if perf_out is not None:
        report = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                str(perf_out),
                "--sort",
                "dso",
                "--stdio",
                "--no-children",
                "-g",
                "none",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        print("\nperf, share of samples per shared object:")
        for line in report.splitlines():
            if line.strip() and not line.startswith("#"):
                print("  " + line.strip())
    return 0


def summarise(raw: Path) -> None:
    total = 0
    by_module: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for module in {frame_file(f) for f in frames if frame_file(f).startswith("proxy/")}:
            by_module[module] += count
        for name, suffix in FUNCTIONS:
            if any(frame_function(f) == name and frame_file(f).endswith(suffix) for f in frames):
                by_function[f"{name} ({suffix})"] += count
        leaves[frames[-1]] += count
    print(f"\npy-spy: {total} samples (500/s, running threads)")
    print("inclusive share per module of the proxy:")
    for module, count in by_module.most_common(20):
        print(f"  {100 * count / total:5.1f}%  {module}")
    print("inclusive share of the access-log point's functions:")
    for name, count in by_function.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("leaf frames (the Python line running, or calling into C, when sampled):")
    for frame, count in leaves.most_common(15):
        print(f"  {100 * count / total:5.1f}%  {frame}")


def frame_file(frame: str) -> str:
    """`function (path/to/file.py:12)` -> `path/to/file.py`."""
    inside = frame.rpartition(" (")[2].rstrip(")")
    return inside.rpartition(":")[0] or inside


def frame_function(frame: str) -> str:
    """`Class.method (file:12)` -> `method`."""
    return frame.partition(" (")[0].rpartition(".")[2]


if __name__ == "__main__":
    sys.exit(main())
