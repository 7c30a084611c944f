"""Names, labels and addresses of everything the operator creates for one Chain.

Every object name and label is derived here and nowhere else, so the renderer, the
reconciler, the status and the tests agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from keychain.operator.spec import API_VERSION, KIND, ChainSpec

APP = "keychain"
PART_OF = "keychaindb"
MANAGED_BY = "keychain-operator"

COORDINATOR = "coordinator"
NODE = "node"
PROXY = "proxy"

COORDINATOR_GRPC_PORT = 7000
COORDINATOR_HTTP_PORT = 7080
NODE_GRPC_PORT = 7100
NODE_METRICS_PORT = 9100  # Prometheus /metrics, the container port named "metrics"
METRICS_PATH = "/metrics"
PROXY_HTTP_PORT = 8080
PROXY_GRPC_PORT = 8081

DATA_VOLUME = "data"
DATA_DIR = "/data"
AUTH_DIR = "/etc/keychain/auth"
AUTH_TOKEN_FILE = f"{AUTH_DIR}/token"
# A component's certificate, key and CA bundle: its Secret mounted whole, so the kubelet's updates reach it
# (under /var/run/secrets, beside the service account's credentials: a path on the pod's own tmpfs).
TLS_DIR = "/var/run/secrets/keychain.dev/tls"
TLS_CERT_FILE = f"{TLS_DIR}/tls.crt"
TLS_KEY_FILE = f"{TLS_DIR}/tls.key"
TLS_CA_FILE = f"{TLS_DIR}/ca.crt"
# Pod templates carry a hash of the rendered ConfigMap so a config change rolls the pods.
CONFIG_HASH_ANNOTATION = "keychain.dev/config-hash"


@dataclass(frozen=True)
class Names:
    """The names of one Chain's objects, e.g. for a Chain `mychain` in `ns`."""

    chain: str
    namespace: str

    @property
    def config_map(self) -> str:
        return f"{self.chain}-config"

    @property
    def coordinator(self) -> str:
        """The coordinator StatefulSet, its headless Service and its PDB."""
        return f"{self.chain}-coord"

    @property
    def nodes(self) -> str:
        """The chain node StatefulSet, its headless Service and its PDB."""
        return f"{self.chain}-node"

    @property
    def proxy(self) -> str:
        """The proxy Deployment, its Service and its PDB."""
        return f"{self.chain}-proxy"

    @property
    def ingress(self) -> str:
        return self.chain

    def coordinator_pod(self, ordinal: int) -> str:
        return f"{self.coordinator}-{ordinal}"

    def node_pod(self, ordinal: int) -> str:
        """A node's pod name, which is also its id in the chain."""
        return f"{self.nodes}-{ordinal}"

    def node_ordinal(self, member_id: str) -> int | None:
        """The ordinal of a chain member id that belongs to this Chain's node set, else None."""
        return _ordinal(f"{self.nodes}-", member_id)

    def coordinator_ordinal(self, member_id: str) -> int | None:
        """The ordinal of a coordinator member id that belongs to this Chain's coordinator set, else None."""
        return _ordinal(f"{self.coordinator}-", member_id)

    def node_claim(self, ordinal: int) -> str:
        """The PersistentVolumeClaim the StatefulSet controller makes for node `ordinal`."""
        return f"{DATA_VOLUME}-{self.node_pod(ordinal)}"

    def coordinator_claim(self, ordinal: int) -> str:
        return f"{DATA_VOLUME}-{self.coordinator_pod(ordinal)}"

    def coordinator_host(self, ordinal: int) -> str:
        return self.coordinator_pod(ordinal) + self.coordinator_host_suffix()

    def coordinator_host_suffix(self) -> str:
        """What follows a coordinator's pod name in its DNS name under the headless Service."""
        return f".{self.coordinator}.{self.namespace}.svc"

    def coordinator_advertise_suffix(self) -> str:
        """What follows a coordinator's pod name in its advertised address (its --peers entry)."""
        return f"{self.coordinator_host_suffix()}:{COORDINATOR_GRPC_PORT}"

    def coordinator_peers(self, replicas: int) -> str:
        """`id=host:port,...` for `keychain coordinator --peers`."""
        return ",".join(
            f"{self.coordinator_pod(i)}={self.coordinator_host(i)}:{COORDINATOR_GRPC_PORT}" for i in range(replicas)
        )

    def coordinator_addresses(self, replicas: int) -> str:
        """`host:port,...` for `--coordinator` of nodes and proxies."""
        return ",".join(f"{self.coordinator_host(i)}:{COORDINATOR_GRPC_PORT}" for i in range(replicas))

    def coordinator_admin_urls(self, replicas: int, *, https: bool = False) -> list[str]:
        """The admin API of every coordinator member (HTTPS when the Chain runs TLS); any member answers."""
        scheme = "https" if https else "http"
        return [f"{scheme}://{self.coordinator_host(i)}:{COORDINATOR_HTTP_PORT}" for i in range(replicas)]

    def node_advertise_suffix(self) -> str:
        """What follows a node's pod name in its advertised address."""
        return f".{self.nodes}.{self.namespace}.svc:{NODE_GRPC_PORT}"


def _ordinal(prefix: str, member_id: str) -> int | None:
    suffix = member_id[len(prefix) :] if member_id.startswith(prefix) else ""
    return int(suffix) if suffix.isdigit() and str(int(suffix)) == suffix else None


def names_of(spec: ChainSpec) -> Names:
    return Names(spec.name, spec.namespace)


def chain_selector(chain: str) -> dict[str, str]:
    """The labels that select every pod of one Chain (each component's selector holds them)."""
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": chain}


def selector_labels(chain: str, component: str) -> dict[str, str]:
    """The immutable labels that select one component's pods."""
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": chain,
        "app.kubernetes.io/component": component,
    }


def labels(chain: str, component: str | None = None) -> dict[str, str]:
    """The labels every object of a Chain carries."""
    result = {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": chain,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    if component:
        result["app.kubernetes.io/component"] = component
    return result


def selector_string(chain: str, component: str) -> str:
    """A label selector in the string form of the scale subresource's `status.selector`."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(chain, component).items())


def owner_reference(spec: ChainSpec) -> dict[str, object]:
    """Makes the Chain the controller of an object, so deleting the Chain deletes it."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": spec.name,
        "uid": spec.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
