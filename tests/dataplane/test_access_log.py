"""The access log as `signing-proxy run` writes it (proxy/dataplane/access_line.py,
proxy/dataplane/access_log.py):
the same lines `logging` wrote, written in batches by a thread, never lost on SIGTERM, and never
a stall of the event loop when the destination is stuck.

The process tests run the real `python -m proxy run` with its stderr on a file (or a pipe nobody
reads) and real clients: each line is parsed (the text format's regular expression, `json.loads`),
counted against the requests made, ordered per client connection, and searched for the canary
secrets the requests carried.
"""

from __future__ import annotations

import asyncio
import calendar
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from proxy.cli.reload import Reloader
from proxy.connections.runtime import build_runtime
from proxy.dataplane.access_line import JsonLine, TextLine
from proxy.dataplane.access_log import AccessLog
from proxy.dataplane.plane import create_app
from proxy.logs import JsonFormatter
from tests import rawhttp
from tests.accesslog import MESSAGE, TEXT_LINE
from tests.builders import api_key, bearer, connection
from tests.cli.procs import wait_answering
from tests.plane import PlaneServer
from tests.proxyproc import listening_ports
from tests.rawhttp import RawUpstream, raw_upstream

BEARER_CANARY = "canary-access-bearer-3f9a"
QUERY_CANARY = "canary-access-apikey-3f9a"
CLIENT_CANARY = "canary-access-client-query-3f9a"
TIMEOUT = 30.0
DROPPED = "signing_proxy_access_log_dropped_lines_total"


def tree_for(upstream: RawUpstream, **extra: Any) -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:0",
        "connections": [
            connection(
                "svc",
                upstream.base,
                bearer(BEARER_CANARY),
                api_key("api_key", "query", QUERY_CANARY),
            )
        ],
        **extra,
    }


def request(path: str, *, close: bool = False) -> bytes:
    query = f"?q={CLIENT_CANARY}"
    end = "Connection: close\r\n" if close else ""
    return f"GET {path}{query} HTTP/1.1\r\nHost: p\r\n{end}\r\n".encode()


# --- the lines -----------------------------------------------------------------------------


