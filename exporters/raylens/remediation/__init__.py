"""``raylens remediate`` and ``raylens incidents`` (docs/remediation.md).

Data flows one way: Alertmanager's webhook (``payload.py``) → the service (``service.py``: auth,
limits, audit) → incidents (``incidents.py`` over ``store.py``) and decisions (``policy.py``) →
actions (``actions.py``, ``restarts.py``) through Ray's APIs (``ray_api.py``) after live checks
(``prometheus.py``); ``escalation.py`` posts back to Alertmanager; ``impact.py`` and
``postmortem.py`` turn the records into figures and drafts.
"""
