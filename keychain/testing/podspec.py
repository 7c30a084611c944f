"""What a kubelet makes of a container spec: its environment and its command line.

    argv, env = expand_container(container, configmaps, pod)

`configmaps` maps a ConfigMap's name to its `data`; `pod` is the Pod object (a dict with at least
`metadata`; `spec` and `status` for the field paths that read them). The rules are the kubelet's:

- The environment is built from `envFrom` first (in order; a later source wins; keys that are not
  valid variable names are skipped, a `prefix` is prepended), then `env` (in order; it overrides
  `envFrom`). An `env` value may reference variables defined before it as `$(VAR)`.
- `valueFrom` reads the downward API (`fieldRef`: metadata.name, metadata.namespace, metadata.uid,
  metadata.labels['k'], metadata.annotations['k'], spec.nodeName, spec.serviceAccountName,
  status.podIP, status.podIPs, status.hostIP), a ConfigMap key or a Secret key.
- `command` and `args` have `$(VAR)` replaced from that environment; `$$` is a literal `$`; a
  reference to an unknown variable is left as written.
- A missing ConfigMap, Secret or key that is not `optional` is an error: the kubelet does not start
  the container (CreateContainerConfigError), and neither does this.

Written by hand because no library implements the kubelet's expansion outside Kubernetes itself.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any

# A C identifier-ish name is what a shell can use; the kubelet accepts any of these characters.
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerConfigError(ValueError):
    """The container cannot start: a reference to a missing ConfigMap, Secret, key or field."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Replace `$(VAR)` in `text` as the kubelet does: `$$` escapes, unknown references stay."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            end = text.find(")", i + 2)
            if end < 0:  # an unterminated reference is kept as written
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """The value of a downward API `fieldRef.fieldPath` for `pod`."""
    meta = pod.get("metadata") or {}
    labelled = _LABEL_PATH.match(path)
    if labelled:
        return str((meta.get(labelled.group(1)) or {}).get(labelled.group(2), ""))
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": ",".join(p.get("ip", "") for p in status.get("podIPs") or []) or status.get("podIP"),
    }
    if path not in simple:
        raise ContainerConfigError(f"unsupported fieldPath {path!r}")
    value = simple[path]
    if value is None:
        raise ContainerConfigError(f"the pod has no {path}")
    return str(value)


def environment(
    container: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
    pod: Mapping[str, Any],
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """The container's environment: `envFrom`, then `env` (each value expanded as it is added).

    `secrets` maps a Secret's name to its `data`, base64-encoded as in the API."""
    secrets = secrets or {}
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        data = _source_data(source, configmaps, secrets)
        for key, value in (data or {}).items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" in var:
            value = _value_from(var["valueFrom"], configmaps, secrets, pod)
            if value is None:  # an optional key that is absent: the variable is not set
                continue
            env[name] = value
        else:
            env[name] = expand(var.get("value", ""), env)
    return env


def expand_container(
    container: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
    pod: Mapping[str, Any],
    *,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    image_entrypoint: Sequence[str] = (),
    image_cmd: Sequence[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of the process the kubelet would start for `container` in `pod`.

    Without `command` the image's entrypoint runs; without `args` and `command`, the image's CMD."""
    env = environment(container, configmaps, pod, secrets)
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = [*command, *(args or [])]
    else:
        argv = [*image_entrypoint, *(args if args is not None else image_cmd)]
    return [expand(part, env) for part in argv], env


def _source_data(
    source: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
) -> Mapping[str, str] | None:
    if "configMapRef" in source:
        ref = source["configMapRef"]
        data = configmaps.get(ref["name"])
        what = "ConfigMap"
    elif "secretRef" in source:
        ref = source["secretRef"]
        encoded = secrets.get(ref["name"])
        data = None if encoded is None else {k: _decode(v) for k, v in encoded.items()}
        what = "Secret"
    else:
        raise ContainerConfigError(f"unsupported envFrom source {sorted(source)}")
    if data is None and not ref.get("optional", False):
        raise ContainerConfigError(f"{what} {ref['name']!r} not found")
    return data


def _value_from(
    source: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
    pod: Mapping[str, Any],
) -> str | None:
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    for kind, store, decode in (("configMapKeyRef", configmaps, False), ("secretKeyRef", secrets, True)):
        if kind in source:
            ref = source[kind]
            data = store.get(ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional", False):
                    return None
                raise ContainerConfigError(f"{kind} {ref['name']}/{ref['key']} not found")
            value = data[ref["key"]]
            return _decode(value) if decode else value
    raise ContainerConfigError(f"unsupported valueFrom {sorted(source)}")


def _decode(value: str) -> str:
    return base64.b64decode(value).decode()
