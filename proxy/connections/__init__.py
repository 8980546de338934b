"""Connections: what a configured connection is compiled into, once, before any request.

Owns the compiled connection (`compiled.py`: parsed `baseUrl`, built schemes, header ownership,
the lean plan), connection templates, clients and policy (`access.py`, `policy.py`), and the URL
and header rules a connection carries (`urls.py`, `headers.py`).

May import: `config/`, `schemes/`, `store/`, `http1/` and the shared modules at the top of
`proxy/` (`errors`, `messages`, `metrics`, `logs`). Never the data plane, tokens, admin or the
process.
"""
