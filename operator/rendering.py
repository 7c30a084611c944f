"""Pure rendering: one Chain in, the Kubernetes objects that run it out.

`render(spec, node_set)` returns plain dicts in the order they should be applied. It does
no I/O; the reconciler decides the node StatefulSet's replicas and partition (the stepped,
health-gated values) and passes them in as `node_set`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keychain.operator import commands
from keychain.operator.certificates import CERT_VALIDITY, RENEW_AT, secret_name, wanted_certificates
from keychain.operator.naming import (
    AUTH_DIR,
    AUTH_TOKEN_FILE,
    CONFIG_HASH_ANNOTATION,
    COORDINATOR,
    COORDINATOR_GRPC_PORT,
    COORDINATOR_HTTP_PORT,
    DATA_DIR,
    DATA_VOLUME,
    METRICS_PATH,
    NODE,
    NODE_GRPC_PORT,
    NODE_METRICS_PORT,
    PROXY,
    PROXY_GRPC_PORT,
    PROXY_HTTP_PORT,
    TLS_DIR,
    Names,
    chain_selector,
    labels,
    names_of,
    owner_reference,
    selector_labels,
)
from keychain.operator.spec import ChainSpec, Storage

from keychain.access import OPERATOR

Manifest = dict[str, Any]

# The image's non-root user (see the Dockerfile).
RUN_AS_USER = 10001
TMP_VOLUME = "tmp"
METRICS_PORT_NAME = "metrics"
AUTH_VOLUME = "auth"
TLS_VOLUME = "tls"
# Secret files readable by the pod's user and group only (the key among them).
TLS_FILE_MODE = 0o440
CERT_MANAGER_API_VERSION = "cert-manager.io/v1"


@dataclass(frozen=True)
class CoordinatorShape:
    """The coordinator StatefulSet's replicas chosen for this step, and the Raft cluster's initial size."""

    replicas: int
    initial: int


@dataclass(frozen=True)
class NodeSetShape:
    """The node StatefulSet's replicas and rolling-update partition chosen for this step."""

    replicas: int
    partition: int = 0


def render(
    spec: ChainSpec,
    node_set: NodeSetShape | None = None,
    coordinators: CoordinatorShape | None = None,
    *,
    scrape_annotations: bool = False,
    operator_peer: Mapping[str, Any] | None = None,
) -> list[Manifest]:
    """Every object of the Chain, in apply order (config first, optional objects last).

    Without shapes, the spec's sizes (a new Chain). `scrape_annotations` marks the node pods for
    Prometheus' annotation-based pod discovery (prometheus.io/scrape, port, path). `operator_peer`
    is the NetworkPolicy peer that selects the operator's pod (None: the operator reaches the
    Chain from outside the cluster network, e.g. through a port-forward)."""
    names = names_of(spec)
    shape = node_set or NodeSetShape(spec.replicas)
    coordinator_shape = coordinators or CoordinatorShape(spec.coordinator.replicas, spec.coordinator.replicas)
    config = render_config_map(spec, names, coordinator_shape.initial)
    config_hash = _hash(config["data"])
    objects: list[Manifest] = []
    if spec.tls.issuer_ref is not None:
        objects += render_certificates(spec, names)
    objects += [
        config,
        render_coordinator_service(spec, names),
        render_coordinator_statefulset(spec, names, coordinator_shape, config_hash),
        render_node_service(spec, names),
        render_node_statefulset(spec, names, shape, config_hash, scrape_annotations=scrape_annotations),
        render_proxy_service(spec, names),
        render_proxy_deployment(spec, names, config_hash),
        *render_network_policies(spec, names, operator_peer),
    ]
    if spec.proxy.ingress.enabled:
        objects.append(render_ingress(spec, names))
    objects += render_disruption_budgets(spec, names)
    return objects


