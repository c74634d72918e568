"""How the suite is shared between pytest-xdist workers (`make test` runs `pytest -n 2`).

Unit tests go to whichever worker is free. An integration module stays on one worker
(`xdist_group` = its file), so that its module-scoped servers start once. Every fault scenario
(`@pytest.mark.fault`: kill -9, SIGSTOP, broker outages, rescaling, the timed true-numbers run) is
in ONE group: they run one after another on one worker, never two at once beside each other, while
the other worker takes unit and ordinary integration tests. Each worker starts its own Kafka broker
on its own ports (tests/integration/conftest.py).
"""

from __future__ import annotations

import pytest

FAULT_GROUP = "fault-scenarios"


@pytest.hookimpl(tryfirst=True)  # before xdist appends the group to the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        if item.get_closest_marker("fault"):
            item.add_marker(pytest.mark.xdist_group(FAULT_GROUP))
        elif "integration" in item.path.parts:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
