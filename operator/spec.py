"""The `Chain` custom resource read into typed, defaulted values.

The API server applies the CRD's defaults and validations before the operator sees an
object, but the operator must not depend on that (objects created before a CRD upgrade,
emulated API servers in tests), so the same defaults live here and a test checks that
both agree. Bad input raises `ChainSpecError` with the offending field's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP = "keychain.dev"
VERSION = "v1alpha1"
PLURAL = "chains"
KIND = "Chain"
API_VERSION = f"{GROUP}/{VERSION}"

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
READ_CONSISTENCIES = ("strong", "eventual")
COORDINATOR_SIZES = (1, 3, 5)

DEFAULT_REPLICAS = 3
DEFAULT_PULL_POLICY = "IfNotPresent"
DEFAULT_NODE_STORAGE = "1Gi"
DEFAULT_COORDINATOR_REPLICAS = 3
DEFAULT_COORDINATOR_STORAGE = "256Mi"
DEFAULT_PROXY_REPLICAS = 2
DEFAULT_SERVICE_TYPE = "ClusterIP"
DEFAULT_READ_CONSISTENCY = "strong"
DEFAULT_TOKEN_KEY = "token"
CERT_MANAGER_GROUP = "cert-manager.io"
ISSUER_KINDS = ("Issuer", "ClusterIssuer")
DEFAULT_ISSUER_KIND = "Issuer"
PEER_FIELDS = ("podSelector", "namespaceSelector", "ipBlock")
# Chain names are embedded in StatefulSet names, whose pods carry a
# `controller-revision-hash` label of `<statefulset>-<10 chars>` that must fit in 63.
MAX_NAME_LENGTH = 40


class ChainSpecError(ValueError):
    """A Chain's spec cannot be turned into a cluster; the message names the field."""


@dataclass(frozen=True)
class Storage:
    size: str
    storage_class_name: str | None = None
    delete_on_chain_deletion: bool = False


@dataclass(frozen=True)
class Ingress:
    enabled: bool = False
    host: str | None = None
    class_name: str | None = None
    tls_secret_name: str | None = None


@dataclass(frozen=True)
class Coordinator:
    replicas: int = DEFAULT_COORDINATOR_REPLICAS
    resources: dict[str, Any] = field(default_factory=dict)
    storage: Storage = field(default_factory=lambda: Storage(DEFAULT_COORDINATOR_STORAGE))


@dataclass(frozen=True)
class Proxy:
    replicas: int = DEFAULT_PROXY_REPLICAS
    resources: dict[str, Any] = field(default_factory=dict)
    service_type: str = DEFAULT_SERVICE_TYPE
    ingress: Ingress = field(default_factory=Ingress)
    # NetworkPolicy peers that may reach the proxy's ports; empty: any source.
    allow_from: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class IssuerRef:
    """A cert-manager issuer that signs the Chain's certificates instead of the operator."""

    name: str
    kind: str = DEFAULT_ISSUER_KIND
    group: str = CERT_MANAGER_GROUP


@dataclass(frozen=True)
class Tls:
    enabled: bool = True
    issuer_ref: IssuerRef | None = None


@dataclass(frozen=True)
class TokenSecretRef:
    name: str
    key: str = DEFAULT_TOKEN_KEY


