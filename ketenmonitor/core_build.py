"""Which build of the per-event domain core this process runs.

    core_build()  # "interpreted" (the modules' Python source) or "compiled" (mypyc)

The compiled build is opt-in: with KETENMONITOR_COMPILE_CORE=1, deploy/setup.sh runs
deploy/compile_core.py, which compiles exactly `CORE_MODULES` with mypyc into extension modules
next to their sources (git-ignored); Python imports an extension module before the source of the
same name. Without the switch, setup removes such modules, and the core runs from source. The
worker exports the build as a label of ketenmonitor_build_info (docs/metrics.md).
"""

from __future__ import annotations

from importlib import import_module
from importlib.machinery import EXTENSION_SUFFIXES

COMPILE_SWITCH = "KETENMONITOR_COMPILE_CORE"  # "1": deploy/setup.sh compiles the core
CORE_MODULES = ("ketenmonitor.domain.case", "ketenmonitor.domain.flow")
INTERPRETED = "interpreted"
COMPILED = "compiled"


def is_compiled(module: str) -> bool:
    """Whether `module` was imported from an extension module rather than Python source."""
    return str(getattr(import_module(module), "__file__", "")).endswith(tuple(EXTENSION_SUFFIXES))


def core_build() -> str:
    """"compiled" when every core module is compiled, "interpreted" when none is, "mixed" else
    (a half-finished build: deploy/compile_core.py builds or removes them together)."""
    compiled = [is_compiled(m) for m in CORE_MODULES]
    if all(compiled):
        return COMPILED
    return "mixed" if any(compiled) else INTERPRETED
