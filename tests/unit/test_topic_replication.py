"""Replication settings: how topics are created and which layouts a worker refuses."""

from __future__ import annotations

import pytest
from ketenmonitor.streams.topics import UnderReplicatedError, check_replication
from pydantic import ValidationError

from ketenmonitor.settings import Settings

HEALTHY = {p: ([1, 2, 3], [1, 2, 3]) for p in range(6)}


def test_unset_replication_means_the_cluster_defaults_when_creating_a_topic():
    assert Settings().new_topic_replication() == (-1, {})


def test_set_replication_is_the_topics_replication_factor_and_min_insync_replicas():
    settings = Settings(replication_factor=3, min_insync_replicas=2)
    assert settings.new_topic_replication() == (3, {"min.insync.replicas": "2"})


def test_min_insync_replicas_above_the_replication_factor_is_a_settings_error():
    with pytest.raises(ValidationError, match="MIN_INSYNC_REPLICAS \\(3\\) is larger"):
        Settings(replication_factor=2, min_insync_replicas=3)


def test_a_healthy_layout_passes_and_unset_settings_check_nothing():
    check_replication(Settings(replication_factor=3, min_insync_replicas=2), {"a": HEALTHY})
    check_replication(Settings(), {"a": {0: ([1], [])}})


def test_a_topic_with_fewer_replicas_than_the_setting_is_named_in_one_line():
    layout = {"a": HEALTHY, "k.cases": {0: ([1], [1]), 1: ([2], [2])}}
    with pytest.raises(UnderReplicatedError) as error:
        check_replication(Settings(replication_factor=3), layout)
    message = str(error.value)
    assert message.startswith("KETENMONITOR_REPLICATION_FACTOR is 3 but k.cases has 1 replica:")
    assert "\n" not in message


def test_a_partition_with_fewer_in_sync_replicas_than_min_insync_is_refused():
    layout = {"k.cases": {**HEALTHY, 4: ([1, 2, 3], [2])}}
    with pytest.raises(UnderReplicatedError) as error:
        check_replication(Settings(min_insync_replicas=2), layout)
    assert str(error.value).startswith(
        "KETENMONITOR_MIN_INSYNC_REPLICAS is 2 but k.cases partition 4 has 1 in-sync replica of 3:"
    )


def test_both_shortfalls_are_named_each_once_in_one_line():
    layout = {
        "a": {0: ([1], [1])},
        "b": {0: ([1, 2, 3], [3]), 1: ([1, 2, 3], [1, 2])},
        "c": {0: ([1, 2, 3], [1])},
    }
    with pytest.raises(UnderReplicatedError) as error:
        check_replication(Settings(replication_factor=3, min_insync_replicas=2), layout)
    assert str(error.value).startswith(
        "KETENMONITOR_REPLICATION_FACTOR is 3 but a has 1 replica; "
        "KETENMONITOR_MIN_INSYNC_REPLICAS is 2 but b partition 0 has 1 in-sync replica of 3, "
        "c partition 0 has 1 in-sync replica of 3: "
    )


def test_many_bad_topics_are_summarised():
    layout = {f"t{i}": {0: ([1], [1])} for i in range(5)}
    with pytest.raises(UnderReplicatedError, match="t2 has 1 replica \\(and 2 more topics\\)"):
        check_replication(Settings(replication_factor=2), layout)
