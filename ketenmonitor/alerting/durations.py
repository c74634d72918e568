"""Prometheus durations, and the time scale that shrinks every window for tests.

    parse_duration("1h30m")                 -> 5400.0
    format_duration(5400)                   -> "1h30m"
    scale = TimeScale(factor=5 / 86_400, minimum="2s")   # a day of the chain lasts 5 s
    scale.duration("7d")                    -> "35s"
    scale.seconds("6h")                     -> 2.0  (1.25 s, raised to the 2 s minimum)

In production the factor is 1 and the minimum never applies. Norm limits are NOT scaled: they are
lead times measured in event time, not windows of wall-clock time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"y": 365 * 86_400, "w": 7 * 86_400, "d": 86_400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")


class DurationError(ValueError):
    """Not a Prometheus duration (e.g. "90d", "1h30m", "500ms")."""


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; compound forms ("1h30m") are accepted."""
    pos, total = 0, 0.0
    text = str(text).strip()
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise DurationError(f"not a Prometheus duration: {text!r} (examples: 90d, 6h, 1h30m)")
    return total


def format_duration(seconds: float) -> str:
    """The shortest compound Prometheus duration for `seconds`, rounded to whole milliseconds."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise DurationError(f"a duration must be positive, not {seconds!r} s")
    parts = []
    for unit in ("d", "h", "m", "s"):  # days as the largest unit: "90d" reads better than "12w6d"
        size = int(_UNITS[unit] * 1000)
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)


@dataclass(frozen=True)
class TimeScale:
    """Multiplies every window and `for` duration by `factor`, never going below `minimum`."""

    factor: float = 1.0
    minimum: str = "1s"

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise DurationError(f"the time scale must be positive, not {self.factor!r}")
        parse_duration(self.minimum)

    def seconds(self, duration: str) -> float:
        return max(parse_duration(duration) * self.factor, parse_duration(self.minimum))

    def duration(self, duration: str) -> str:
        return format_duration(self.seconds(duration))
