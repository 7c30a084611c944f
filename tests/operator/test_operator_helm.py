"""The Helm chart, linted by the real Helm engine; its values schema refuses unknown keys."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import helm_sdkpy
import jsonschema
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "keychain"
INFO, WARNING, ERROR = 1, 2, 3  # Helm's lint severities


def lint(chart: Path) -> list[dict[str, Any]]:
    result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(str(chart)))
    return [m for m in result.get("Messages") or [] if m["Severity"] >= WARNING]


def chart_with_values(tmp_path: Path, values: dict[str, Any]) -> Path:
    copy = tmp_path / "keychain"
    shutil.copytree(CHART, copy)
    (copy / "values.yaml").write_text(yaml.safe_dump(values))
    return copy


def default_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_the_chart_lints_clean():
    assert lint(CHART) == []


def test_the_chart_lints_clean_when_watching_namespaces_with_an_example_chain(tmp_path):
    values = default_values()
    values["operator"]["watchNamespaces"] = ["team-a", "team-b"]
    values["operator"]["verbose"] = True
    values["exampleChain"].update(enabled=True, ingress={"enabled": True, "host": "kv.localhost", "className": ""})
    values["crds"]["install"] = False
    assert lint(chart_with_values(tmp_path, values)) == []


def test_a_misspelt_value_fails_the_lint(tmp_path):
    values = default_values()
    values["operator"]["intervall"] = values["operator"].pop("interval")
    problems = lint(chart_with_values(tmp_path, values))
    assert (ERROR, "values.yaml") in [(p["Severity"], p["Path"]) for p in problems]


@pytest.mark.parametrize(
    "path, key",
    [((), "rbca"), (("image",), "tags"), (("operator",), "watchNamespace"), (("crds",), "instal")],
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
