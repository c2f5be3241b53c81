"""Prometheus serving a backfilled TSDB, for the fleet benchmarks: started and stopped by PID.

No scrape targets and no rules: queries then measure only the stored blocks. Retention is set far
beyond the data (Prometheus measures retention from the newest block, not from the clock), and
compaction of the backfilled blocks happens in the background as it would in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess


@contextmanager
def serving_prometheus(data: Path, work: Path, extra: dict | None = None, timeout: float = 300) -> Iterator[str]:
    """Yield the URL of Prometheus on ``data``; ``extra`` is merged into its configuration."""
    work.mkdir(parents=True, exist_ok=True)
    config = {"global": {"scrape_interval": "15s", "evaluation_interval": "15s"}, **(extra or {})}
    config_path = work / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    listen = f"127.0.0.1:{free_port()}"
    argv = [
        "prometheus",
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=400d",
        f"--web.listen-address={listen}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
    process = ManagedProcess("prometheus", argv, work / "prometheus.log", f"http://{listen}/-/ready")
    process.start()
    try:
        process.wait_ready(timeout=timeout)  # opening many blocks on a busy machine takes a while
        yield f"http://{listen}"
    finally:
        process.stop()
