"""A worker refuses to start on topics whose layout contradicts its settings."""

from __future__ import annotations

import pytest

from ketenmonitor.infra.worker_process import WorkerProcess
from ketenmonitor.kafka_io import ensure_topics


def test_a_case_topic_with_other_partitions_than_the_settings_is_a_clear_start_error(
    monitor_env, tmp_path
):
    prefix = monitor_env["KETENMONITOR_TOPIC_PREFIX"]
    ensure_topics(monitor_env["KETENMONITOR_KAFKA_BOOTSTRAP"], [f"{prefix}.cases"], 3)
    worker = WorkerProcess(monitor_env, log_path=tmp_path / "worker.log")
    worker.start()
    try:
        with pytest.raises(RuntimeError, match="worker exited with 2"):
            worker.wait_ready(timeout=60)
        log = (tmp_path / "worker.log").read_text()
        assert f"KETENMONITOR_PARTITIONS is 6 but {prefix}.cases has 3 partitions" in log
        assert "Traceback" not in log
    finally:
        worker.stop()
