"""Compile the per-event domain core with mypyc, in place: the opt-in build of deploy/setup.sh.

    .venv/bin/python deploy/compile_core.py          # build (a no-op when up to date)
    .venv/bin/python deploy/compile_core.py --clean  # remove the compiled modules: source again

deploy/setup.sh runs the first with KETENMONITOR_COMPILE_CORE=1 and the second without it. The
build compiles exactly ketenmonitor.core_build.CORE_MODULES (domain/case.py and domain/flow.py;
mypy type-checks what they import, chain.py, but it stays interpreted) into one shared library,
ketenmonitor/domain/_core__mypyc.*.so, and one small extension module per compiled module next
to its source (case.*.so, flow.*.so), which Python imports instead of the source. They are
git-ignored; the generated C, the object files, the build log and the stamp of what was built
are in .cache/mypyc/. It needs mypy (the dev extras) and a C compiler. A failed build leaves no
compiled module behind (the source runs) and exits 1 with one line saying why; the whole output
is in .cache/mypyc/build.log.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from ketenmonitor.core_build import COMPILE_SWITCH, COMPILED, CORE_MODULES

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".cache" / "mypyc"
LOG = BUILD / "build.log"
STAMP = BUILD / "built-from.json"
# One group, so calls between the two modules stay native; named inside the package, so that the
# shared library is found wherever the package is (mypyc's default name is a top-level module).
GROUP = "ketenmonitor.domain._core"
SOURCES = [f"{m.replace('.', '/')}.py" for m in CORE_MODULES]


def outputs() -> list[Path]:
    """The compiled modules present in the checkout (any Python version's)."""
    found = []
    stems = [Path(s).with_suffix("") for s in SOURCES]
    for stem in [*stems, Path(GROUP.replace(".", "/") + "__mypyc")]:
        folder = ROOT / stem.parent
        found += [p for p in folder.glob(f"{stem.name}.*") if p.suffix in (".so", ".pyd")]
    return sorted(found)


def clean() -> list[Path]:
    removed = outputs()
    for path in removed:
        path.unlink()
    return removed


def stamp() -> dict[str, object]:
    """What a build is made from: the core's sources, mypy (mypyc) and the interpreter."""
    import mypy.version

    return {
        "sources": {s: hashlib.sha256((ROOT / s).read_bytes()).hexdigest() for s in SOURCES},
        "mypy": mypy.version.__version__,
        "python": sys.version,
    }


def up_to_date() -> bool:
    try:
        built = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    return built == stamp() and len(outputs()) == len(SOURCES) + 1


def build_step() -> None:
    """The build itself (run in a child process whose output goes to the log)."""
    from mypyc.build import mypycify
    from setuptools import Distribution

    extensions = mypycify(SOURCES, group_name=GROUP, target_dir=str(BUILD / "c"))
    # A bare Distribution: no setup() call, so the project's pyproject.toml is not applied.
    dist = Distribution({"name": "ketenmonitor-core", "ext_modules": extensions})
    build_ext = dist.get_command_obj("build_ext")
    build_ext.inplace = True
    build_ext.build_temp = str(BUILD / "temp")
    build_ext.build_lib = str(BUILD / "lib")  # built there, then copied next to the sources
    dist.run_command("build_ext")


def _why(log: str) -> str:
    """The first line of the build log that says what went wrong."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in lines:
        if " error:" in line or line.startswith(("error:", "Error")):
            return line
    return lines[-1] if lines else "no output"


def fail(reason: str) -> None:
    clean()
    STAMP.unlink(missing_ok=True)
    sys.exit(
        f"compile_core: {COMPILE_SWITCH}=1 but mypyc could not compile the domain core: {reason} "
        f"(whole output: {LOG.relative_to(ROOT)}; unset the switch for the interpreted build)"
    )


def build() -> None:
    if up_to_date():
        print("compile_core: the compiled domain core is up to date")
        return
    clean()  # never a compiled module of other sources than those it was built from
    BUILD.mkdir(parents=True, exist_ok=True)
    STAMP.unlink(missing_ok=True)
    print(f"compile_core: compiling {', '.join(SOURCES)} with mypyc (a few minutes)")
    with LOG.open("w") as log:
        done = subprocess.run(
            [sys.executable, __file__, "--build-step"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        fail(_why(LOG.read_text(errors="replace")))
    probe = "from ketenmonitor.core_build import core_build; print(core_build())"
    check = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True
    )
    if check.stdout.strip() != COMPILED:
        said = (check.stdout + check.stderr).strip()
        fail(f"the built modules do not import as compiled ({said!r})")
    STAMP.write_text(json.dumps(stamp(), indent=1) + "\n")
    print(f"compile_core: built {', '.join(str(p.relative_to(ROOT)) for p in outputs())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    parser.add_argument("--build-step", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_step:
        build_step()
    elif args.clean:
        removed = clean()
        STAMP.unlink(missing_ok=True)
        if removed:
            print(f"compile_core: removed the compiled domain core ({len(removed)} files)")
    else:
        build()


if __name__ == "__main__":
    main()
