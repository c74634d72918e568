"""Headless Chromium for the report page tests: the page's DOM after its scripts ran.

    dom = chromium_dump_dom(tmp_path / "report.html")
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def chromium_dump_dom(page: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="ketenmonitor-chromium-") as profile:
        result = subprocess.run(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--dump-dom", page.as_uri(),
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
