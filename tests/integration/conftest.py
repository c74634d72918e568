"""Fixtures for tests that need a real Kafka broker (started from deploy/kafka)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ketenmonitor.infra.kafka_broker import LocalKafkaBroker

# Not 9092/9093: a developer's own broker may be running there.
KAFKA_TEST_PORT = 19092
KAFKA_TEST_CONTROLLER_PORT = 19093


@pytest.fixture(scope="session")
def kafka_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalKafkaBroker]:
    """A fresh single-node broker for the whole session, on 127.0.0.1:19092.

    If it cannot start, BrokerStartError propagates and the tests using it error
    out with the script's output: a missing broker must never look like a pass.
    """
    broker = LocalKafkaBroker(
        port=KAFKA_TEST_PORT,
        controller_port=KAFKA_TEST_CONTROLLER_PORT,
        data_dir=tmp_path_factory.mktemp("kafka"),
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
