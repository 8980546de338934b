"""The environment a command gets to use the proxy as its HTTPS proxy (docs/https-proxy.md).

Pure: from the inherited environment, the proxy's address, the client key and the trust files,
what `run -- CMD` hands the command and what `signing-proxy env` prints as shell exports.

Each setting is made under every name tools read it by, and any other value under another
spelling of that name is dropped: curl reads only `http_proxy` in lower case while Go reads
`HTTP_PROXY` first, and requests prefers the lower-case one, so an inherited `https_proxy` left
beside our `HTTPS_PROXY` would send some tools elsewhere. `ALL_PROXY` is dropped for the same
reason (curl falls back to it).
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

# Read by each tool in one of these cases (both are set).
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")
# Would route around the settings above: removed in any case.
REMOVED_VARIABLES = ("ALL_PROXY",)
# Name a CA file that *replaces* the tool's default trust: they get the combined bundle.
BUNDLE_VARIABLES = (
    "SSL_CERT_FILE",  # OpenSSL (so Python's ssl, httpx), Go, Ruby, curl built on OpenSSL
    "REQUESTS_CA_BUNDLE",  # requests
    "CURL_CA_BUNDLE",  # curl, requests
    "GIT_SSL_CAINFO",  # git over HTTPS
    "AWS_CA_BUNDLE",  # the AWS CLI and SDKs
)
# Other tools' names for a CA bundle. Set only when inherited (the parent uses that tool and named
# a bundle for it): they then name the combined bundle, so that tool trusts the proxy too.
INHERITED_BUNDLE_VARIABLES = (
    "PIP_CERT",
    "NIX_SSL_CERT_FILE",
    "HTTPLIB2_CA_CERTS",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
)
# Adds to Node's built-in CAs (it replaces nothing): the proxy CA alone.
NODE_VARIABLE = "NODE_EXTRA_CA_CERTS"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ProxySettings:
    """What the command is told: the proxy URL (the client key as userinfo when there is one),
    the hosts reached directly, and the trust files."""

    proxy_url: str
    no_proxy: str
    bundle: str
    proxy_ca: str


def proxy_url(host: str, port: int, client_key: str | None) -> str:
    """`http://[KEY:@]HOST:PORT` for the listener bound at `host`: a wildcard address is reached
    on loopback. The key is percent-encoded (curl, requests, httpx and Go decode it), so any
    character may be in it. The empty password is written out: git asks for a proxy password
    (and fails without a terminal) when the URL names a user and no password."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    userinfo = f"{quote(client_key, safe='')}:@" if client_key else ""
    return f"http://{userinfo}{host}:{port}"


def no_proxy(listen_host: str, bound_hosts: Iterable[str]) -> str:
    """Loopback and the proxy's own address are reached directly (a local dev server, the
    proxy's own routes), except a name a connection binds: that one must go through the proxy."""
    bound = {host.lower() for host in bound_hosts}
    names = list(LOOPBACK_NAMES)
    if listen_host and not _is_wildcard(listen_host) and listen_host.lower() not in names:
        names.append(listen_host.lower())
    return ",".join(name for name in names if name not in bound)


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def exported(settings: ProxySettings, inherited: Mapping[str, str]) -> dict[str, str]:
    """Every variable set, with its value (the order `env` prints them in)."""
    values = {
        "HTTPS_PROXY": settings.proxy_url,
        "HTTP_PROXY": settings.proxy_url,
        "NO_PROXY": settings.no_proxy,
    }
    out: dict[str, str] = {}
    for name in PROXY_VARIABLES:
        out[name] = out[name.lower()] = values[name]
    for name in BUNDLE_VARIABLES:
        out[name] = settings.bundle
    for name in INHERITED_BUNDLE_VARIABLES:
        if name in inherited:
            out[name] = settings.bundle
    out[NODE_VARIABLE] = settings.proxy_ca
    return out


def removed(inherited: Mapping[str, str], settings: Mapping[str, str]) -> list[str]:
    """Inherited names to drop: another spelling of a set name, or a removed variable."""
    folded = {name.upper() for name in settings} | set(REMOVED_VARIABLES)
    return [name for name in inherited if name.upper() in folded and name not in settings]


def child_environment(
    inherited: Mapping[str, str], settings: ProxySettings, withheld: Collection[str] = ()
) -> dict[str, str]:
    """The command's environment: the inherited one without `withheld` names (the proxy's own
    secrets) and the duplicates of what is set, plus the settings."""
    setting = exported(settings, inherited)
    dropped = set(removed(inherited, setting)) | set(withheld)
    env = {name: value for name, value in inherited.items() if name not in dropped}
    env.update(setting)
    return env


def withheld_names(inherited: Mapping[str, str], secrets: Collection[str]) -> list[str]:
    """Inherited variables holding one of the proxy's secrets (`${GITHUB_TOKEN}` in the file),
    a part of one of 8 characters or more, or a value with such a secret inside
    (`AUTH_HEADER="token ${TOKEN}"`, a `DATABASE_URL` with the password in it): the command must
    not get what the proxy exists to keep from it."""
    return [
        name
        for name, value in inherited.items()
        if value
        and any(
            value == s or (len(value) >= 8 and value in s) or (len(s) >= 8 and s in value)
            for s in secrets
        )
    ]


def shell_exports(settings: ProxySettings, inherited: Mapping[str, str]) -> str:
    """`export NAME=value` lines (POSIX sh quoting), then one `unset` of the duplicates."""
    setting = exported(settings, inherited)
    lines = [f"export {name}={shlex.quote(value)}" for name, value in setting.items()]
    drop = removed(inherited, setting)
    for name in REMOVED_VARIABLES:
        for spelling in (name, name.lower()):
            if spelling not in drop:
                drop.append(spelling)  # the shell `eval` runs in may have it even if we don't
    lines.append("unset " + " ".join(drop))
    return "\n".join(lines) + "\n"
