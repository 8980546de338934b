# What `vulture` (.ci/run, 60% confidence) cannot see used: each name below is used by name from
# outside the proxy's own calls. Anything else it reports is dead code and goes.
# ruff: noqa
_ = object

# asyncio calls a Protocol's callbacks (http1/connection.py, http1/server.py).
_.connection_made, _.data_received, _.eof_received, _.connection_lost
_.pause_writing, _.resume_writing
# The TLS stand-in for an asyncio transport (http1/tls.py) answers what asyncio's streams ask.
_.can_write_eof
# httptools' parser calls its callbacks by name (the same two modules).
_.on_message_begin, _.on_url, _.on_status, _.on_header, _.on_headers_complete
_.on_chunk_header, _.on_chunk_complete, _.on_body, _.on_message_complete
# pydantic reads a model's `model_config`, and every field of the seed shapes (config/models.py)
# is validated and written back by name, whether or not the proxy itself reads it.
_.model_config, _.severity, _.validation_messages, _.none, _.bearer, _.modifiable
_.client_credentials
# aiohttp calls `handle_error` on the admin listener's request handler (admin/listener.py); the
# server's class is swapped by assignment, which vulture reads as an unused attribute.
_.handle_error, _.__class__
# The pool tests watch idle connections come and go (tests/http1/).
_.idle_count
# The CA tests count the leaves an issuer minted (tests/intercept/test_ca.py).
_.minted
