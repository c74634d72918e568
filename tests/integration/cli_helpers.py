"""Running `ketenmonitor` as a user does: a child process, or main() in this process for speed.

    result = run_cli(["report", "--period", "2026Q3"], env={"KETENMONITOR_STORE_URL": url})
    status, out, err = run_main(["acl", "show"], env, capfd)

Both start from an environment without any KETENMONITOR_* variable of the caller, so a test sees
only the settings it gives. Child processes import this checkout's code (PYTHONPATH).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KETENMONITOR_")}
    base["PYTHONPATH"] = str(REPO)
    return {**base, **(env or {})}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ketenmonitor.cli", *args]


def run_cli(
    args: list[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args), env=clean_env(env), cwd=cwd or REPO, capture_output=True,
        text=True, timeout=timeout, check=False,
    )


def run_main(
    argv: list[str], env: Mapping[str, str], capfd: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """main(argv) in this process with exactly `env` as KETENMONITOR_* settings."""
    from ketenmonitor.cli import main

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(clean_env(env))
    capfd.readouterr()
    try:
        status: Any = main(argv)
    except SystemExit as exc:  # argparse: --help, usage errors
        status = exc.code
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out, err = capfd.readouterr()
    return int(status or 0), out, err


def leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[
    tuple[tuple[str, ...], argparse.ArgumentParser]
]:
    """Every runnable command (`acl apply`, `report`, ...) with its parser."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield prefix, parser
        return
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from leaf_commands(sub, (*prefix, name))


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]
