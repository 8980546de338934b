# signing-proxy container image.
#   docker build -t signing-proxy .
#   docker run --rm -p 127.0.0.1:8080:8080 \
#     -v "$PWD/examples/github.yaml:/etc/signing-proxy/proxy.yaml:ro" \
#     -e GITHUB_TOKEN signing-proxy
# The config lives at /etc/signing-proxy/proxy.yaml ($SIGNING_PROXY_CONFIG); the data plane
# listens on 0.0.0.0:8080 inside the container whatever the file's `listen` says.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIGNING_PROXY_CONFIG=/etc/signing-proxy/proxy.yaml

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip install . && rm -rf /src

# An unprivileged user; its home is the working directory, where the store (.signing-proxy/)
# is created unless `store.path` says otherwise.
RUN useradd --system --create-home --home-dir /var/lib/signing-proxy --uid 10001 proxy \
    && mkdir -p /etc/signing-proxy
# The shipped demo config as a default; mount your own over it.
COPY proxy.yaml /etc/signing-proxy/proxy.yaml
USER proxy
WORKDIR /var/lib/signing-proxy

EXPOSE 8080
# python:slim has no curl: probe /healthz with the standard library.
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

# exec form: the proxy is PID 1 and gets SIGTERM directly, so `docker stop` drains in-flight
# requests (timeouts.shutdownGrace, default 30 s; keep docker's --stop-timeout above it).
ENTRYPOINT ["signing-proxy"]
CMD ["run", "--listen", "0.0.0.0:8080"]
