"""The data plane's access log on a real file for in-process tests (`access_log` fixture): the
writer `signing-proxy run` puts on stderr (`proxy/dataplane/access_log.py`), read back once every
line queued so far is written, and parsed with the text format's regular expression."""

from __future__ import annotations

import os
import re
from pathlib import Path

from proxy.dataplane.access_line import TextLine
from proxy.dataplane.access_log import AccessLog

# The whole text line: `logging`'s asctime, level and logger, then the request's message.
TEXT_LINE = re.compile(
    r"^(?P<date>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(?P<millis>\d{3}) INFO signing_proxy\.access"
    r"(?: pid=(?P<pid>\d+))? (?P<message>.*)$"
)
MESSAGE = re.compile(
    r"^(?P<method>[A-Z-]+) (?P<path>\S+) connection=(?P<connection>\S+) status=(?P<status>\S+) "
    r"bytes=(?P<bytes>\d+) duration_ms=(?P<duration>[\d.]+)(?P<flags>.*)$"
)


class AccessLogFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.writer = AccessLog(self._fd, TextLine())

    def lines(self) -> list[str]:
        """Every line written so far (after the writer has written what was queued)."""
        assert self.writer.wait_written(), "the access log was not written in time"
        return self.path.read_text().splitlines()

    def messages(self) -> list[str]:
        """The message part of each line (what `logging` called the message), each line
        checked against the whole format first."""
        found = [TEXT_LINE.match(line) for line in self.lines()]
        assert all(found), self.lines()
        return [m["message"] for m in found if m is not None]

    def parsed(self) -> list[re.Match[str]]:
        """Each message matched field by field."""
        found = [MESSAGE.match(message) for message in self.messages()]
        assert all(found), self.messages()
        return [m for m in found if m is not None]

    def close(self) -> None:
        self.writer.close()
        os.close(self._fd)