@dataclass(frozen=True)
class ChainSpec:
    """One Chain: its identity (name, namespace, uid) and its defaulted spec."""

    name: str
    namespace: str
    uid: str
    generation: int | None
    image: str
    replicas: int = DEFAULT_REPLICAS
    image_pull_policy: str = DEFAULT_PULL_POLICY
    storage: Storage = field(default_factory=lambda: Storage(DEFAULT_NODE_STORAGE))
    resources: dict[str, Any] = field(default_factory=dict)
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    topology_spread_constraints: list[dict[str, Any]] = field(default_factory=list)
    coordinator: Coordinator = field(default_factory=Coordinator)
    proxy: Proxy = field(default_factory=Proxy)
    read_consistency: str = DEFAULT_READ_CONSISTENCY
    auth_token: TokenSecretRef | None = None
    pdb_enabled: bool = True
    tls: Tls = field(default_factory=Tls)

    @classmethod
    def from_resource(cls, body: Mapping[str, Any], *, default_image: str) -> ChainSpec:
        """Read a Chain object (as the API returns it) into a ChainSpec."""
        meta = _mapping(body.get("metadata"), "metadata")
        name = _required_str(meta, "name", "metadata")
        if len(name) > MAX_NAME_LENGTH:
            raise ChainSpecError(f"metadata.name: at most {MAX_NAME_LENGTH} characters, got {len(name)}")
        namespace = _required_str(meta, "namespace", "metadata")
        uid = _required_str(meta, "uid", "metadata")
        generation = meta.get("generation")
        spec = _mapping(body.get("spec", {}), "spec")

        image = _optional_str(spec, "image", "spec") or default_image
        if not image:
            raise ChainSpecError("spec.image: required (no default image is configured)")
        coordinator = _mapping(spec.get("coordinator", {}), "spec.coordinator")
        proxy = _mapping(spec.get("proxy", {}), "spec.proxy")
        ingress = _mapping(proxy.get("ingress", {}), "spec.proxy.ingress")
        auth = _mapping(spec.get("auth", {}), "spec.auth")
        pdb = _mapping(spec.get("pdb", {}), "spec.pdb")
        tls = _mapping(spec.get("tls", {}), "spec.tls")

        ingress_spec = Ingress(
            enabled=_bool(ingress, "enabled", "spec.proxy.ingress", False),
            host=_optional_str(ingress, "host", "spec.proxy.ingress"),
            class_name=_optional_str(ingress, "className", "spec.proxy.ingress"),
            tls_secret_name=_optional_str(ingress, "tlsSecretName", "spec.proxy.ingress"),
        )
        if ingress_spec.tls_secret_name and not ingress_spec.host:
            raise ChainSpecError("spec.proxy.ingress.host: required when tlsSecretName is set")

        token_ref = None
        if "tokenSecretRef" in auth:
            ref = _mapping(auth["tokenSecretRef"], "spec.auth.tokenSecretRef")
            token_ref = TokenSecretRef(
                name=_required_str(ref, "name", "spec.auth.tokenSecretRef"),
                key=_optional_str(ref, "key", "spec.auth.tokenSecretRef") or DEFAULT_TOKEN_KEY,
            )

        coordinator_replicas = _int(coordinator, "replicas", "spec.coordinator", DEFAULT_COORDINATOR_REPLICAS)
        if coordinator_replicas not in COORDINATOR_SIZES:
            raise ChainSpecError(f"spec.coordinator.replicas: must be 1, 3 or 5, got {coordinator_replicas}")

        return cls(
            name=name,
            namespace=namespace,
            uid=uid,
            generation=generation if isinstance(generation, int) else None,
            image=image,
            replicas=_int(spec, "replicas", "spec", DEFAULT_REPLICAS, minimum=1),
            image_pull_policy=_choice(spec, "imagePullPolicy", "spec", PULL_POLICIES, DEFAULT_PULL_POLICY),
            storage=_storage(spec.get("storage", {}), "spec.storage", DEFAULT_NODE_STORAGE, deletable=True),
            resources=dict(_mapping(spec.get("resources", {}), "spec.resources")),
            affinity=dict(_mapping(spec["affinity"], "spec.affinity")) if spec.get("affinity") else None,
            tolerations=_list_of_mappings(spec, "tolerations", "spec"),
            node_selector={
                str(k): str(v) for k, v in _mapping(spec.get("nodeSelector", {}), "spec.nodeSelector").items()
            },
            topology_spread_constraints=_list_of_mappings(spec, "topologySpreadConstraints", "spec"),
            coordinator=Coordinator(
                replicas=coordinator_replicas,
                resources=dict(_mapping(coordinator.get("resources", {}), "spec.coordinator.resources")),
                storage=_storage(
                    coordinator.get("storage", {}), "spec.coordinator.storage", DEFAULT_COORDINATOR_STORAGE
                ),
            ),
            proxy=Proxy(
                replicas=_int(proxy, "replicas", "spec.proxy", DEFAULT_PROXY_REPLICAS, minimum=1),
                resources=dict(_mapping(proxy.get("resources", {}), "spec.proxy.resources")),
                service_type=_choice(proxy, "serviceType", "spec.proxy", SERVICE_TYPES, DEFAULT_SERVICE_TYPE),
                ingress=ingress_spec,
                allow_from=_peers(proxy, "allowFrom", "spec.proxy"),
            ),
            read_consistency=_choice(
                spec, "readConsistency", "spec", READ_CONSISTENCIES, DEFAULT_READ_CONSISTENCY
            ),
            auth_token=token_ref,
            pdb_enabled=_bool(pdb, "enabled", "spec.pdb", True),
            tls=_tls(tls),
        )


