"""bench/code_versions.py: each revision's own per-event loop, from a worktree of it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench import code_versions

REPO = Path(__file__).resolve().parents[2]


def test_two_revisions_run_their_own_loops_interleaved_and_write_their_figures(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()
    code = code_versions.main(
        ["--events", "400", "--rounds", "2", "--name", "t", "--results-dir", str(tmp_path),
         "HEAD", head[:10]]
    )
    assert code == 0
    (written,) = tmp_path.glob("*-t.json")
    out = json.loads(written.read_text())
    assert [v["commit"] for v in out["versions"]] == [head, head]
    for version in out["versions"]:
        assert [r["round"] for r in version["runs"]] == [1, 2]
        for run in version["runs"]:
            assert 300 <= run["events"] <= 500  # a log of about 400 events (whole cases)
            assert run["events_per_cpu_second"] > 0
            assert run["route_seconds"] + run["process_seconds"] <= run["cpu_seconds"] * 1.5
    worktree = REPO / ".cache" / "bench" / "worktrees" / head[:12]
    assert (worktree / "bench" / "core_loop.py").is_file()
