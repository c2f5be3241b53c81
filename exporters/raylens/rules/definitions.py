"""Every raylens alert group that is rendered from the typed config.

Add an alert to a module under ``groups/`` (a new module needs a line here), run
``raylens rules build``, write ``docs/runbooks/<AlertName>.md`` and a firing and a not-firing case
in ``tests/rules/``; the tests insist on all three.
"""

from __future__ import annotations

from raylens.rules.groups.exporter import EXPORTER
from raylens.rules.groups.node import NODE
from raylens.rules.model import AlertGroup

GROUPS: tuple[AlertGroup, ...] = (EXPORTER, NODE)