def optional_objects(names: Names) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of objects rendered only for some specs; the rest are pruned."""
    return [
        ("networking.k8s.io/v1", "Ingress", names.ingress),
        ("policy/v1", "PodDisruptionBudget", names.coordinator),
        ("policy/v1", "PodDisruptionBudget", names.nodes),
        ("policy/v1", "PodDisruptionBudget", names.proxy),
    ]


def render_config_map(spec: ChainSpec, names: Names, initial_coordinators: int) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(spec, names.config_map, None),
        "data": commands.config_data(names, initial_coordinators, spec.read_consistency),
    }


def render_coordinator_service(spec: ChainSpec, names: Names) -> Manifest:
    return _headless_service(
        spec,
        names.coordinator,
        COORDINATOR,
        [_service_port("grpc", COORDINATOR_GRPC_PORT), _service_port("http", COORDINATOR_HTTP_PORT)],
    )


def render_node_service(spec: ChainSpec, names: Names) -> Manifest:
    return _headless_service(
        spec, names.nodes, NODE, [_service_port("grpc", NODE_GRPC_PORT), _service_port(METRICS_PORT_NAME, NODE_METRICS_PORT)]
    )


def render_coordinator_statefulset(
    spec: ChainSpec, names: Names, shape: CoordinatorShape, config_hash: str
) -> Manifest:
    container = _container(
        spec,
        COORDINATOR,
        commands.coordinator_args(names, spec.tls.enabled),
        ports=[("grpc", COORDINATOR_GRPC_PORT), ("http", COORDINATOR_HTTP_PORT)],
        resources=spec.coordinator.resources,
        probes={
            "startupProbe": {**_http_probe("/healthz", "http", https=spec.tls.enabled), "failureThreshold": 30},
            "livenessProbe": {**_http_probe("/healthz", "http", https=spec.tls.enabled), "failureThreshold": 3},
            "readinessProbe": _http_probe("/healthz", "http", https=spec.tls.enabled),
        },
        mounts=[{"name": DATA_VOLUME, "mountPath": DATA_DIR}, *_tls_mounts(spec)],
    )
    volumes = _tls_volumes(spec, names, COORDINATOR)
    pod = _pod_spec(spec, names.coordinator, COORDINATOR, [container], volumes, spreads=None)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(spec, names.coordinator, COORDINATOR),
        "spec": {
            "replicas": shape.replicas,
            "serviceName": names.coordinator,
            # Raft members must all start to elect a leader; none waits for another.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(spec.name, COORDINATOR)},
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": _retention(spec.storage),
            "template": _template(spec, COORDINATOR, pod, config_hash),
            "volumeClaimTemplates": [_claim_template(spec, COORDINATOR, spec.coordinator.storage)],
        },
    }


def render_node_statefulset(
    spec: ChainSpec, names: Names, shape: NodeSetShape, config_hash: str, *, scrape_annotations: bool = False
) -> Manifest:
    container = _container(
        spec,
        NODE,
        commands.node_args(names, spec.tls.enabled),
        ports=[("grpc", NODE_GRPC_PORT), (METRICS_PORT_NAME, NODE_METRICS_PORT)],
        resources=spec.resources,
        probes=_node_probes(spec.tls.enabled),
        mounts=[{"name": DATA_VOLUME, "mountPath": DATA_DIR}, *_tls_mounts(spec)],
    )
    volumes = _tls_volumes(spec, names, NODE)
    pod = _pod_spec(spec, names.nodes, NODE, [container], volumes, spreads=spec.topology_spread_constraints)
    if spec.affinity:
        pod["affinity"] = spec.affinity
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(spec, names.nodes, NODE),
        "spec": {
            "replicas": shape.replicas,
            "serviceName": names.nodes,
            # Ordinals come and go one at a time, highest first, as the chain's tail does.
            "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": selector_labels(spec.name, NODE)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": shape.partition}},
            "persistentVolumeClaimRetentionPolicy": _retention(spec.storage),
            "template": _template(spec, NODE, pod, config_hash, _scrape(scrape_annotations)),
            "volumeClaimTemplates": [_claim_template(spec, NODE, spec.storage)],
        },
    }


def render_proxy_deployment(spec: ChainSpec, names: Names, config_hash: str) -> Manifest:
    token_file = None
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if spec.auth_token:
        token_file = AUTH_TOKEN_FILE
        volumes.append(
            {
                "name": AUTH_VOLUME,
                "secret": {
                    "secretName": spec.auth_token.name,
                    "items": [{"key": spec.auth_token.key, "path": "token"}],
                },
            }
        )
        mounts.append({"name": AUTH_VOLUME, "mountPath": AUTH_DIR, "readOnly": True})
    container = _container(
        spec,
        PROXY,
        commands.proxy_args(token_file, spec.tls.enabled),
        ports=[("http", PROXY_HTTP_PORT), ("grpc", PROXY_GRPC_PORT)],
        resources=spec.proxy.resources,
        probes={
            "livenessProbe": _http_probe("/healthz", "http"),
            "readinessProbe": _http_probe("/readyz", "http"),
        },
        mounts=[*mounts, *_tls_mounts(spec)],
    )
    volumes += _tls_volumes(spec, names, PROXY)
    pod = _pod_spec(spec, names.proxy, PROXY, [container], volumes, spreads=None)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, names.proxy, PROXY),
        "spec": {
            "replicas": spec.proxy.replicas,
            "selector": {"matchLabels": selector_labels(spec.name, PROXY)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": _template(spec, PROXY, pod, config_hash),
        },
    }


def render_proxy_service(spec: ChainSpec, names: Names) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, names.proxy, PROXY),
        "spec": {
            "type": spec.proxy.service_type,
            "selector": selector_labels(spec.name, PROXY),
            "ports": [_service_port("http", PROXY_HTTP_PORT), _service_port("grpc", PROXY_GRPC_PORT)],
        },
    }


def render_ingress(spec: ChainSpec, names: Names) -> Manifest:
    ingress = spec.proxy.ingress
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": names.proxy, "port": {"name": "http"}}},
                }
            ]
        }
    }
    if ingress.host:
        rule["host"] = ingress.host
    body: dict[str, Any] = {"rules": [rule]}
    if ingress.class_name:
        body["ingressClassName"] = ingress.class_name
    if ingress.tls_secret_name and ingress.host:
        body["tls"] = [{"hosts": [ingress.host], "secretName": ingress.tls_secret_name}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(spec, names.ingress, PROXY),
        "spec": body,
    }


def render_disruption_budgets(spec: ChainSpec, names: Names) -> list[Manifest]:
    """At most one pod of each component away at a time; none for a single replica."""
    if not spec.pdb_enabled:
        return []
    sized = [
        (names.coordinator, COORDINATOR, spec.coordinator.replicas),
        (names.nodes, NODE, spec.replicas),
        (names.proxy, PROXY, spec.proxy.replicas),
    ]
    return [
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _metadata(spec, name, component),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": selector_labels(spec.name, component)},
                # A crash-looping pod must not block draining a node.
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        }
        for name, component, replicas in sized
        if replicas > 1
    ]


def _metadata(spec: ChainSpec, name: str, component: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": spec.namespace,
        "labels": labels(spec.name, component),
        "ownerReferences": [owner_reference(spec)],
    }


def _headless_service(spec: ChainSpec, name: str, component: str, ports: list[dict[str, Any]]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, name, component),
        "spec": {
            "clusterIP": "None",
            # Peers must find each other (and a syncing node its predecessor) before they are ready.
            "publishNotReadyAddresses": True,
            "selector": selector_labels(spec.name, component),
            "ports": ports,
        },
    }


def _service_port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}


def _http_probe(path: str, port: str, *, https: bool = False) -> dict[str, Any]:
    get: dict[str, Any] = {"path": path, "port": port}
    if https:
        get["scheme"] = "HTTPS"
    return {"httpGet": get, "periodSeconds": 5, "timeoutSeconds": 2}


def _node_probes(tls: bool) -> dict[str, Any]:
    # The kubelet's gRPC probe speaks plaintext only; under mutual TLS it checks the port accepts.
    check = {"tcpSocket": {"port": NODE_GRPC_PORT}} if tls else {"grpc": {"port": NODE_GRPC_PORT}}
    return {
        # A joining node may spend a while on its state transfer before it serves.
        "startupProbe": {**check, "periodSeconds": 5, "failureThreshold": 120},
        "livenessProbe": {**check, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {**check, "periodSeconds": 5},
    }


def _tls_mounts(spec: ChainSpec) -> list[dict[str, Any]]:
    return [{"name": TLS_VOLUME, "mountPath": TLS_DIR, "readOnly": True}] if spec.tls.enabled else []


def _tls_volumes(spec: ChainSpec, names: Names, component: str) -> list[dict[str, Any]]:
    """The component's certificate Secret, mounted whole (no subPath): the kubelet then rewrites the
    files when the Secret changes, and the component reloads them."""
    if not spec.tls.enabled:
        return []
    secret = {"secretName": secret_name(names, component), "defaultMode": TLS_FILE_MODE}
    return [{"name": TLS_VOLUME, "secret": secret}]


def render_certificates(spec: ChainSpec, names: Names) -> list[Manifest]:
    """cert-manager Certificates, one per component kind, writing the Secrets the pods mount (the same
    names and keys as when the operator issues them), renewed by cert-manager at two thirds of their life."""
    issuer = spec.tls.issuer_ref
    assert issuer is not None
    lifetime_hours = int(CERT_VALIDITY.total_seconds() // 3600)
    objects = []
    for kind, want in wanted_certificates(names).items():
        body: dict[str, Any] = {
            "secretName": secret_name(names, kind),
            "commonName": want.identity.name,
            "uris": [want.identity.uri],
            "duration": f"{lifetime_hours}h",
            "renewBefore": f"{int(lifetime_hours * (1 - RENEW_AT))}h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
            "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer.group},
        }
        if want.hosts:
            body["dnsNames"] = list(want.hosts)
        objects.append({
            "apiVersion": CERT_MANAGER_API_VERSION,
            "kind": "Certificate",
            "metadata": _metadata(spec, secret_name(names, kind), None if kind == OPERATOR else kind),
            "spec": body,
        })
    return objects


def render_network_policies(spec: ChainSpec, names: Names, operator_peer: Mapping[str, Any] | None) -> list[Manifest]:
    """Node and coordinator ports open only to the Chain's own pods and the operator (node metrics to
    any scraper); the proxy's ports to anyone, or to `spec.proxy.allowFrom`."""
    chain_pods: dict[str, Any] = {"podSelector": {"matchLabels": chain_selector(spec.name)}}
    internal = [chain_pods, *([dict(operator_peer)] if operator_peer else [])]

    def policy(name: str, component: str, rules: list[dict[str, Any]]) -> Manifest:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _metadata(spec, name, component),
            "spec": {"podSelector": {"matchLabels": selector_labels(spec.name, component)},
                     "policyTypes": ["Ingress"], "ingress": rules},
        }  # fmt: skip

    proxy_rule: dict[str, Any] = {"ports": _policy_ports(PROXY_HTTP_PORT, PROXY_GRPC_PORT)}
    if spec.proxy.allow_from:
        proxy_rule["from"] = [dict(peer) for peer in spec.proxy.allow_from]
    return [
        policy(names.coordinator, COORDINATOR,
               [{"from": internal, "ports": _policy_ports(COORDINATOR_GRPC_PORT, COORDINATOR_HTTP_PORT)}]),
        policy(names.nodes, NODE, [{"from": internal, "ports": _policy_ports(NODE_GRPC_PORT)},
                                   {"ports": _policy_ports(NODE_METRICS_PORT)}]),
        policy(names.proxy, PROXY, [proxy_rule]),
    ]  # fmt: skip


