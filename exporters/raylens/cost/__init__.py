"""The cost engine: price catalog, node pricing, attribution, spend state, budgets, quotas, explain.

Data flows one way: an ``Observation`` of the cluster (``model``, from Ray via ``ray_source``) goes into
``CostEngine.advance`` (``engine``), priced by ``NodePricer`` (``pricing``) from the ``PriceCatalog``
(``catalog``); ``raylens.collectors.cost`` turns the result into metrics (``spend_metrics``,
``budget_metrics``, ``quota_metrics``) and saves the state (``state_writer``). docs/cost-model.md
explains the model.
"""
