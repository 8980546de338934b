"""The container image without a container engine: the Dockerfile's contract, its filesystem
steps replayed the way the build runs them, and the proxy run as the image's user.

No Docker engine is available where the tests run, so this reproduces what matters:
- the user creation runs against a Debian bookworm user database (the `python:3.12-slim` base's),
  which already has `proxy` (uid 13) — the case the first Dockerfile's `useradd proxy` failed on;
- the proxy then runs with the image's uid/gid, environment, working directory (the store
  volume), command and health check, and is stopped the way `docker stop` stops it.
docs/deployment.md says how to build and smoke-test the real image with Docker.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from proxy import __version__
from tests.cli.procs import wait_answering
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
TIMEOUT = 30.0


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the image is made of."""
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), "exec form, so the proxy is PID 1 and gets SIGTERM"
    return [str(part) for part in value]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in runtime_stage():
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


# --- the Dockerfile's contract --------------------------------------------------------------------


def test_two_stages_on_the_official_python_3_12_slim_base() -> None:
    steps = instructions()
    [base] = [rest for word, rest in steps if word == "ARG" and rest.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.12-slim(-bookworm)?(@sha256:[0-9a-f]{64})?", base)
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    # uvloop and PostgreSQL's driver go into the image: the wheels are built and installed with
    # the `speed` and `postgres` extras (the replicas of docs/deployment.md run this image).
    installs = [rest for word, rest in steps if word == "RUN" and "pip " in rest]
    assert all("[speed,postgres]" in command for command in installs) and len(installs) == 2


def test_the_image_label_carries_the_package_version() -> None:
    """One version source (`proxy.__version__`): the image's default VERSION label repeats it,
    and this keeps the two equal."""
    [version] = [rest for word, rest in instructions() if word == "ARG" and "VERSION=" in rest]
    assert version == f"VERSION={__version__}"


def test_runtime_stage_runs_unprivileged_listens_everywhere_and_keeps_the_store() -> None:
    stage = runtime_stage()
    users = [rest for word, rest in stage if word == "USER"]
    assert users == ["signing-proxy"]
    env = image_env()
    assert env["SIGNING_PROXY_LISTEN"] == "0.0.0.0:8080"
    assert env["SIGNING_PROXY_CONFIG"] == "/etc/signing-proxy/proxy.yaml"
    # Whatever the command: the listen address comes from the environment, not from CMD.
    cmd = exec_form(next(rest for word, rest in stage if word == "CMD"))
    assert "--listen" not in cmd
    [workdir] = [rest for word, rest in stage if word == "WORKDIR"]
    [volume] = [rest for word, rest in stage if word == "VOLUME"]
    assert exec_form(volume) == [workdir] == ["/var/lib/signing-proxy"]
    healthcheck = next(rest for word, rest in stage if word == "HEALTHCHECK")
    assert "/healthz" in healthcheck and "SIGNING_PROXY_LISTEN" in healthcheck
    labels = " ".join(rest for word, rest in stage if word == "LABEL")
    for label in ("title", "description", "version", "licenses", "base.name"):
        assert f"org.opencontainers.image.{label}=" in labels


def test_compose_example_keeps_secrets_out_of_the_tree_and_the_store_on_a_volume() -> None:
    compose = yaml.safe_load((ROOT / "examples" / "docker-compose.yml").read_text())
    proxy = compose["services"]["signing-proxy"]
    assert "signing-proxy-store:/var/lib/signing-proxy" in proxy["volumes"]
    assert "signing-proxy-store" in compose["volumes"]
    for secret in compose["secrets"].values():
        # Outside the repository: a directory the operator names, never a path under examples/.
        assert secret["file"].startswith("${SIGNING_PROXY_SECRETS:?")
    sidecar = yaml.safe_load((ROOT / "examples" / "sidecar.yaml").read_text())
    grace = sidecar["timeouts"]["shutdownGrace"]
    assert proxy["stop_grace_period"].endswith("s")
    assert int(proxy["stop_grace_period"][:-1]) > grace
    ignored = subprocess.run(
        ["git", "check-ignore", "examples/github_token", "examples/stripe_key"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.stdout.split() == ["examples/github_token", "examples/stripe_key"]


# --- the filesystem steps, replayed ------------------------------------------------------------


def user_creation() -> list[list[str]]:
    """The runtime stage's `groupadd`/`useradd` commands, as argument lists."""
    [run] = [rest for word, rest in runtime_stage() if word == "RUN" and "useradd" in rest]
    return [shlex.split(command) for command in run.split("&&")]


@pytest.fixture
def base_etc(tmp_path: Path) -> Path:
    """A copy of a Debian bookworm user database, as in `python:3.12-slim`."""
    if shutil.which("useradd") is None or not Path("/etc/debian_version").exists():
        pytest.skip("needs Debian's passwd package (useradd) to replay the image's user creation")
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        if Path("/etc", name).exists():
            shutil.copy(Path("/etc", name), etc / name)
    passwd = (etc / "passwd").read_text()
    # The base image's situation: a system user named `proxy` with uid 13 already exists.
    if not re.search(r"^proxy:x:13:13:", passwd, re.MULTILINE):
        (etc / "passwd").write_text(passwd + "proxy:x:13:13:proxy:/bin:/usr/sbin/nologin\n")
        (etc / "group").write_text((etc / "group").read_text() + "proxy:x:13:\n")
    return tmp_path


def replay(root: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    tool, *arguments = command
    assert tool in ("groupadd", "useradd")
    return subprocess.run(
        [tool, "--prefix", str(root), *arguments], capture_output=True, text=True, check=False
    )


def passwd_entry(root: Path, name: str) -> list[str]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    raise AssertionError(f"no user {name}")


def test_user_creation_succeeds_on_the_base_image_user_database(base_etc: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("useradd --prefix writes the user database as root, as the image build does")
    # The first Dockerfile's command fails here, as it failed on the real base image.
    old = replay(base_etc, ["useradd", "--system", "--uid", "10001", "proxy"])
    assert old.returncode != 0 and "already exists" in old.stderr
    for command in user_creation():
        result = replay(base_etc, command)
        assert result.returncode == 0, result.stderr
    _, _, uid, gid, _, home, shell = passwd_entry(base_etc, "signing-proxy")
    assert (uid, gid, home) == ("10001", "10001", "/var/lib/signing-proxy")
    assert shell == "/usr/sbin/nologin"
    assert passwd_entry(base_etc, "proxy")[2] == "13"  # the base's user is untouched


@pytest.fixture
def volume() -> Iterator[Path]:
    """The store volume, reachable by another uid (pytest's own tmp tree is 0700 root)."""
    top = Path(tempfile.mkdtemp(prefix="signing-proxy-image-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def interpreter_for(uid: int, gid: int) -> tuple[str, dict[str, str]]:
    """A Python the image user can execute, with this checkout and its dependencies importable.

    In the image the interpreter and the installed wheel are world-readable under /usr/local; here
    the test's own interpreter may sit under a directory the user cannot enter (/root/.pyenv),
    so the system's Python of the same version is used with the same site-packages."""
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), *site.getsitepackages()])}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/local/bin/{version}", f"/usr/bin/{version}"):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import proxy, aiohttp"], env=env, user=uid, group=gid,
                extra_groups=[], capture_output=True, timeout=TIMEOUT, check=False,
            )  # fmt: skip
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate, env
    pytest.skip(f"no {version} that uid {uid} may execute")


async def test_the_proxy_runs_as_the_image_user_with_the_image_environment(volume: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to the image's uid needs root")
    uid = gid = 10001
    python, python_env = interpreter_for(uid, gid)
    home = volume / "var-lib-signing-proxy"  # WORKDIR and VOLUME
    home.mkdir(mode=0o700)
    os.chown(home, uid, gid)
    etc = volume / "etc-signing-proxy"
    etc.mkdir()
    shutil.copy(ROOT / "proxy.yaml", etc / "proxy.yaml")  # COPY proxy.yaml /etc/signing-proxy/
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SIGNING_PROXY_")},
        **image_env(),
        "SIGNING_PROXY_CONFIG": str(etc / "proxy.yaml"),
        # Tests bind loopback only; the image's 0.0.0.0 is asserted above.
        "SIGNING_PROXY_LISTEN": f"127.0.0.1:{port}",
        "HOME": str(home),
        **python_env,
    }
    stage = runtime_stage()
    entrypoint = exec_form(next(rest for word, rest in stage if word == "ENTRYPOINT"))
    command = exec_form(next(rest for word, rest in stage if word == "CMD"))
    assert entrypoint == ["signing-proxy"]
    process = await asyncio.create_subprocess_exec(
        python, "-m", "proxy", *command,
        cwd=home, env=env, user=uid, group=gid, extra_groups=[],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert await wait_answering(f"http://127.0.0.1:{port}/healthz") == 200
        # The image's own health check, run as it is written, as the image user.
        healthcheck = next(rest for word, rest in stage if word == "HEALTHCHECK")
        probe = exec_form(healthcheck.split("CMD", 1)[1])
        assert probe[0] == "python"
        result = subprocess.run(
            [python, *probe[1:]], env=env, user=uid, group=gid, timeout=TIMEOUT,
            capture_output=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        # The store went to the volume, owned by the image user and private to it.
        database = home / ".signing-proxy" / "state.db"
        assert database.exists()
        assert (database.stat().st_uid, database.stat().st_gid) == (uid, gid)
        # `docker stop`: SIGTERM to PID 1, drain, exit 0.
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
