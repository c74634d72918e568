"""Progress of a long partner-side run (`publish`, `import-log`) on stderr, for a person to read.

    with progress_display(path, quiet, desc="police.jsonl", total=size, unit="B") as progress:
        progress.update(bytes_read)          # as a tqdm bar: publish.check_and_send calls this
        progress.sent = events_sent          # events handed to Kafka so far (optional)

On a terminal it is a tqdm bar (files of 1 MiB or more). Anywhere else (a log file, CI, a pipe),
where a bar would be a smear of carriage returns, it is a line every PROGRESS_LINE_SECONDS, for
runs that last that long:

    ketenmonitor publish: police.jsonl: 250,000 events sent in 5 s (50,000/s), 58% done,
    about 4 s to go                                                         (on one line)

and one closing line with the totals when any line was printed. `--quiet` shows neither.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

PROGRESS_MIN_BYTES = 1 << 20  # smaller files get no bar on a terminal
PROGRESS_LINE_SECONDS = 10.0


class ProgressLines:
    """tqdm's update/reset/set_description/close, written as a plain line every `every` seconds.

    `total` (in `unit`s: bytes of the file, or events) gives the share done and the time to go;
    `sent`, when the caller sets it, is the count of events shown (else the units counted).
    """

    def __init__(
        self,
        desc: str,
        total: float | None = None,
        unit: str = "events",
        verb: str = "sent",
        every: float = PROGRESS_LINE_SECONDS,
        stream: TextIO | None = None,
        clock: Any = time.monotonic,
        prefix: str = "",
    ) -> None:
        self.desc, self.total, self.unit, self.verb = desc, total, unit, verb
        self.prefix = prefix  # kept by set_description: "ketenmonitor import-log: "
        self.every, self.stream, self.clock = every, stream, clock
        self.n = 0.0
        self.sent: int | None = None
        self.started = self.clock()
        self._next = self.started + every
        self.lines = 0

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.clock() >= self._next:
            self._print(self.line())

    def reset(self, total: float | None = None) -> None:
        """A new phase (import-log: reading, then publishing): count and clock start again."""
        self.n, self.total, self.sent = 0.0, total, None
        self.unit = "events"
        self.started = self.clock()

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def line(self, final: bool = False) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        if self.sent is not None:
            count, what = self.sent, f"events {self.verb}"
        elif self.unit == "events":
            count, what = int(self.n), f"events {self.verb}"
        else:
            count, what = int(self.n), f"{self.unit} read"
        done_text = "done, " if final else ""
        text = (
            f"{self.prefix}{self.desc}: {done_text}{count:,} {what} in {elapsed:,.0f} s "
            f"({count / elapsed:,.0f}/s)"
        )
        if self.total and not final:
            done = min(self.n / self.total, 1.0)
            text += f", {done:.0%} done"
            if 0 < done < 1:
                text += f", about {elapsed * (1 - done) / done:,.0f} s to go"
        return text

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)
        self.lines += 1
        self._next = self.clock() + self.every

    def close(self) -> None:
        if self.lines:  # a long run: say how it ended
            self._print(self.line(final=True))

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_display(
    path: Path | None,
    quiet: bool,
    desc: str,
    total: float | None = None,
    unit: str = "events",
    verb: str = "sent",
    command: str = "ketenmonitor",
) -> Any:
    """A tqdm bar on a terminal, ProgressLines elsewhere, a disabled bar when `quiet`."""
    from tqdm import tqdm

    terminal = sys.stderr.isatty()
    large = path is None or (path.is_file() and path.stat().st_size >= PROGRESS_MIN_BYTES)
    if quiet or (terminal and not large):
        return tqdm(disable=True)
    if terminal:
        tqdm_unit = {"B": "B", "rows": " rows"}.get(unit, f" {unit}")
        return tqdm(desc=desc, total=total, unit=tqdm_unit, unit_scale=unit == "B", file=sys.stderr)
    return ProgressLines(desc, total, unit, verb, prefix=f"{command}: ")
