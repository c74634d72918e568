"""How LocalKafkaCluster lays out its nodes (ports, voters, one cluster id), without starting it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ketenmonitor.infra.kafka_cluster import LocalKafkaCluster


def test_three_nodes_get_their_own_ports_data_dirs_and_the_same_voters_and_cluster_id(tmp_path):
    cluster = LocalKafkaCluster(base_port=19300, data_dir=tmp_path)
    envs = [node._script_env() for node in cluster.brokers]
    assert cluster.bootstrap_servers == "127.0.0.1:19300,127.0.0.1:19302,127.0.0.1:19304"
    assert [(e["KAFKA_NODE_ID"], e["KAFKA_PORT"], e["KAFKA_CONTROLLER_PORT"]) for e in envs] == [
        ("1", "19300", "19301"),
        ("2", "19302", "19303"),
        ("3", "19304", "19305"),
    ]
    assert {e["KAFKA_QUORUM_VOTERS"] for e in envs} == {
        "1@127.0.0.1:19301,2@127.0.0.1:19303,3@127.0.0.1:19305"
    }
    assert len({e["KAFKA_CLUSTER_ID"] for e in envs}) == 1
    assert len(envs[0]["KAFKA_CLUSTER_ID"]) == 22  # StorageTool random-uuid's format
    assert {(e["KAFKA_REPLICATION_FACTOR"], e["KAFKA_MIN_INSYNC_REPLICAS"]) for e in envs} == {
        ("3", "2")
    }
    assert [Path(e["KAFKA_DATA_DIR"]).name for e in envs] == ["node-1", "node-2", "node-3"]
    assert cluster.node(2).port == 19302


def test_min_insync_above_the_replication_or_the_nodes_is_refused(tmp_path):
    with pytest.raises(ValueError, match="min_insync_replicas"):
        LocalKafkaCluster(
            base_port=19300, data_dir=tmp_path, replication_factor=2, min_insync_replicas=3
        )
    with pytest.raises(ValueError, match="nodes"):
        LocalKafkaCluster(base_port=19300, data_dir=tmp_path, nodes=2, replication_factor=3)