async def test_json_and_text_lines_are_what_logging_wrote(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """Each fast line equals what `logging` with `logs.py`'s formatters makes of the same fields:
    nothing removed, the same order, spacing and escaping."""
    async with raw_upstream() as upstream:
        runtime = build_runtime(tree_for(upstream), {})
        files = {fmt: tmp_path / f"{fmt}.log" for fmt in ("json", "text")}
        fds = {fmt: os.open(path, os.O_WRONLY | os.O_CREAT) for fmt, path in files.items()}
        logs = {
            "json": AccessLog(fds["json"], JsonLine(pid=os.getpid())),
            "text": AccessLog(fds["text"], TextLine()),
        }
        try:
            for log in logs.values():
                client = await aiohttp_client(PlaneServer(create_app(runtime, access_log=log)))
                port = rawhttp.port_of(client.server)
                for raw in (
                    request("/svc/a"),
                    request("/svc/%22quoted%5C"),
                    request("/nowhere"),
                    b"HEAD /svc/h HTTP/1.1\r\nHost: p\r\nX-Request-Id: my.id-7\r\n\r\n",
                    b"POST /svc/p HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\n\r\nabc",
                ):
                    await rawhttp.round_trip(port, raw)
                assert log.wait_written()
        finally:
            for fmt, log in logs.items():
                log.close()
                os.close(fds[fmt])
    json_lines = files["json"].read_text().splitlines()
    text_lines = files["text"].read_text().splitlines()
    assert len(json_lines) == len(text_lines) == 5
    for line in json_lines:
        fields = json.loads(line)
        record = record_of(fields["message"], fields)
        assert JsonFormatter().format(record) == line
    parsed = [json.loads(line) for line in json_lines]
    assert [p["path"] for p in parsed] == ["/a", "/%22quoted%5C", "/nowhere", "/h", "/p"]
    assert [p["status"] for p in parsed] == [200, 200, 404, 200, 200]
    assert parsed[3]["request_id"] == "my.id-7" and parsed[4]["bytes_in"] == 3
    assert parsed[2]["error"] == "route_not_found" and parsed[2]["connection"] is None
    text_format = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    for line in text_lines:
        found = TEXT_LINE.match(line)
        assert found is not None and MESSAGE.match(found["message"]), line
        local = time.mktime(time.strptime(found["date"], "%Y-%m-%d %H:%M:%S"))
        record = record_of(found["message"], {}, local + int(found["millis"]) / 1000 + 0.0002)
        assert text_format.format(record) == line
    everything = "\n".join(json_lines + text_lines)
    for secret in (BEARER_CANARY, QUERY_CANARY, CLIENT_CANARY):
        assert secret not in everything


def record_of(message: str, fields: dict[str, Any], created: float = 0.0) -> logging.LogRecord:
    """The `LogRecord` `logging` made of an access line's message and fields."""
    if "ts" in fields:
        stamp = time.strptime(fields["ts"][:19], "%Y-%m-%dT%H:%M:%S")
        created = calendar.timegm(stamp) + int(fields["ts"][20:23]) / 1000 + 0.0002
    extra = {k: v for k, v in fields.items() if k not in ("ts", "level", "logger", "pid")}
    record = logging.makeLogRecord(
        {
            "name": "signing_proxy.access",
            "levelname": "INFO",
            "levelno": logging.INFO,
            "msg": message,
            "created": created,
            "msecs": int(created % 1 * 1000),
            "process": fields.get("pid", os.getpid()),
            **{k: v for k, v in extra.items() if k != "message"},
        }
    )
    return record


# --- the writer ------------------------------------------------------------------------------


def test_lines_wait_for_the_buffer_or_the_timer(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    log = AccessLog(fd, TextLine(), buffer_bytes=1000, flush_seconds=60)
    try:
        log.write("first\n")
        time.sleep(0.2)
        assert path.read_text() == ""  # under the buffer size, before the timer: still queued
        for n in range(100):  # past 1,000 bytes: written without waiting for the timer
            log.write(f"line {n:04d} ........\n")
        until(lambda: path.read_text().count("\n") == 101, "the full buffer to be written")
        log.write("last\n")
        log.flush()  # what a reload does
        until(lambda: path.read_text().endswith("last\n"), "the flushed line")
    finally:
        log.close()
        os.close(fd)
    timed = AccessLog(os.open(tmp_path / "timed.log", os.O_WRONLY | os.O_CREAT), TextLine(),
                      flush_seconds=0.2)  # fmt: skip
    try:
        timed.write("alone\n")
        until(lambda: (tmp_path / "timed.log").read_text() == "alone\n", "the timer's write")
    finally:
        timed.close()


def until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_pipe_nobody_reads_costs_dropped_lines_never_a_blocked_writer() -> None:
    """The queue is bounded: once the pipe is full and the limit reached, `write` drops and
    counts; it never waits. What does get through is whole lines, in order."""
    read_end, write_end = os.pipe()
    before = REGISTRY.get_sample_value(DROPPED) or 0.0
    log = AccessLog(write_end, TextLine(), buffer_bytes=4096, limit_bytes=64 * 1024)
    lines = [f"line {n:06d} {'x' * 80}\n" for n in range(20_000)]  # ~1.8 MB: 28x the pipe
    slowest = 0.0
    try:
        for line in lines:
            started = time.perf_counter()
            log.write(line)
            slowest = max(slowest, time.perf_counter() - started)
        assert log.dropped > 0
        assert (REGISTRY.get_sample_value(DROPPED) or 0.0) - before == log.dropped
        # A write(2) into the full pipe would have blocked for good (nobody reads it yet): a
        # bound this loose only tells "returned" from "stuck", whatever the machine's load.
        assert slowest < 5.0
        received = bytearray()
        reader = threading.Thread(target=drain, args=(read_end, received))
        reader.start()
        log.close()
        os.close(write_end)
        reader.join(TIMEOUT)
    finally:
        os.close(read_end)
    got = received.decode().splitlines(keepends=True)
    assert len(got) + log.dropped == len(lines)
    assert set(got) <= set(lines)
    assert got == sorted(got)  # in the order written


def drain(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, 65536):
        into += chunk


async def test_a_reload_writes_the_queued_lines(aiohttp_client: Any, tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    log = AccessLog(fd, TextLine(), flush_seconds=60)
    try:
        async with raw_upstream() as upstream:
            tree = tree_for(upstream)
            config = tmp_path / "proxy.yaml"
            config.write_text(yaml.safe_dump(tree))
            plane = create_app(build_runtime(tree, {}), access_log=log)
            client = await aiohttp_client(PlaneServer(plane))
            await rawhttp.round_trip(rawhttp.port_of(client.server), request("/svc/before-reload"))
            await asyncio.sleep(0.1)
            assert path.read_text() == ""
            assert await Reloader(str(config), plane).reload()
            await asyncio.to_thread(until, lambda: "/svc/before-reload" in path.read_text(), "")
    finally:
        log.close()
        os.close(fd)


# --- the process -----------------------------------------------------------------------------


@asynccontextmanager
async def proxy_run(
    tree: dict[str, Any], tmp_path: Path, *args: str, stderr: Any
) -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    """`python -m proxy run` with its stderr on `stderr`; the port read back from the log file
    (`stderr` a file) or from the pipe (read only until the port is known)."""
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml.safe_dump(tree, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_PROXY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "run", "--config", str(config), *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env=env,
    )
    try:
        port = await asyncio.to_thread(read_port, proc, stderr)
        assert await wait_answering(f"http://127.0.0.1:{port}/healthz") == 200
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def read_port(proc: subprocess.Popen[bytes], stderr: Any) -> int:
    seen = b""
    deadline = time.monotonic() + TIMEOUT
    while not (seen.endswith(b"\n") and listening_ports(seen)):
        assert proc.poll() is None and time.monotonic() < deadline, seen
        if proc.stderr is not None:
            seen += os.read(proc.stderr.fileno(), 1)  # byte by byte: nothing read past the line
        else:
            seen = Path(stderr.name).read_bytes()
            time.sleep(0.05)
    return listening_ports(seen)[0]


async def client_connection(port: int, k: int, count: int) -> None:
    """`count` keep-alive requests in turn on one connection, the last pipelined in pairs."""
    async with rawhttp.opened(port) as (reader, writer):
        for i in range(0, count, 2):
            writer.write(request(f"/svc/c{k}/r{i}") + request(f"/svc/c{k}/r{i + 1}"))
            for _ in range(2):
                response = await asyncio.wait_for(rawhttp.read_response(reader), TIMEOUT)
                assert response.status == 200


@pytest.mark.parametrize(("fmt", "workers"), [("text", "1"), ("json", "2")])
async def test_every_line_is_on_disk_after_sigterm_parsed_in_order_without_secrets(
    tmp_path: Path, fmt: str, workers: str
) -> None:
    clients, each = 6, 40
    async with raw_upstream() as upstream:
        log_path = tmp_path / "stderr.log"
        tree = tree_for(upstream, log={"format": fmt})
        with log_path.open("wb") as stderr:
            async with proxy_run(tree, tmp_path, "--workers", workers, stderr=stderr) as (
                proc,
                port,
            ):
                await asyncio.gather(*(client_connection(port, k, each) for k in range(clients)))
                # At once: these lines are still queued (the writer's timer is a second).
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(proc.wait, TIMEOUT) == 0
    output = log_path.read_text()
    lines = output.splitlines()
    paths: list[str] = []
    for line in lines:
        if fmt == "json":
            fields = json.loads(line)  # every line the process wrote, not only the access lines
            if fields["event"] == "request" and fields["path"] != "/healthz":
                assert fields["status"] == 200 and fields["connection"] == "svc"
                paths.append("/svc" + fields["path"])
        elif " signing_proxy.access " in line:
            found = TEXT_LINE.match(line)
            assert found is not None, line
            message = MESSAGE.match(found["message"])
            assert message is not None and message["status"] == "200", line
            paths.append(message["path"])
    made = [p for p in paths if p != "/healthz"]
    assert len(made) == clients * each
    for k in range(clients):
        mine = [int(p.rsplit("/r", 1)[1]) for p in made if p.startswith(f"/svc/c{k}/")]
        assert mine == list(range(each)), f"connection {k}: {mine}"
    for secret in (BEARER_CANARY, QUERY_CANARY, CLIENT_CANARY):
        assert secret not in output
    assert len(upstream.received) == clients * each
    assert all(BEARER_CANARY in str(r.request.headers) for r in upstream.received)


async def test_a_stalled_stderr_pipe_does_not_stall_requests(tmp_path: Path) -> None:
    """stderr is a pipe that nobody reads once the proxy listens: the access lines fill it
    (checked: the pipe holds a full pipe's worth, unread), and requests are served on."""
    clients, each = 4, 500  # ~4x the 64 KiB a pipe holds in access lines
    async with raw_upstream() as upstream:
        tree = tree_for(upstream)
        async with proxy_run(tree, tmp_path, stderr=subprocess.PIPE) as (proc, port):
            assert proc.stderr is not None
            await asyncio.wait_for(
                asyncio.gather(*(client_connection(port, k, each) for k in range(clients))),
                TIMEOUT,
            )
            await asyncio.sleep(1.5)  # the writer's timer has fired: it sits in a full pipe
            assert unread(proc.stderr.fileno()) >= 60_000
            # Another request is answered while the writer is stuck.
            async with rawhttp.opened(port) as (reader, writer):
                writer.write(request("/svc/while-stuck"))
                response = await asyncio.wait_for(rawhttp.read_response(reader), 5)
                assert response.status == 200
            # Reading again lets the writer go on; SIGTERM then ends the process cleanly.
            received = bytearray()
            reader_thread = threading.Thread(target=drain, args=(proc.stderr.fileno(), received))
            reader_thread.start()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, TIMEOUT) == 0
            await asyncio.to_thread(reader_thread.join, TIMEOUT)
    output = received.decode()
    # Nothing was lost: under the writer's limit, lines wait for the reader instead.
    assert output.count(" signing_proxy.access GET /svc/c") == clients * each
    assert " GET /svc/while-stuck " in output


def unread(fd: int) -> int:
    """Bytes waiting in the pipe (FIONREAD)."""
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    before = {t.name for t in threading.enumerate()}
    yield
    after = {t.name for t in threading.enumerate() if t.name == "access-log"}
    assert not (after - before), "an access-log writer was left running"
