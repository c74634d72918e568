"""Garbage-collector tuning of the worker and partner commands (ketenmonitor/gc_tuning.py)."""

from __future__ import annotations

import gc

import pytest

from ketenmonitor.gc_tuning import tune_garbage_collector
from ketenmonitor.settings import Settings


@pytest.fixture
def restored_collector():
    threshold = gc.get_threshold()
    gc.unfreeze()  # a command run earlier in this process may have frozen it
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_leave_the_collections_and_young_ones_wait_for_the_threshold(
    restored_collector,
) -> None:
    assert gc.get_freeze_count() == 0
    _, middle, oldest = gc.get_threshold()
    tune_garbage_collector(12_345)
    assert gc.get_threshold() == (12_345, middle, oldest)
    assert gc.get_freeze_count() > 1_000  # this test process's modules, classes, functions
    gc.collect()
    survivors = [[i] for i in range(500)]  # containers made after start-up
    assert gc.get_count()[0] >= len(survivors)  # waiting for a collection, not collected yet


def test_the_default_threshold_and_a_setting_that_names_it(monkeypatch) -> None:
    monkeypatch.setenv("KETENMONITOR_PSEUDONYM_KEY", "x" * 32)
    assert Settings().gc_young_threshold == 100_000
    monkeypatch.setenv("KETENMONITOR_GC_YOUNG_THRESHOLD", "20000")
    assert Settings().gc_young_threshold == 20_000
    monkeypatch.setenv("KETENMONITOR_GC_YOUNG_THRESHOLD", "-1")
    with pytest.raises(ValueError, match="gc_young_threshold"):
        Settings()


def test_zero_leaves_python_s_own_collector_settings(restored_collector) -> None:
    before = gc.get_threshold()
    tune_garbage_collector(0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
