#!/usr/bin/env python3
"""Derive the JSON Schemas tests/test_kubernetes.py validates custom resources against, from the
CustomResourceDefinitions their projects publish (both Apache-2.0):

  prometheus-operator: example/prometheus-operator-crd/monitoring.coreos.com_{podmonitors,servicemonitors,
                       prometheusrules}.yaml
  KubeRay:             ray-operator/config/crd/bases/ray.io_rayclusters.yaml

Usage: scripts/derive-crd-schemas.py --source "<repo>@<commit>" CRD.yaml... > written to tests/fixtures/crd-schemas/

Derivation: the served storage version's openAPIV3Schema, without `description` texts (size), with
`additionalProperties: false` on every object that lists its properties and does not preserve unknown
fields: the API server would silently prune a misspelt field; the test should reject it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "crd-schemas"


def strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: strict(value) for key, value in node.items() if key != "description"}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(item) for item in node]
    return node


def derive(crd: dict[str, Any], source: str) -> tuple[str, dict[str, Any]]:
    version = next(v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage"))
    schema = strict(version["schema"]["openAPIV3Schema"])
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schema["$comment"] = f"Derived by scripts/derive-crd-schemas.py from {source}: CRD {crd['metadata']['name']}"
    schema.setdefault("properties", {})["apiVersion"] = {"enum": [f"{group}/{version['name']}"]}
    schema["properties"]["kind"] = {"enum": [kind]}
    return f"{group}_{kind.lower()}.json", schema


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True, help="repository@commit the CRDs come from")
    parser.add_argument("crds", type=Path, nargs="+")
    args = parser.parse_args()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for path in args.crds:
        name, schema = derive(yaml.safe_load(path.read_text()), f"{args.source}:{path.name}")
        (OUTPUT / name).write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
        print(f"wrote {OUTPUT / name}")


if __name__ == "__main__":
    main()