def _policy_ports(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _container(
    spec: ChainSpec,
    component: str,
    args: list[str],
    *,
    ports: list[tuple[str, int]],
    resources: dict[str, Any],
    probes: dict[str, Any],
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": component,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": [commands.ENTRYPOINT],
        "args": args,
        "env": [{"name": commands.POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "envFrom": [{"configMapRef": {"name": names_of(spec).config_map}}],
        "ports": [{"name": name, "containerPort": port, "protocol": "TCP"} for name, port in ports],
        **probes,
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}, *mounts],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if resources:
        container["resources"] = resources
    return container


def _pod_spec(
    spec: ChainSpec,
    name: str,
    component: str,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    *,
    spreads: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 30,
        "containers": containers,
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}, *volumes],
        # Replicas of one component are worth little on one machine; spread them if possible.
        "topologySpreadConstraints": spreads
        or [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(spec.name, component)},
            }
        ],
    }
    if spec.node_selector:
        pod["nodeSelector"] = spec.node_selector
    if spec.tolerations:
        pod["tolerations"] = spec.tolerations
    return pod


def _template(
    spec: ChainSpec, component: str, pod: dict[str, Any], config_hash: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "labels": labels(spec.name, component),
            "annotations": {CONFIG_HASH_ANNOTATION: config_hash, **(annotations or {})},
        },
        "spec": pod,
    }


def _scrape(enabled: bool) -> dict[str, str]:
    """The annotations Prometheus' kubernetes_sd pod discovery conventionally keys on."""
    if not enabled:
        return {}
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(NODE_METRICS_PORT),
            "prometheus.io/path": METRICS_PATH}  # fmt: skip


def _claim_template(spec: ChainSpec, component: str, storage: Storage) -> dict[str, Any]:
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name:
        claim["storageClassName"] = storage.storage_class_name
    return {
        "metadata": {"name": DATA_VOLUME, "labels": labels(spec.name, component)},
        "spec": claim,
    }


def _retention(storage: Storage) -> dict[str, str]:
    # Claims outlive the Chain unless asked otherwise; a scaled-away node's claim is kept so
    # scaling out again reuses its data for an incremental catch-up.
    return {"whenDeleted": "Delete" if storage.delete_on_chain_deletion else "Retain", "whenScaled": "Retain"}


def _hash(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
