"""Savings recommendations: ``raylens recommend`` and the exporter's ``recommend`` collector (docs/reports.md)."""
