"""The proxy with the previous upstream hop (`AiohttpUpstream`, aiohttp's ClientSession), for
comparison in `bench/run.py --aiohttp-hop`. Run: `python bench/aiohttp_hop.py CONFIG`."""

from __future__ import annotations

import asyncio
import sys

from proxy.cli.command import load_or_report, setup_logging
from proxy.cli.server import serve
from proxy.dataplane.plane import create_app
from proxy.dataplane.upstream import AiohttpUpstream


def main(path: str) -> int:
    runtime = load_or_report(path)
    if runtime is None:
        return 2
    config = runtime.config
    setup_logging(config.log.level, config.log.format)
    upstream = AiohttpUpstream(
        connect_timeout=config.timeouts.connect, read_timeout=config.timeouts.read
    )
    app = create_app(runtime, upstream=upstream)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve([(app, config.listen)], shutdown_grace=1))
    else:
        uvloop.run(serve([(app, config.listen)], shutdown_grace=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
