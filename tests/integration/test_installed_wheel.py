"""An installed wheel works outside the source tree.

The wheel is built from a copy of this checkout (with the suite's virtualenv's setuptools, no build
isolation: pinned in pyproject's dev extra), installed with pip into a fresh virtualenv, and
run from an empty directory without PYTHONPATH. Offline: the dependencies are not downloaded but
taken from the suite's own virtualenv, whose site-packages the fresh one reads through a .pth
line (appended after its own, so the installed wheel wins over the development install).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.integration.cli_helpers import REPO


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def test_the_installed_wheel_runs_from_another_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KETENMONITOR_", "PYTHON", "VIRTUAL_ENV"))}
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cache", "build", "*.egg-info", "__pycache__", "bench", "tests"))
    dist = tmp_path / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--no-index", "-w", str(dist), str(source)], tmp_path, env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("ketenmonitor-*.whl")
    # One installed name: streams/, schemas/ and dashboards/ are ketenmonitor's subpackages.
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"ketenmonitor"}, top_level
    for package in ("streams", "schemas", "dashboards"):
        assert f"ketenmonitor/{package}/__init__.py" in archive.namelist(), package
    assert "ketenmonitor/schemas/json/chain-event.v1.schema.json" in archive.namelist()

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                tmp_path, env).stdout.strip()
    (Path(site) / "shared-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
                      str(wheel)], tmp_path, env)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ketenmonitor = str(venv / "bin" / "ketenmonitor")
    where = _run([str(python), "-c", "import ketenmonitor; print(ketenmonitor.__file__)"],
                 elsewhere, env)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr

    version = _run([ketenmonitor, "--version"], elsewhere, env)
    assert version.returncode == 0 and version.stdout.strip() == "ketenmonitor 0.1.0", version

    helped = _run([ketenmonitor, "rules", "generate", "--help"], elsewhere, env)
    assert helped.returncode == 0 and "--time-scale" in helped.stdout, helped.stderr

    rules = _run([ketenmonitor, "rules", "generate"], elsewhere, env)
    assert rules.returncode == 0 and "groups:" in rules.stdout, rules.stderr[-2000:]

    # dashboards build writes into the current directory, not into site-packages.
    boards = _run([ketenmonitor, "dashboards", "build"], elsewhere, env)
    assert boards.returncode == 0, boards.stderr[-2000:]
    assert sorted(p.name for p in (elsewhere / "dashboards" / "json").glob("*.json"))
    assert not list(Path(site).glob("dashboards/json/*.json"))

    # The demo's own broker needs deploy/kafka of a clone: one line that says how.
    demo = _run([ketenmonitor, "demo", "--duration", "1"], elsewhere, env)
    assert demo.returncode == 2, demo.stdout + demo.stderr
    (line,) = demo.stderr.strip().splitlines()
    assert "KETENMONITOR_DEPLOY_DIR" in line and "--bootstrap" in line