def _tls(tls: Mapping[str, Any]) -> Tls:
    issuer = None
    if tls.get("issuerRef") is not None:
        ref = _mapping(tls["issuerRef"], "spec.tls.issuerRef")
        issuer = IssuerRef(
            name=_required_str(ref, "name", "spec.tls.issuerRef"),
            kind=_choice(ref, "kind", "spec.tls.issuerRef", ISSUER_KINDS, DEFAULT_ISSUER_KIND),
            group=_optional_str(ref, "group", "spec.tls.issuerRef") or CERT_MANAGER_GROUP,
        )
    enabled = _bool(tls, "enabled", "spec.tls", True)
    if issuer is not None and not enabled:
        raise ChainSpecError("spec.tls.issuerRef: set only when spec.tls.enabled is true")
    return Tls(enabled=enabled, issuer_ref=issuer)


def _peers(data: Mapping[str, Any], key: str, path: str) -> list[dict[str, Any]]:
    """NetworkPolicy peers: each names at least one of podSelector, namespaceSelector, ipBlock."""
    peers = _list_of_mappings(data, key, path)
    for i, peer in enumerate(peers):
        unknown = set(peer) - set(PEER_FIELDS)
        if unknown or not peer:
            raise ChainSpecError(f"{path}.{key}[{i}]: a peer has podSelector, namespaceSelector or ipBlock")
    return peers


def _storage(raw: Any, path: str, default_size: str, *, deletable: bool = False) -> Storage:
    data = _mapping(raw, path)
    # Imported here: the kubernetes package is slow to import and only this check needs it.
    from kubernetes.utils import parse_quantity

    size = _optional_str(data, "size", path) or default_size
    try:
        if parse_quantity(size) <= 0:
            raise ValueError("not positive")
    except ValueError as exc:
        raise ChainSpecError(f"{path}.size: not a positive quantity: {size!r}") from exc
    return Storage(
        size=size,
        storage_class_name=_optional_str(data, "storageClassName", path),
        delete_on_chain_deletion=_bool(data, "deleteOnChainDeletion", path, False) if deletable else False,
    )


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ChainSpecError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _required_str(data: Mapping[str, Any], key: str, path: str) -> str:
    value = _optional_str(data, key, path)
    if not value:
        raise ChainSpecError(f"{path}.{key}: required")
    return value


def _optional_str(data: Mapping[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ChainSpecError(f"{path}.{key}: expected a string, got {type(value).__name__}")
    return value


def _int(data: Mapping[str, Any], key: str, path: str, default: int, *, minimum: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChainSpecError(f"{path}.{key}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ChainSpecError(f"{path}.{key}: must be at least {minimum}, got {value}")
    return value


def _bool(data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ChainSpecError(f"{path}.{key}: expected true or false, got {value!r}")
    return value


def _choice(data: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...], default: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise ChainSpecError(f"{path}.{key}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def _list_of_mappings(data: Mapping[str, Any], key: str, path: str) -> list[dict[str, Any]]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise ChainSpecError(f"{path}.{key}: expected a list of objects")
    return [dict(item) for item in value]
