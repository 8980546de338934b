"""signing-proxy: an outbound HTTP proxy that signs requests with a connection's credentials.

Layout: `config/` (proxy.yaml models, interpolation, loading) → `connection.py` (a connection
compiled once) → `routing.py` (route lookup) → `forward.py` (the request path and the driver of
`schemes/`, one module per auth scheme) → `upstream.py` (the HTTP hop) ; `app.py` wires them,
`server.py` serves, `cli.py` is the command line.
"""

__version__ = "0.1.0"
