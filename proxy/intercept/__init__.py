"""Forward-proxy interception (docs/forward-proxy.md): the CA, its name-constrained
intermediate, the per-host leaf certificates and the TLS contexts that present them.

May import `proxy.config`, `proxy.store`, the shared vocabulary and `cryptography`; knows
nothing of connections or the request path (the data plane hands it the bound hosts).
"""
