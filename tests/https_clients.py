"""Real HTTPS clients as a wrapped command runs them, and the TLS upstream they reach (and the
TLS server side every TLS upstream of the tests uses: its context, the client certificate seen).

Each client is a command line that GETs one URL with nothing but the environment to tell it the
proxy and the CAs to trust, and prints `<status> <body>`: curl, git (`ls-remote` against a
smart-HTTP ref advertisement: a TLS request git makes, verified through `GIT_SSL_CAINFO`),
Python's requests and httpx, and Node (`https.get` over a `CONNECT` it opens itself, since Node
reads no proxy variable)."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
import yaml
from aiohttp import web

from tests.upstreams import catch_all

# A ref the git advertisement names (any 40 hex digits: ls-remote reads no object).
GIT_REF = "5d1f0c2bd3e4a5b6c7d8e9f0a1b2c3d4e5f6a7b8"

PYTHON_REQUESTS = """
import sys, requests
r = requests.get(sys.argv[1], timeout=20)
print(r.status_code, r.text)
"""
PYTHON_HTTPX = """
import sys, httpx2
r = httpx2.get(sys.argv[1], timeout=20)
print(r.status_code, r.text)
"""
# Node reads no proxy variable: CONNECT by hand to $HTTPS_PROXY (its userinfo as Basic), then
# https.get over that socket, trusting Node's own CAs plus NODE_EXTRA_CA_CERTS.
NODE_CONNECT = r"""
const http = require('http'), https = require('https'), tls = require('tls');
const target = new URL(process.argv[1]);
const headers = {};
if (process.env.NO_PROXY.split(',').includes(target.hostname)) {
  get(undefined);
} else {
  const proxy = new URL(process.env.HTTPS_PROXY);
  if (proxy.username) {
    const user = decodeURIComponent(proxy.username) + ':' + decodeURIComponent(proxy.password);
    headers['Proxy-Authorization'] = 'Basic ' + Buffer.from(user).toString('base64');
  }
  const port = target.port || 443;
  http.request({host: proxy.hostname, port: proxy.port, method: 'CONNECT',
                path: `${target.hostname}:${port}`, headers})
    .on('connect', (res, socket) => {
      if (res.statusCode !== 200) { console.error('CONNECT', res.statusCode); process.exit(2); }
      get(socket);
    })
    .on('error', (e) => { console.error(e.message); process.exit(2); })
    .end();
}
function get(socket) {
  const options = {hostname: target.hostname, port: target.port || 443, path: target.pathname};
  if (socket) {
    options.agent = new https.Agent({maxSockets: 1});
    options.agent.createConnection = (opts, done) =>
      tls.connect({...opts, socket, servername: target.hostname}, done);
  }
  https.get(options, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => { console.log(res.statusCode, body); });
  }).on('error', (e) => { console.error(e.message); process.exit(3); });
}
"""


# Java reads no proxy variable and no CA file: the docs/https-proxy.md recipe, as a user runs it
# inside the wrapped command (a copy of the JVM's CAs plus $NODE_EXTRA_CA_CERTS, the proxy
# from $HTTPS_PROXY into JAVA_TOOL_OPTIONS), then a single-file program with HttpClient. The
# hosts the tests bind are loopback names, which Java reaches directly whenever
# `http.nonProxyHosts` is not empty: it is empty here.
JAVA_GET = """
import java.net.Authenticator;
import java.net.PasswordAuthentication;
import java.net.ProxySelector;
import java.net.URI;
import java.net.URLDecoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;

public class Get {
    public static void main(String[] args) throws Exception {
        HttpClient.Builder builder = HttpClient.newBuilder().proxy(ProxySelector.getDefault());
        String userInfo = URI.create(System.getenv("HTTPS_PROXY")).getRawUserInfo();
        if (userInfo != null) {  // the client key, for the proxy's 407
            String key = URLDecoder.decode(userInfo.split(":", 2)[0], StandardCharsets.UTF_8);
            builder.authenticator(new Authenticator() {
                @Override
                protected PasswordAuthentication getPasswordAuthentication() {
                    return getRequestorType() == RequestorType.PROXY
                        ? new PasswordAuthentication(key, new char[0]) : null;
                }
            });
        }
        HttpResponse<String> response = builder.build().send(
            HttpRequest.newBuilder(URI.create(args[0])).build(),
            HttpResponse.BodyHandlers.ofString());
        System.out.println(response.statusCode() + " " + response.body());
    }
}
"""
JAVA_RECIPE = r"""
set -e
java_home=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
cp "$java_home/lib/security/cacerts" trust.p12
keytool -importcert -noprompt -alias signing-proxy -file "$NODE_EXTRA_CA_CERTS" \
    -keystore trust.p12 -storepass changeit >/dev/null 2>&1
