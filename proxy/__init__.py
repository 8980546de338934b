"""signing-proxy: an outbound HTTP proxy that signs requests with a connection's credentials.

The packages stand in layers; each imports only from the ones below it (its docstring says
which; tests/test_layers.py holds the code to it), lowest first:

- `errors.py`, `messages.py`, `logs.py`: the shared vocabulary (the error family, the values
  the schemes and the request path share, log output);
- `config/`: proxy.yaml read and validated;
- `http1/` (the HTTP/1.1 wire, server and upstream client), `schemes/` (pure signing, one module
  per auth scheme), `store/` (durable state), side by side;
- `intercept/`: forward-proxy mode's CA, its leaf certificates and their TLS contexts;
- `connections/`: what a connection is compiled into, and the runtime of a checked file;
- `metrics.py`: what is counted of requests and connections;
- `tokens/`: OAuth tokens obtained, refreshed and stored;
- `dataplane/`: the request path, from an inbound request to the upstream's answer;
- `admin/`: the management API on its own listener;
- `cli/`: the process: the command line, workers, serving, reloading.
"""

__version__ = "0.1.0"
