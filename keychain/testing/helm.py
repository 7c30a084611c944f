"""Render and lint a Helm chart with Helm's own engine (the Helm Go SDK, loaded as a library).

    objects = render_chart(CHART, release="keychain", namespace="keychain-system", values={...})

`render_chart` is what `helm template` prints, as objects: every manifest of every template,
in template order, empty documents dropped. `values` are user-supplied values merged over the
chart's values.yaml and checked against its values.schema.json, as `helm install` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python
import yaml

HelmError = helm_python.HelmError

# Helm's lint severities; findings at WARNING or worse are problems.
INFO, WARNING, ERROR = 1, 2, 3


def render_chart(
    chart_dir: str | os.PathLike[str],
    *,
    release: str,
    namespace: str,
    values: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every object the chart renders for an install of `release` into `namespace`.

    Raises HelmError (HelmValuesError for values its schema refuses, HelmRenderError for a
    template that fails)."""
    with helm_python.Chart.load(Path(chart_dir)) as chart:
        chart.validate_schema(_merged(chart.values, dict(values or {})))
        rendered = chart.render(dict(values or {}), name=release, namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    for path in sorted(rendered, key=_template_order):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt and the like are text for the user, not objects
        objects += [doc for doc in yaml.safe_load_all(rendered[path]) if doc]
    return objects


def lint_chart(
    chart_dir: str | os.PathLike[str],
    values: Mapping[str, Any] | None = None,
    *,
    kube_version: str | None = None,
) -> list[dict[str, Any]]:
    """Helm lint's findings at WARNING or worse, each {"severity", "path", "error"}."""
    report = helm_python.lint(Path(chart_dir), dict(values) if values is not None else None,
                              kube_version=kube_version)
    return [m for m in report.get("messages") or [] if m["severity"] >= WARNING]


def _template_order(path: str) -> tuple[int, str]:
    # CRDs first, as Helm installs them: a Chain in the same release needs its kind to exist.
    return (0 if "crd" in Path(path).name else 1, path)


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result