proxy=${HTTPS_PROXY#http://}; proxy=${proxy##*@}
export JAVA_TOOL_OPTIONS="-Dhttps.proxyHost=${proxy%:*} -Dhttps.proxyPort=${proxy##*:} \
  -Dhttp.nonProxyHosts= -Djdk.http.auth.tunneling.disabledSchemes= \
  -Djavax.net.ssl.trustStore=$PWD/trust.p12 -Djavax.net.ssl.trustStorePassword=changeit"
status=0; java "$@" 2>java.err || status=$?
grep -v '^Picked up JAVA_TOOL_OPTIONS' java.err >&2 || true
exit $status
"""


def java_command(url: str, folder: str) -> list[str]:
    """The docs' Java recipe GETting `url`, its files in `folder` (Get.java is written there)."""
    with open(f"{folder}/Get.java", "w") as source:
        source.write(JAVA_GET)
    return ["sh", "-c", f"cd {folder} && {JAVA_RECIPE}", "java", f"{folder}/Get.java", url]


def client_commands(url: str) -> dict[str, list[str]]:
    """Each client's command line GETting `url` (an `https://` URL)."""
    return {
        "curl": ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} (body not shown)", url],
        "requests": [sys.executable, "-c", PYTHON_REQUESTS, url],
        "httpx": [sys.executable, "-c", PYTHON_HTTPX, url],
        "node": ["node", "-e", NODE_CONNECT, url],
    }


def git_ls_remote(url: str) -> list[str]:
    """`git ls-remote` of the repository at `url` (ending in `.git`), no config of the user's."""
    return ["git", "-c", "protocol.version=0", "ls-remote", url]


@dataclass
class TlsUpstream:
    """A TLS upstream recording each request's method, path and headers."""

    port: int
    seen: list[dict[str, object]] = field(default_factory=list)


def tls_server_context(
    ca: trustme.CA, *names: str, client_certificates: ssl.VerifyMode | None = None
) -> ssl.SSLContext:
    """A server context with a certificate for `names` from `ca`; with `client_certificates`
    (`ssl.CERT_REQUIRED`, `ssl.CERT_OPTIONAL`), it asks for client certificates `ca` issued."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    if client_certificates is not None:
        ca.configure_trust(context)
        context.verify_mode = client_certificates
    return context


def peer_common_name(transport: asyncio.BaseTransport | None) -> str | None:
    """The common name of the client certificate presented on `transport` (None: none)."""
    peer = transport.get_extra_info("peercert") if transport else None
    subject = dict(pair[0] for pair in peer["subject"]) if peer else {}
    common_name: str | None = subject.get("commonName")
    return common_name


@asynccontextmanager
async def tls_upstream(ca: trustme.CA | ssl.SSLContext, *names: str) -> AsyncIterator[TlsUpstream]:
    """On 127.0.0.1 (a port from 0) with a certificate for `names` from `ca` (or the server
    context given): every path answers JSON of the request;
    `/<repo>.git/info/refs?service=git-upload-pack` answers git's smart-HTTP ref advertisement
    (version 0) naming `GIT_REF` as `refs/heads/main`."""
    upstream = TlsUpstream(0)
    context = ca if isinstance(ca, ssl.SSLContext) else tls_server_context(ca, *names)

    async def handle(request: web.Request) -> web.StreamResponse:
        seen: dict[str, object] = {
            "method": request.method,
            "path": request.path_qs,
            "headers": dict(request.headers),
        }
        upstream.seen.append(seen)
        if request.path.endswith(".git/info/refs"):
            return web.Response(
                body=ref_advertisement(),
                content_type="application/x-git-upload-pack-advertisement",
            )
        return web.Response(text=json.dumps(seen), content_type="application/json")

    app = catch_all(handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    upstream.port = runner.addresses[-1][1]
    try:
        yield upstream
    finally:
        await runner.cleanup()


def pkt_line(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


def ref_advertisement() -> bytes:
    """git's smart-HTTP answer to `info/refs?service=git-upload-pack`, protocol version 0."""
    return b"".join(
        [
            pkt_line("# service=git-upload-pack\n"),
            b"0000",
            pkt_line(f"{GIT_REF} HEAD\0multi_ack symref=HEAD:refs/heads/main agent=test\n"),
            pkt_line(f"{GIT_REF} refs/heads/main\n"),
            b"0000",
        ]
    )


def forward_proxy_config(folder: Path, base_url: str, **top: Any) -> Path:
    """`folder/proxy.yaml`: forward-proxy mode on, listening on a port from 0, its store in
    `folder`, one connection `api` to `base_url` (its host bound) adding `Bearer
    ${UPSTREAM_TOKEN}`; `top` adds or replaces top-level keys."""
    credential = {
        "authSchemeConfig": {"type": "bearer"},
        "credential": {"type": "string", "data": {"string": {"value": "${UPSTREAM_TOKEN}"}}},
    }
    tree: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "store": {"path": str(folder / "state" / "state.db")},
        "forwardProxy": {"enabled": True},
        "connections": [{"name": "api", "baseUrl": base_url, "credentials": [credential]}],
        **top,
    }
    path = folder / "proxy.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path
