"""Day two of a GitHub App connection, compressed: real `python -m proxy run` processes — two
replicas on one SQLite store, one restarted midway, the other with two workers — under steady
load, against a GitHub-shaped fake whose installation tokens live 2.5 seconds. No request fails,
the installation token is fetched about once per expiry (not once per process), and the app's
private key never appears in any process's log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.jwt_provider import JwtProvider, create_jwt_app, private_pem, public_pem
from tests.loops import background_loop
from tests.oauth_server import serve_app
from tests.proxyproc import ProxyProcess, proxy_process

APP_ID, INSTALLATION = "424242", "31337"
KEY = private_pem("rsa")


@pytest.fixture
def github() -> Iterator[tuple[JwtProvider, str]]:
    provider = JwtProvider(ttl=2.5)
    provider.apps[APP_ID] = public_pem(KEY)
    provider.installations[INSTALLATION] = APP_ID
    with background_loop() as (run, exits):
        yield provider, run(serve_app(create_jwt_app(provider), exits))


def write_config(tmp_path: Path, base_url: str) -> Path:
    (tmp_path / "app.pem").write_text(KEY)
    tree = {
        "listen": "127.0.0.1:0",
        "store": {"path": str(tmp_path / "state.db")},
        "log": {"level": "debug"},
        "connections": [
            {
                "name": "github",
                "baseUrl": base_url,
                "credentials": [
                    {
                        "authSchemeConfig": {
                            "type": "jwt-bearer",
                            "jwtBearer": {
                                "flavor": "github-app",
                                "issuer": APP_ID,
                                "subject": INSTALLATION,
                            },
                        },
                        "credential": {
                            "type": "string",
                            "data": {
                                "string": {"value": "${file:" + str(tmp_path / "app.pem") + "}"}
                            },
                        },
                    }
                ],
            }
        ],
    }
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml.safe_dump(tree))
    return config


async def load(proxy: ProxyProcess, seconds: float, statuses: list[int]) -> None:
    until = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            requests = [session.get(proxy.base + "/github/repos/acme/app") for _ in range(4)]
            for response in await asyncio.gather(*requests):
                statuses.append(response.status)
                response.release()
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_replicas_restart_and_workers_share_one_installation_token_per_expiry(
    github: tuple[JwtProvider, str], tmp_path: Path
) -> None:
    provider, base_url = github
    config = write_config(tmp_path, base_url)
    statuses: list[int] = []
    logs: list[bytes] = []
    async with proxy_process(config, "--workers", "2") as steady:
        async with proxy_process(config) as first:
            await asyncio.gather(load(steady, 3.0, statuses), load(first, 3.0, statuses))
            logs.append(first.stderr)
        # The restart: a new process on the same store takes the place of the first.
        async with proxy_process(config) as second:
            await asyncio.gather(load(steady, 3.0, statuses), load(second, 3.0, statuses))
            logs.append(second.stderr)
        logs.append(steady.stderr)
    assert statuses and set(statuses) == {200}, provider.refused
    assert provider.refused == []
    # GitHub's expires_at has whole seconds: a token lives 1.5 to 2.5 s and is renewed a quarter
    # of its life ahead, so 6 s of load need at most 6 / 1.1 tokens (and the gap of the restart
    # one more); three processes, one with two workers, share each one through the store.
    calls = provider.hits["github"]
    assert 3 <= calls <= 6 / 1.1 + 2, calls
    key_lines = KEY.splitlines()[1:-1]
    assert not any(line.encode() in log for log in logs for line in key_lines)
