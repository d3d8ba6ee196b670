"""``resmon hub run`` as a child process, for kill -9 and scale-out tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from hub import HubConfig

RESMON = str(Path(sys.executable).with_name("resmon"))


class HubProcess:
    """One hub process; ``kill()`` is kill -9."""

    def __init__(self, config: HubConfig, log: Path) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": config.database_url,
            "REDIS_URL": config.redis_url,
            "KAFKA_BOOTSTRAP_SERVERS": config.kafka_bootstrap_servers,
            "RESMON_HUB_GROUP": config.consumer_group,
            "RESMON_HUB_USAGE_TOPIC": config.usage_topic,
            "RESMON_HUB_ALERTS_TOPIC": config.alerts_topic,
            "RESMON_HUB_SESSION_MS": str(config.session_timeout_ms),
            "RESMON_HUB_HTTP": "127.0.0.1:0",
            "RESMON_RETENTION_DAYS": str(config.retention_days),
            "RESMON_REDIS_PREFIX": config.redis_prefix,
            "RESMON_API_KEY_SECRET": config.api_key_secret,
        }
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [RESMON, "hub", "run"], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._out.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        return self.proc.returncode
