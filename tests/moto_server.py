"""`moto_server` (PyPI `moto[server]`) as a real local process, with signature checks on.

moto checks SigV4 only once `INITIAL_NO_AUTH_ACTION_COUNT` actions have been served: the first
three (create an IAM user, its access key, a policy allowing everything) run unauthenticated,
and every request after them must be signed with that key, or is refused
(`SignatureDoesNotMatch`, `InvalidClientTokenId`). moto trusts a declared `x-amz-content-sha256`
and reads no chunk signature, so the tests check those themselves.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3

REGION = "us-east-1"
_RUNNING = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")
UNAUTHENTICATED_ACTIONS = 3


@dataclass(frozen=True)
class MotoServer:
    url: str
    access_key_id: str
    secret_access_key: str
    user_arn: str


@contextmanager
def moto_server(timeout: float = 30.0) -> Iterator[MotoServer]:
    """Start moto on 127.0.0.1 (port 0: it reports the port it got), make the proxy's IAM user
    and key, and stop it on exit."""
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(UNAUTHENTICATED_ACTIONS)}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(process, lines), daemon=True)
    reader.start()
    try:
        port = _wait_port(lines, timeout)
        url = f"http://127.0.0.1:{port}"
        yield _with_user(url)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        reader.join(5)
        if process.stdout is not None:
            process.stdout.close()


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)  # drained so a full pipe never blocks moto's logging


def _wait_port(lines: queue.Queue[str], timeout: float) -> int:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"moto_server did not start: {''.join(seen)}") from None
        seen.append(line)
        found = _RUNNING.search(line)
        if found:
            return int(found.group(1))


def _with_user(url: str) -> MotoServer:
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="unauthenticated",
        aws_secret_access_key="unauthenticated",
    )
    user = iam.create_user(UserName="signing-proxy")["User"]
    key = iam.create_access_key(UserName="signing-proxy")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    iam.put_user_policy(
        UserName="signing-proxy", PolicyName="everything", PolicyDocument=json.dumps(policy)
    )
    return MotoServer(url, key["AccessKeyId"], key["SecretAccessKey"], user["Arn"])
