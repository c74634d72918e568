"""Log output of every command: plain lines, or one JSON object a line for a log collector.

    configure_logging("info", "json")   # ketenmonitor --loglevel info --log-format json worker

JSON records carry time (ISO 8601, UTC), level, logger and message, plus the exception's type and
text when there is one. Kafka client libraries log at WARNING and above unless --loglevel debug,
and a line of theirs that repeats (same logger, same message template: "Unable connect to node",
thousands of times in a broker outage) is written once, then again only after it was quiet for
`RepeatFilter.quiet_seconds`, with the number of lines held back meanwhile. In plain lines, an
error such a library logs with an exception is one line (its type and text), except at debug.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LIBRARIES = ("aiokafka", "kafka", "asyncio")  # loggers of the libraries whose lines we shape


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


class TextFormatter(logging.Formatter):
    """Plain lines. A Kafka client library's error is one line with its exception's type and
    text, not a traceback of the library's internals (kafka-python logs one when a socket closes
    under it while a command shuts down); our own errors keep their traceback."""

    def __init__(self, library_tracebacks: bool = False) -> None:
        super().__init__(TEXT_FORMAT)
        self.library_tracebacks = library_tracebacks

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or self.library_tracebacks or not record.name.startswith(LIBRARIES):
            return super().format(record)
        line = logging.LogRecord(
            record.name, record.levelno, record.pathname, record.lineno,
            f"{record.getMessage()} ({type(exc).__name__}: {exc})", None, None, record.funcName,
        )
        line.created, line.msecs = record.created, record.msecs
        return super().format(line)


class RepeatFilter(logging.Filter):
    """Holds back repeats of a library's log line while they keep coming (one line per change of
    state, not per retry). A line is keyed by logger and message template (its first line for
    asyncio's multi-line reports); it passes when that key was quiet for `quiet_seconds`."""

    def __init__(self, quiet_seconds: float = 60.0) -> None:
        super().__init__()
        self.quiet_seconds = quiet_seconds
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(LIBRARIES) or record.levelno < logging.WARNING:
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
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter(library_tracebacks=level == "debug")
    )
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
