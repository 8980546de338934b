"""A hostile proxy.yaml is refused, not chewed on (docs/configuration.md "Bounds on the file"):
a YAML alias bomb, a recursive alias, too many nodes, too much time, too many bytes — in `check`,
at `run`, and on reload, where a later good file still applies and the process still stops
gracefully.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import bounds
from proxy.config.load import ConfigInvalid, _UniqueKeyLoader, parse_yaml
from tests.cli.procs import cli
from tests.cli.reloading import config, running, until_logged, upstream, write  # noqa: F401
from tests.proxyproc import ProxyProcess

TIMEOUT = 60.0  # bounds a broken proxy only (a loaded 2-core machine is slow, not wrong)


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs" in YAML: 9 levels of 9 references are 387,420,489 leaves."""
    lines = ["lol0: &l0 [" + ", ".join(['"lol"'] * 9) + "]"]
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"lol{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def refusal(text: str, loader: type[Any] | None = None) -> str:
    with pytest.raises(ConfigInvalid) as caught:
        if loader is None:
            parse_yaml(text)
        else:
            try:
                yaml.load(text, Loader=loader)
            except bounds.TooLarge as exc:
                raise ConfigInvalid([]) from exc
    if loader is not None:
        return str(caught.value.__cause__)
    [problem] = caught.value.problems
    return problem.message


def test_an_alias_bomb_is_refused_before_anything_walks_it() -> None:
    started = time.monotonic()
    message = refusal(alias_bomb())
    assert (
        message == f"the file expands to more than {bounds.MAX_NODES} YAML nodes (aliases); refused"
    )
    assert time.monotonic() - started < 5  # measured before it is expanded, not after


def test_a_recursive_alias_is_refused() -> None:
    assert refusal("a: &a [1, *a]\n") == "the file holds a recursive YAML alias; refused"
    assert refusal("a: &a {b: *a}\n") == "the file holds a recursive YAML alias; refused"


def test_aliases_within_the_bounds_are_read() -> None:
    text = "base: &b {baseUrl: http://x}\none: *b\ntwo: {<<: *b, route: /two}\n"
    assert parse_yaml(text) == {
        "base": {"baseUrl": "http://x"},
        "one": {"baseUrl": "http://x"},
        "two": {"baseUrl": "http://x", "route": "/two"},
    }


def test_too_many_nodes_and_too_much_time_are_refused() -> None:
    small = type("Small", (_UniqueKeyLoader,), {"max_nodes": 100})
    assert refusal("[" + ", ".join(["1"] * 200) + "]", small) == (
        "the file has more than 100 YAML nodes"
    )
    hasty = type("Hasty", (_UniqueKeyLoader,), {"max_seconds": 0.0})
    assert refusal("[" + ", ".join(["1"] * 600) + "]", hasty) == (
        "reading the file took more than 0 s"
    )


def test_too_many_bytes_are_refused_unread() -> None:
    text = "# " + "x" * bounds.MAX_FILE_BYTES + "\n"
    assert refusal(text) == "the file is larger than 8 MiB; refused"


def test_check_refuses_the_bomb_with_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(alias_bomb())
    result = cli("check", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("YAML nodes (aliases); refused"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_run_refuses_the_bomb_at_start(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(alias_bomb())
    proxy = ProxyProcess(path)
    proxy.spawn()
    try:
        assert await proxy.await_exit(TIMEOUT) == 2
    finally:
        proxy.kill()
    assert b"YAML nodes (aliases); refused" in proxy.stderr


async def test_a_bomb_reload_is_refused_and_a_later_good_one_applies(
    upstream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "proxy.yaml"
    write(path, config(upstream, {"github": "gh-one"}))
    async with running(path) as proxy:
        path.write_text(alias_bomb())
        proxy.hangup()
        await until_logged(proxy, "(aliases); refused")
        assert await proxy.get("/github/x") == (200, "Bearer gh-one")
        # Neither a later reload nor the shutdown (SIGTERM, exit 0, when the block ends) waits
        # on the refused file.
        write(path, config(upstream, {"github": "gh-two"}))
        proxy.hangup()
        await proxy.until("/github/x", (200, "Bearer gh-two"))
