"""Dashboards as code: build, validate, diff and render the Grafana dashboards in ``dashboards/``.

- ``build``: load ``dashboards/*.dashboard.py`` (grafanalib, through ``dashboards/vocabulary.py``),
  bring grafanalib's output up to Grafana's current dashboard schema, write sorted JSON into
  ``provisioning/grafana/dashboards/<folder>/`` and a page per dashboard into ``docs/dashboards/``.
- ``validate``: schema validation, invariants, PromQL through promtool, variable substitution.
- ``diff``: a semantic diff between two revisions, for review.
- ``render``: PNG previews of a dashboard's panels from a live Prometheus (optional ``render`` extra).
"""
