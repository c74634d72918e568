"""The build of the domain core that runs is the one asked for (ketenmonitor/core_build.py), and
the stored case value decodes the same in either build (streams/codec.py names the record's field
types itself).

With KETENMONITOR_COMPILE_CORE=1 the suite proves the compiled core (deploy/setup.sh built it with
deploy/compile_core.py): this test fails if the modules imported are not compiled, or were
compiled from other sources than the checkout's. Without the switch, it fails if they are
compiled: a run must know which build it tested.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from hypothesis import given, settings
from ketenmonitor.streams import codec
from test_case_value_codec import _same, case_values

from ketenmonitor.core_build import COMPILE_SWITCH, COMPILED, CORE_MODULES, INTERPRETED, core_build

ROOT = Path(__file__).resolve().parents[2]


def _compile_core():
    spec = importlib.util.spec_from_file_location("compile_core", ROOT / "deploy/compile_core.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_core_runs_in_the_build_the_switch_asks_for() -> None:
    requested = os.environ.get(COMPILE_SWITCH, "") == "1"
    build = core_build()
    if requested:
        assert build == COMPILED, (
            f"{COMPILE_SWITCH}=1 but {', '.join(CORE_MODULES)} run {build}: "
            "run deploy/setup.sh (or deploy/compile_core.py) with the switch"
        )
        assert _compile_core().up_to_date(), (
            "the compiled core was built from other sources (or another mypy or Python) than "
            "these: run deploy/compile_core.py again"
        )
    else:
        assert build == INTERPRETED, (
            f"the domain core runs {build} but {COMPILE_SWITCH} is not 1: set it, or remove the "
            "compiled modules (deploy/compile_core.py --clean)"
        )


def test_the_compiled_modules_are_the_ones_the_build_makes() -> None:
    assert _compile_core().SOURCES == ["ketenmonitor/domain/case.py", "ketenmonitor/domain/flow.py"]


@settings(max_examples=200, deadline=None)
@given(case_values())
def test_records_decode_the_same_through_the_named_field_types(value) -> None:
    # The decoding that a compiled core uses (field tuples of the codec's types, then records),
    # in whichever build runs: the same values and types as the encoded state.
    state, withdrawn = value
    raw = codec.encode_case_value(state, withdrawn)
    declared = codec._v4_decode_declared
    try:
        codec._v4_decode_declared = None
        _same(value, codec.decode_case_value(raw))
    finally:
        codec._v4_decode_declared = declared
    _same(value, codec.decode_case_value(raw))
    assert (core_build() == INTERPRETED) is codec.RECORDS_DECODED_AS_DECLARED
