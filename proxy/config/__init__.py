"""proxy.yaml: the seed-shaped models, `${...}` interpolation, reading and validation with
field-path errors.

Only parses and validates: what the file means at run time is compiled above it
(`connections/runtime.py`). May import `errors` and nothing else of the proxy.
"""
