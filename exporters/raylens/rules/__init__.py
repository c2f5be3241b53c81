"""Alerting rules as code: definitions parameterised by the typed config, rendered to YAML and jsonnet."""
