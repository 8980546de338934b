"""Tokens: OAuth credentials obtained, refreshed, exchanged and stored.

Owns the token manager of OAuth 2.0 (`manager.py`) and the OAuth 1.0a exchange of the file's
credentials (`oauth1.py`) with its endpoint client (`oauth1_client.py`, shared with the admin
connect flow).

May import: `metrics`, `connections/`, `config/`, `schemes/`, `store/`, `http1/` and the shared
vocabulary. Never the data plane, admin or the process.
"""
