"""A Kafka client library's repeated log line is written once per change of state."""

from __future__ import annotations

import logging

from ketenmonitor.logs import RepeatFilter, TextFormatter


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_of_a_library_line_are_held_back_until_it_was_quiet(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("ketenmonitor.logs.time.monotonic", lambda: clock[0])
    keep = RepeatFilter(quiet_seconds=60)
    template = "Unable connect to node with id %s: %s"
    passed = []
    for n in range(500):  # one retry every 0.1 s for 50 s
        clock[0] += 0.1
        passed.append(keep.filter(_record("aiokafka", template, 1, f"attempt {n}")))
    assert passed.count(True) == 1 and passed[0]
    # Another template and another logger are their own keys.
    assert keep.filter(_record("aiokafka", "Unable to update metadata from %s", [1]))
    assert keep.filter(_record("aiokafka.consumer.fetcher", template, 1, "x"))
    clock[0] += 61  # quiet for a minute: the next one passes, saying what was held back
    record = _record("aiokafka", template, 1, "again")
    assert keep.filter(record)
    assert "499 similar lines held back" in record.getMessage()


def test_the_workers_own_lines_and_library_info_lines_always_pass() -> None:
    keep = RepeatFilter(quiet_seconds=60)
    for _ in range(3):
        assert keep.filter(_record("ketenmonitor.streams.worker", "rejected event %s", 1))
        assert keep.filter(_record("aiokafka", "joined group", level=logging.INFO))


def _failed(name: str) -> logging.LogRecord:
    try:
        None.recv(4096)  # type: ignore[attr-defined]  # what kafka-python hit on a closed socket
    except AttributeError:
        import sys

        return logging.LogRecord(
            name, logging.ERROR, __file__, 1, "Error receiving network data closing socket", (),
            sys.exc_info(),
        )
    raise AssertionError("unreachable")


def test_a_library_error_with_an_exception_is_one_line_and_ours_keep_the_traceback() -> None:
    text = TextFormatter().format(_failed("kafka.net.transport"))
    assert "\n" not in text and "Traceback" not in text
    assert text.endswith(
        "kafka.net.transport Error receiving network data closing socket "
        "(AttributeError: 'NoneType' object has no attribute 'recv')"
    )
    assert "Traceback" in TextFormatter().format(_failed("ketenmonitor.store"))
    assert "Traceback" in TextFormatter(library_tracebacks=True).format(_failed("kafka"))
