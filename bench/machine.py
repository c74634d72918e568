"""Facts about the machine and the moment a figure was measured.

    facts = machine_facts()                 # nproc, memory, CPU model, versions, load average
    clock = CpuClock(pid); ...; clock.cpu_seconds()   # user+system CPU of a process since start

The machine is shared: every figure carries the load average at the time it was taken, and CPU
seconds of the measured process next to wall time (CPU time is what other people's load disturbs
least).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def kafka_version() -> str | None:
    """The broker version kafka.sh runs (read from its resolved jar names)."""
    from ketenmonitor.infra.kafka_broker import KAFKA_SCRIPT

    libs = KAFKA_SCRIPT.parents[2] / ".cache" / "kafka" / "libs"
    for jar in sorted(libs.glob("kafka_2.13-*.jar")) if libs.exists() else ():
        return jar.stem.removeprefix("kafka_2.13-")
    return None


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the worker's code differed from it (a shared tree)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "streams", "ketenmonitor", "schemas")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": dirty.splitlines()}


def standalone_record(command: str, started_load: Any, doc: str | None) -> dict[str, Any]:
    """The head of a standalone benchmark's results file (`python -m bench.<name>`): its
    command, the machine with the load average at its start and now, and its method (the
    module docstring after its first two paragraphs)."""
    return {
        "command": command,
        "machine": {**machine_facts(), "load_average_at_start": started_load,
                    "load_average_at_end": load_average()},
        "method": (doc or "").split("\n\n", 2)[2].strip(),
    }


def machine_facts() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_total_bytes": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "kafka_broker": kafka_version(),
        "packages": {
            p: _version(p)
            for p in (
                "aiokafka", "aiohttp", "kafka-python", "orjson", "pydantic", "faust-streaming",
                "confluent-kafka",
            )
        },
        "load_average_at_start": load_average(),
        "git": git_state(),
    }


class CpuClock:
    """CPU seconds (user + system) a process used since this clock was made."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self._start = self._now()
        self._wall = time.monotonic()

    def _now(self) -> float:
        t = self.process.cpu_times()
        return float(t.user + t.system)

    def cpu_seconds(self) -> float:
        return self._now() - self._start

    def wall_seconds(self) -> float:
        return time.monotonic() - self._wall

    def rss_bytes(self) -> int:
        return int(self.process.memory_info().rss)

    def counters(self) -> dict[str, float]:
        """Where the process's CPU went, since boot: user and system seconds, minor and major
        page faults (/proc/PID/stat), voluntary and involuntary context switches. Two modes
        that differ in system time or faults differ in memory, not in Python work."""
        t = self.process.cpu_times()
        switches = self.process.num_ctx_switches()
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return {
            "cpu_user_seconds": float(t.user),
            "cpu_system_seconds": float(t.system),
            "minor_faults": int(fields[7]),  # field 10 of proc(5), counted after the comm
            "major_faults": int(fields[9]),
            "voluntary_switches": int(switches.voluntary),
            "involuntary_switches": int(switches.involuntary),
        }

    def rss_parts(self) -> dict[str, int]:
        """The resident set split by what holds it (/proc/PID/smaps_rollup, bytes): anonymous
        (the Python heap and malloc arenas) and file-backed (mapped files such as the LMDB
        checkpoint and shared libraries, whose clean pages the kernel can drop)."""
        parts: dict[str, int] = {}
        with open(f"/proc/{self.process.pid}/smaps_rollup") as rollup:
            for line in rollup:
                name, _, rest = line.partition(":")
                if rest.strip().endswith("kB"):
                    parts[name] = int(rest.split()[0]) * 1024
        return {
            "rss_bytes": parts.get("Rss", 0),
            "anonymous_bytes": parts.get("Anonymous", 0),
            "file_backed_bytes": parts.get("Rss", 0) - parts.get("Anonymous", 0),
        }


def _cpu_ticks() -> tuple[int, int, int]:
    """(busy, total, steal) clock ticks of all CPUs since boot (/proc/stat's first line)."""
    with open("/proc/stat", encoding="utf-8") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    steal = fields[7] if len(fields) > 7 else 0
    total = sum(fields[:8])  # guest time is already in user
    return total - idle - steal, total, steal


class MachineShare:
    """The machine's CPU over an interval: the share busy (every process, the broker included)
    and the share the hypervisor took away (steal), from /proc/stat."""

    def __init__(self) -> None:
        self._start = _cpu_ticks()

    def shares(self) -> dict[str, float]:
        busy, total, steal = (b - a for a, b in zip(self._start, _cpu_ticks(), strict=True))
        return {
            "machine_busy_share": round(busy / total, 3) if total else 0.0,
            "machine_steal_share": round(steal / total, 3) if total else 0.0,
        }


def settle(
    busy_below: float = 0.15, window_seconds: float = 3.0, give_up_seconds: float = 90.0
) -> dict[str, float]:
    """Wait until the machine's CPU is less than `busy_below` busy over a window (what the run
    before left behind has finished: the broker compacting its changelogs, a worker exiting),
    at most `give_up_seconds`; returns how long it waited and the last window's shares."""
    started = time.monotonic()
    while True:
        share = MachineShare()
        time.sleep(window_seconds)
        found = share.shares()
        waited = time.monotonic() - started
        if found["machine_busy_share"] < busy_below or waited >= give_up_seconds:
            return {"settle_seconds": round(waited, 1), **found}


def mapped_unnamed_bytes(pid: int, directory: Path) -> int:
    """The size of the mappings of process `pid` of files in `directory` that have no name
    (unlinked, or made unnamed: /proc/PID/maps lists them as deleted): for a worker with a state
    directory, its retired keys' digests (streams/retirement.py RetiredKeys)."""
    total, prefix = 0, str(directory.resolve()) + "/"
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith(prefix) and fields[5].rstrip().endswith(
                "(deleted)"
            ):
                start, _, end = fields[0].partition("-")
                total += int(end, 16) - int(start, 16)
    return total
