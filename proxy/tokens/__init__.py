"""Tokens: OAuth credentials obtained, refreshed, exchanged and stored.

Owns, one job a module:
- `manager.py`: `TokenManager`, the orchestrator of OAuth 2.0 tokens (the driver's
  `TokenProvider`): when to refresh, single flight, failures and backoff, seeds.
- `state.py`: what a process knows about each OAuth 2.0 credential (`CredentialState`) and the
  token writes the store refused, retried until they commit (`PendingWrites`).
- `endpoint.py`: the token-endpoint client — the one HTTP POST of a token call (no redirects, no
  environment proxies, own timeout, failures by kind), and the OAuth 2.0 token call of every
  grant with its client authentication and RFC 6749 §5.1/§5.2 answer. Shared by the manager,
  `jwt-bearer`, the admin connect flow's code exchange (through `TokenManager.exchange_code`)
  and the OAuth 1.0a endpoint requests.
- `lease.py`: `RefreshLease`, the store's refresh lease — single flight of a token call across
  the processes sharing a store, for OAuth 2.0 refreshes and OAuth 1.0a exchanges alike.
- `oauth1.py`: the OAuth 1.0a exchange of the file's `oauth1` credentials; `oauth1_client.py`:
  its signed endpoint requests (RFC 5849 §2), shared with the admin connect flow.

May import: `metrics`, `connections/`, `config/`, `schemes/`, `store/`, `http1/` and the shared
vocabulary. Never the data plane, admin or the process.
"""
