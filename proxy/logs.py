"""Log output: text for people, or one JSON object per line (`log.format: json`) for machines.

In JSON every line the process writes through `logging` — ours and the libraries' — is an object
with real fields (docs/operations.md#logs): `ts` (RFC 3339, UTC, milliseconds), `level`,
`event`, `logger`, `pid`, `message`, and whatever the call site passed as `extra` (the access
log's `request_id`, `connection`, `status`, ...). A record without an `event` is a `log` event.
Messages are written by the proxy and never quote a secret; an exception is logged by type and
traceback, whose lines are source code, not values.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

# Attributes every LogRecord has: whatever else a record carries came in through `extra`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def rfc3339(created: float) -> str:
    """`2026-12-01T14:39:11.123Z`: RFC 3339 in UTC with milliseconds."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(level: str, fmt: str, *, with_pid: bool = False) -> None:
    """Route every logger (libraries' too) and Python warnings through one handler on stderr."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        # With --workers each line names its process, so one worker's lines can be told apart.
        pid = " pid=%(process)d" if with_pid else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{pid} %(message)s")
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)
