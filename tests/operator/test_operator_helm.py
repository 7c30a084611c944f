"""The Helm chart, linted and rendered by the real Helm engine; every object it renders is valid for the
oldest and the newest Kubernetes the README supports; its values schema refuses unknown keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from keychain.testing.helm import ERROR, HelmError, lint_chart, render_chart

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "keychain"
# README: the CRD's validation rules need Kubernetes 1.29 or newer; the newest is the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())


def lint(chart: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return lint_chart(chart, values)


def default_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def every_option() -> dict[str, Any]:
    """Values that turn on every optional template."""
    values = default_values()
    values["operator"]["watchNamespaces"] = ["team-a", "team-b"]
    values["operator"]["verbose"] = True
    values["exampleChain"].update(enabled=True, ingress={"enabled": True, "host": "kv.localhost", "className": ""})
    return values


def chain_schema(objects: list[dict[str, Any]]) -> dict[str, Any]:
    crd = next(o for o in objects if o["kind"] == "CustomResourceDefinition")
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_the_chart_lints_clean():
    assert lint(CHART) == []


def test_the_chart_lints_clean_when_watching_namespaces_with_an_example_chain():
    values = every_option()
    values["crds"]["install"] = False
    assert lint(CHART, values) == []


def test_a_misspelt_value_fails_the_lint():
    values = default_values()
    values["operator"]["intervall"] = values["operator"].pop("interval")
    problems = lint(CHART, values)
    assert (ERROR, "values.yaml") in [(p["severity"], p["path"]) for p in problems]


def test_a_misspelt_value_is_refused_by_the_render_as_by_helm_install():
    with pytest.raises(HelmError, match="intervall"):
        render_chart(CHART, release="keychain", namespace="keychain-system", values={"operator": {"intervall": 3}})


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("options", ["defaults", "every-option"])
def test_every_rendered_object_is_valid_kubernetes_in_strict_mode(version, options):
    values = default_values() if options == "defaults" else every_option()
    objects = render_chart(CHART, release="keychain", namespace="keychain-system", values=values)
    kinds = sorted({o["kind"] for o in objects})
    expected = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "ServiceAccount"}
    assert expected <= set(kinds), kinds
    for manifest in objects:
        if manifest["kind"] == "Chain":  # a custom resource: its schema is the chart's own CRD
            jsonschema.validate(manifest["spec"], chain_schema(objects)["properties"]["spec"])
        else:
            kubernetes_validate.validate(manifest, version, strict=True)
    if options == "every-option":
        assert {"Chain", "Role", "RoleBinding"} <= set(kinds)


def test_strict_validation_of_the_render_would_catch_a_misspelt_field():
    objects = render_chart(CHART, release="keychain", namespace="keychain-system")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    "path, key",
    [((), "rbca"), (("image",), "tags"), (("operator",), "watchNamespace"), (("crds",), "instal"),
     (("certManager",), "enable")],
)
def test_the_values_schema_rejects_unknown_keys_at_every_level(path, key):
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = default_values()
    jsonschema.validate(values, schema)
    node = values
    for part in path:
        node = node[part]
    node[key] = True
    with pytest.raises(jsonschema.ValidationError, match="Additional properties are not allowed"):
        jsonschema.validate(values, schema)
