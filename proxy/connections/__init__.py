"""Connections: what a configured connection is compiled into, once, before any request.

Owns the compiled connection (`compiled.py`: parsed `baseUrl`, built schemes, header ownership,
the lean plan), connection templates, clients and policy (`access.py`, `policy.py`), the URL
and header rules a connection carries (`urls.py`, `headers.py`), and what makes a credential id
one credential (`identity.py`), and where a `secret` placeholder may go (`placeholders.py`).

Also the runtime (`runtime.py`): a checked `proxy.yaml` compiled for serving.

May import: `config/`, `schemes/`, `store/`, `http1/`, `intercept/` (the runtime loads the
forward proxy's CA) and the shared vocabulary (`errors`, `messages`, `logs`). Never `metrics`,
tokens, the data plane, admin or the process.
"""
