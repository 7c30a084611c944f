"""The Chain CRD: valid Kubernetes, self-describing, agreeing with the operator, accepting the example."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from keychain.operator import spec as chain_spec

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "chains.keychain.dev.yaml"
CHART_CRD_PATH = ROOT / "deploy" / "helm" / "keychain" / "files" / "crds" / "chains.keychain.dev.yaml"
EXAMPLE_PATH = ROOT / "deploy" / "examples" / "chain.yaml"
KUBERNETES_VERSION = "1.35"


def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


def version_schema() -> dict[str, Any]:
    (version,) = crd()["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as `kubectl apply` (strict field validation) enforces it: unknown fields fail.

    A structural schema prunes unknown fields silently; the API server's strict field
    validation reports them instead. Objects that preserve unknown fields keep accepting them.
    """
    schema = copy.deepcopy(schema)
    if schema.get("type") == "object" and "properties" in schema:
        if not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        schema["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if "metadata" in schema["properties"]:
            schema["properties"]["metadata"] = {"type": "object"}
    if "items" in schema:
        schema["items"] = strict(schema["items"])
    return schema


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, child in schema.get("properties", {}).items():
        found += walk(child, f"{path}.{name}")
    if "items" in schema:
        found += walk(schema["items"], f"{path}[]")
    return found


def test_the_crd_is_a_valid_custom_resource_definition_in_strict_mode():
    kubernetes_validate.validate(crd(), KUBERNETES_VERSION, strict=True)


def test_the_chart_installs_exactly_the_repository_crd():
    assert CHART_CRD_PATH.read_text() == CRD_PATH.read_text(), f"copy {CRD_PATH} to {CHART_CRD_PATH}"


def test_every_spec_and_status_field_has_a_description_for_kubectl_explain():
    schema = version_schema()
    undocumented = [
        path
        for path, node in walk(schema)
        if path.startswith((".spec", ".status")) and not node.get("description")
    ]
    assert undocumented == []


def test_status_scale_subresources_printer_columns_and_names():
    resource = crd()["spec"]
    (version,) = resource["versions"]
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Replicas", "Ready", "Head", "Tail", "Epoch", "Phase", "Age"]
    assert resource["names"]["shortNames"] and resource["names"]["categories"] == ["keychain"]
    # The operator framework keeps its progress in the status: the schema must not prune it.
    assert version_schema()["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True


def test_the_crd_defaults_are_the_operators_defaults():
    spec = version_schema()["properties"]["spec"]["properties"]
    assert spec["replicas"]["default"] == chain_spec.DEFAULT_REPLICAS
    assert spec["imagePullPolicy"]["default"] == chain_spec.DEFAULT_PULL_POLICY
    assert spec["imagePullPolicy"]["enum"] == list(chain_spec.PULL_POLICIES)
    assert spec["storage"]["properties"]["size"]["default"] == chain_spec.DEFAULT_NODE_STORAGE
    coordinator = spec["coordinator"]["properties"]
    assert coordinator["replicas"]["default"] == chain_spec.DEFAULT_COORDINATOR_REPLICAS
    assert coordinator["storage"]["properties"]["size"]["default"] == chain_spec.DEFAULT_COORDINATOR_STORAGE
    proxy = spec["proxy"]["properties"]
    assert proxy["replicas"]["default"] == chain_spec.DEFAULT_PROXY_REPLICAS
    assert proxy["serviceType"]["default"] == chain_spec.DEFAULT_SERVICE_TYPE
    assert proxy["serviceType"]["enum"] == list(chain_spec.SERVICE_TYPES)
    assert spec["readConsistency"]["default"] == chain_spec.DEFAULT_READ_CONSISTENCY
    assert spec["readConsistency"]["enum"] == list(chain_spec.READ_CONSISTENCIES)
    assert spec["auth"]["properties"]["tokenSecretRef"]["properties"]["key"]["default"] == chain_spec.DEFAULT_TOKEN_KEY
    tls = spec["tls"]["properties"]
    assert tls["enabled"]["default"] is chain_spec.Tls().enabled is True
    assert tls["issuerRef"]["properties"]["kind"]["default"] == chain_spec.DEFAULT_ISSUER_KIND
    assert tls["issuerRef"]["properties"]["kind"]["enum"] == list(chain_spec.ISSUER_KINDS)
    assert tls["issuerRef"]["properties"]["group"]["default"] == chain_spec.CERT_MANAGER_GROUP
    peer = proxy["allowFrom"]["items"]["properties"]
    assert tuple(peer) == chain_spec.PEER_FIELDS


def test_the_crd_carries_the_cel_rules_of_the_spec():
    spec = version_schema()["properties"]["spec"]["properties"]
    rules = {path: [r["rule"] for r in node.get("x-kubernetes-validations", [])] for path, node in walk(
        version_schema()["properties"]["spec"], ".spec")}  # fmt: skip
    assert rules[".spec.replicas"] == ["self >= 1"]
    assert "self in [1, 3, 5]" in rules[".spec.coordinator.replicas"]
    assert not any("oldSelf" in rule for rule in rules[".spec.coordinator.replicas"]), "it may change, 3 <-> 5"
    assert any("oldSelf.storageClassName" in rule for rule in rules[".spec.storage"])
    assert any("quantity(self).compareTo(quantity(oldSelf)) >= 0" in rule for rule in rules[".spec.storage.size"])
    assert spec["storage"]["default"] == {}, "nested defaults apply only under a defaulted parent"


def test_the_example_chain_is_valid_against_the_crd_schema():
    example = yaml.safe_load(EXAMPLE_PATH.read_text())
    assert (example["apiVersion"], example["kind"]) == ("keychain.dev/v1alpha1", "Chain")
    jsonschema.validate(example, strict(version_schema()))


@pytest.mark.parametrize(
    "change",
    [
        lambda chain: chain["spec"].update(replica=3),
        lambda chain: chain["spec"]["proxy"].update(serviceType="Ingress"),
        lambda chain: chain["spec"].update(replicas="three"),
    ],
    ids=["misspelt field", "unknown enum value", "wrong type"],
)
def test_the_crd_schema_rejects_a_broken_chain(change):
    example = yaml.safe_load(EXAMPLE_PATH.read_text())
    change(example)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example, strict(version_schema()))


def test_the_example_chain_reads_into_the_operators_spec():
    body = yaml.safe_load(EXAMPLE_PATH.read_text())
    body["metadata"].update(namespace="default", uid="u-1")
    spec = chain_spec.ChainSpec.from_resource(body, default_image="keychaindb/keychain:0.1.0")
    assert (spec.replicas, spec.proxy.ingress.host) == (3, "keychain.localhost")
