"""The README's main job: `ketenmonitor demo` shows live numbers within a minute."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

from ketenmonitor.infra.worker_process import free_port


def test_the_demo_shows_numbers_within_a_minute(kafka_broker, tmp_path):
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "KETENMONITOR_KAFKA_BOOTSTRAP": kafka_broker.bootstrap_servers,
        "KETENMONITOR_TOPIC_PREFIX": f"demo{run}",
        "KETENMONITOR_APP_ID": f"demo-{run}",
        "KETENMONITOR_METRICS_PORT": str(free_port()),
    }
    env.pop("KETENMONITOR_PSEUDONYM_KEY", None)  # the demo makes a throw-away key itself
    result = subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "demo", "--duration", "50", "--rate", "400"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accepted = [int(n) for n in re.findall(r"accepted (\d+)", result.stdout)]
    assert accepted and max(accepted) > 0, result.stdout[-3000:]
    assert "Werkvoorraad per fase" in result.stdout
    # The summary shows stage rows with live counts, not only headers.
    assert re.search(r"Opsporing \(politie\)\s*│\s*police\s*│\s*[1-9]", result.stdout), (
        result.stdout[-3000:]
    )
