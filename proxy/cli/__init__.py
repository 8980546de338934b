"""The process: the `signing-proxy` command line and everything that runs it.

Owns the commands (`command.py`), worker processes, listeners and draining (`server.py`),
reloading `proxy.yaml` and following the file (`filewatch.py`), `explain`, the demo echo
upstream and process tuning.

May import everything below it: `admin/`, the data plane, tokens, connections and the rest.
Nothing imports it but `proxy/__main__.py` and the console script.
"""

from .command import main

__all__ = ["main"]
