"""Log output of every command: plain lines, or one JSON object a line for a log collector.

    configure_logging("info", "json")   # ketenmonitor --loglevel info --log-format json worker

JSON records carry time (ISO 8601, UTC), level, logger and message, plus the exception's type and
text when there is one. Kafka client libraries log at WARNING and above unless --loglevel debug,
and a line of theirs that repeats (same logger, same message template: "Unable connect to node",
thousands of times in a broker outage) is written once, then again only after it was quiet for
`RepeatFilter.quiet_seconds`, with the number of lines held back meanwhile.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(entry, ensure_ascii=False)


class RepeatFilter(logging.Filter):
    """Holds back repeats of a library's log line while they keep coming (one line per change of
    state, not per retry). A line is keyed by logger and message template (its first line for
    asyncio's multi-line reports); it passes when that key was quiet for `quiet_seconds`."""

    LIBRARIES = ("aiokafka", "kafka", "asyncio")

    def __init__(self, quiet_seconds: float = 60.0) -> None:
        super().__init__()
        self.quiet_seconds = quiet_seconds
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.LIBRARIES) or record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg).split("\n", 1)[0])
        now = time.monotonic()
        last = self._last.get(key)
        self._last[key] = now
        if last is not None and now - last < self.quiet_seconds:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} similar lines held back before this one)"
        if len(self._last) > 10_000:  # keys are templates, but never grow without bound
            self._last.clear()
        return True


def configure_logging(level: str = "warning", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    if level != "debug":
        handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet = max(logging.WARNING, root.level) if level != "debug" else logging.DEBUG
    for library in ("aiokafka", "kafka"):
        logging.getLogger(library).setLevel(quiet)
