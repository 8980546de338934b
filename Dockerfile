# signing-proxy container image.
#   docker build -t signing-proxy .
#   docker run --rm -p 127.0.0.1:8080:8080 \
#     -v "$PWD/examples/github.yaml:/etc/signing-proxy/proxy.yaml:ro" \
#     -v signing-proxy-store:/var/lib/signing-proxy -e GITHUB_TOKEN signing-proxy
# The config lives at /etc/signing-proxy/proxy.yaml ($SIGNING_PROXY_CONFIG); the data plane
# listens on 0.0.0.0:8080 inside the container whatever the file or the command line says
# ($SIGNING_PROXY_LISTEN; `--listen` still wins when given explicitly).
#
# Base: the official image's documented tag for Python 3.12 on Debian 12 (bookworm). Pin it by
# digest for reproducible builds: docker build --build-arg PYTHON_IMAGE=python:3.12-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build stage: wheels for the proxy and every dependency, uvloop included ----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip wheel --wheel-dir /wheels '.[speed,postgres]'

# --- runtime stage: no compiler, no source tree, an unprivileged user --------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="signing-proxy" \
      org.opencontainers.image.description="Outbound request-signing HTTP proxy: apps send plain requests, the proxy adds the credentials." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/operations.md" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIGNING_PROXY_CONFIG=/etc/signing-proxy/proxy.yaml \
    SIGNING_PROXY_LISTEN=0.0.0.0:8080

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels 'signing-proxy[speed,postgres]'

# Debian's base already has a user `proxy` (uid 13, for squid and friends): ours is named
# `signing-proxy`, with a fixed uid/gid so volume ownership is predictable across rebuilds.
RUN groupadd --system --gid 10001 signing-proxy \
    && useradd --system --uid 10001 --gid signing-proxy --home-dir /var/lib/signing-proxy --no-create-home --shell /usr/sbin/nologin signing-proxy
RUN mkdir -p /etc/signing-proxy /var/lib/signing-proxy \
    && chown signing-proxy:signing-proxy /var/lib/signing-proxy \
    && chmod 0700 /var/lib/signing-proxy
# The shipped demo config as a default; mount your own over it.
COPY proxy.yaml /etc/signing-proxy/proxy.yaml

USER signing-proxy
# The store (`store.path` defaults to .signing-proxy/state.db, relative to here) holds rotated
# refresh tokens that exist nowhere else: keep it on a volume.
WORKDIR /var/lib/signing-proxy
VOLUME ["/var/lib/signing-proxy"]

EXPOSE 8080
# python:slim has no curl: probe the data plane's /healthz with the standard library, on the
# port the proxy listens on ($SIGNING_PROXY_LISTEN).
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('SIGNING_PROXY_LISTEN', ':8080').rsplit(':', 1)[1]; u.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]

# exec form: the proxy is PID 1 and gets SIGTERM directly, so `docker stop` drains in-flight
# requests (timeouts.shutdownGrace, default 30 s: give docker a longer --stop-timeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["signing-proxy"]
CMD ["run"]
