"""The data plane: an inbound request routed, signed, sent upstream and answered.

Owns the request path (`forward.py`, `lean_exchange.py`, `relay.py`, `body.py`, `upstream.py`),
route lookup, the `Host` a listener answers (`hosts.py`), error answers (`middleware.py`), the
access log (`access_line.py`, `access_log.py`), the live routes kept in step with the store
(`sync.py`), and the wiring of it all from a checked runtime (`plane.py`).

May import: `tokens/`, `metrics`, `connections/`, `config/`, `schemes/`, `store/`, `http1/` and
the shared vocabulary. Never admin or the process.
"""
