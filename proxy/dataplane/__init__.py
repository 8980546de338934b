"""The data plane: an inbound request routed, signed, sent upstream and answered.

Owns the request path (`forward.py`; `lean_round_trip.py`, the task-free one; `relay.py`, the
response back; `body.py`, bodies read before signing), route lookup (`routing.py`), forward-proxy
mode (`connect.py`), WebSocket tunnels (`websocket.py`), the `Host` a listener answers
(`hosts.py`), error answers (`middleware.py`), the access log (`access_line.py`,
`access_log.py`), the live routes kept in step with the store (`sync.py`), and the wiring of it
all from a checked runtime (`plane.py`). The upstream client it sends with is `http1/`.

May import: `tokens/`, `metrics`, `connections/`, `config/`, `schemes/`, `store/`, `http1/`,
`intercept/` and the shared vocabulary. Never admin or the process.
"""
