"""deploy/kubernetes/: generated parts fresh, the overlay renders with kustomize, and every object it
renders validates offline: built-in kinds against the Kubernetes API schemas (kubernetes-validate),
custom resources against schemas derived from the prometheus-operator and KubeRay CRDs."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from raylens.kubernetes import DASHBOARD_LABEL, FOLDER_ANNOTATION, expected_files
from raylens.stack.tools import find_tool

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "deploy" / "kubernetes" / "overlays" / "example"
CRD_SCHEMAS = REPO / "tests" / "fixtures" / "crd-schemas"
KUBERNETES_VERSION = "1.30.0"


def test_generated_files_are_fresh() -> None:
    for relative, text in expected_files(REPO).items():
        assert (REPO / relative).read_text() == text, f"{relative} is stale: run `raylens kubernetes build`"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = find_tool("kubectl")
    assert kubectl, "kubectl is not installed (Debian kubernetes-client); run scripts/setup.sh --test"
    result = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def _crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    validators = {}
    for path in sorted(CRD_SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        key = (schema["properties"]["apiVersion"]["enum"][0], schema["properties"]["kind"]["enum"][0])
        validators[key] = jsonschema.Draft7Validator(schema)
    return validators


def problems(documents: list[dict[str, Any]]) -> list[str]:
    crds = _crd_validators()
    found = []
    for document in documents:
        name = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
        validator = crds.get((document.get("apiVersion"), document.get("kind")))
        if validator is not None:
            found += [
                f"{name}: {'.'.join(map(str, error.path))}: {error.message}"
                for error in validator.iter_errors(document)
            ]
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            found.append(f"{name}: {error}")
        except kubernetes_validate.SchemaNotFoundError:
            found.append(f"{name}: no schema for {document.get('apiVersion')} {document.get('kind')}")
    return found


def test_every_rendered_object_validates(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted({document["kind"] for document in rendered})
    assert kinds == [
        "ConfigMap", "Deployment", "PersistentVolumeClaim", "PodMonitor", "PrometheusRule", "RayCluster",
        "Service", "ServiceAccount", "ServiceMonitor",
    ]  # fmt: skip
    assert problems(rendered) == []
    assert {document["metadata"].get("namespace") for document in rendered} == {"ray"}


def test_validation_catches_mistakes(rendered: list[dict[str, Any]]) -> None:
    """The same checks reject a misspelt field in a custom resource and a wrong type in a built-in one."""
    broken = copy.deepcopy(rendered)
    monitor = next(document for document in broken if document["kind"] == "PodMonitor")
    monitor["spec"]["podMetricsEndpoint"] = monitor["spec"].pop("podMetricsEndpoints")
    deployment = next(document for document in broken if document["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "one"
    found = problems(broken)
    assert any("PodMonitor" in problem and "podMetricsEndpoint" in problem for problem in found), found
    assert any("Deployment" in problem and "replicas" in problem for problem in found), found


def test_sidecar_in_every_ray_pod_and_rules_and_dashboards_shipped(rendered: list[dict[str, Any]]) -> None:
    cluster = next(document for document in rendered if document["kind"] == "RayCluster")
    templates = [cluster["spec"]["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster["spec"]["workerGroupSpecs"]
    ]
    for template in templates:
        sidecar = next(c for c in template["spec"]["containers"] if c["name"] == "raylens")
        assert "--role=node" in sidecar["args"]
        env = {item["name"]: item for item in sidecar["env"]}
        assert env["RAYLENS_CLUSTER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['ray.io/cluster']"
    rules = {doc["metadata"]["name"]: doc for doc in rendered if doc["kind"] == "PrometheusRule"}
    shipped = {
        group["name"]
        for folder in ("recording-rules", "alerting-rules")
        for path in (REPO / folder).glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
    }
    assert {g["name"] for rule in rules.values() for g in rule["spec"]["groups"]} == shipped
    dashboards = [
        doc for doc in rendered if doc["kind"] == "ConfigMap" and DASHBOARD_LABEL in doc["metadata"]["labels"]
    ]
    committed = sorted((REPO / "provisioning" / "grafana" / "dashboards").glob("*/*.json"))
    assert len(dashboards) == len(committed)
    for config_map in dashboards:
        [(name, text)] = config_map["data"].items()
        source = next(path for path in committed if path.name == name)
        assert json.loads(text) == json.loads(source.read_text())
        assert config_map["metadata"]["annotations"][FOLDER_ANNOTATION] == source.parent.name
        assert len(text.encode()) < 1024 * 1024  # a ConfigMap's limit
