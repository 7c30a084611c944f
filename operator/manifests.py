"""Comparing rendered manifests with live objects, and the patch that reconciles them.

Create-or-patch instead of server-side apply: the patch is a JSON merge patch of only the
fields the operator renders, and it is sent only when the live object does not already
contain them, so a second reconcile of an unchanged Chain writes nothing at all.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Manifest = dict[str, Any]

# Fields the API server refuses to change after creation; they are rendered for creation only.
IMMUTABLE_SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    "StatefulSet": ("selector", "serviceName", "podManagementPolicy", "volumeClaimTemplates"),
    "Deployment": ("selector",),
    "Service": ("clusterIP",),
}


def contains(live: Any, desired: Any) -> bool:
    """Whether `live` already holds everything in `desired` (the server may have added more).

    Lists must have the same length and match item by item: the API server adds defaults
    inside list items, never items.
    """
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return live == desired


def mutable_part(manifest: Manifest) -> Manifest:
    """The part of a rendered manifest that may be patched onto an existing object."""
    result = copy.deepcopy(manifest)
    spec = result.get("spec")
    if isinstance(spec, dict):
        for name in IMMUTABLE_SPEC_FIELDS.get(result["kind"], ()):
            spec.pop(name, None)
    return result


def patch_for(manifest: Manifest, live: Mapping[str, Any]) -> Manifest | None:
    """The merge patch that brings `live` to the rendered `manifest`, or None if none is needed."""
    wanted = mutable_part(manifest)
    wanted["metadata"] = {k: v for k, v in wanted["metadata"].items() if k not in ("name", "namespace")}
    return None if contains(live, wanted) else wanted
