"""Shared by every test (unit and integration)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def python_garbage_collector_as_it_was() -> Iterator[None]:
    """A command run in this process (`main([...])`) tunes the garbage collector for the rest of
    the process (ketenmonitor/gc_tuning.py): the next test gets Python's collector back."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
