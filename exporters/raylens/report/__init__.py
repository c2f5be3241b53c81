"""Cost reports from Prometheus: ``raylens report`` (docs/reports.md)."""
