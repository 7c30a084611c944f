"""The command lines of the KeychainDB containers: the one place their flags are written.

Values that describe the Chain's topology (its name, the coordinator peers) come from the
Chain's ConfigMap as environment variables and are referenced as `$(VAR)`, which the
kubelet expands in `args`; the pod's own name comes from the downward API.
"""

from __future__ import annotations

from keychain.operator.naming import (
    COORDINATOR_GRPC_PORT,
    COORDINATOR_HTTP_PORT,
    DATA_DIR,
    NODE_GRPC_PORT,
    NODE_METRICS_PORT,
    PROXY_GRPC_PORT,
    PROXY_HTTP_PORT,
    TLS_CA_FILE,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    Names,
)

ENTRYPOINT = "keychain"
POD_NAME = "POD_NAME"
CHAIN = "KEYCHAIN_CHAIN"
COORDINATORS = "KEYCHAIN_COORDINATORS"
COORDINATOR_PEERS = "KEYCHAIN_COORDINATOR_PEERS"
READ_CONSISTENCY = "KEYCHAIN_READ_CONSISTENCY"


def ref(variable: str) -> str:
    return f"$({variable})"


def config_data(names: Names, initial_coordinators: int, read_consistency: str) -> dict[str, str]:
    """The ConfigMap's data: the environment every KeychainDB container of the Chain shares.

    The coordinator addresses are those of the initial members, the Raft cluster's bootstrap set,
    and stay so when the coordinator is resized: the lowest ordinals always remain members (scale-in
    removes the highest), members added later join through them, and nodes and proxies reach the
    leader through any member. So a resize changes no pod template and restarts nothing."""
    return {
        CHAIN: names.chain,
        COORDINATORS: names.coordinator_addresses(initial_coordinators),
        COORDINATOR_PEERS: names.coordinator_peers(initial_coordinators),
        READ_CONSISTENCY: read_consistency,
    }


def initial_coordinators(data: dict[str, str]) -> int | None:
    """How many initial coordinator members a rendered ConfigMap's data names (None if it names none)."""
    peers = [p for p in data.get(COORDINATOR_PEERS, "").split(",") if p]
    return len(peers) or None


def tls_args(tls: bool) -> list[str]:
    """The mutual TLS flags: the files of the component's mounted Secret, which it reloads when they change."""
    return ["--tls-cert", TLS_CERT_FILE, "--tls-key", TLS_KEY_FILE, "--tls-ca", TLS_CA_FILE] if tls else []


def coordinator_args(names: Names, tls: bool = False) -> list[str]:
    return [
        "coordinator",
        "--id", ref(POD_NAME),
        "--listen", f"0.0.0.0:{COORDINATOR_GRPC_PORT}",
        # The member's own --peers entry: its pod's DNS name under the headless Service.
        "--advertise", ref(POD_NAME) + names.coordinator_advertise_suffix(),
        "--http", f"0.0.0.0:{COORDINATOR_HTTP_PORT}",
        "--data-dir", DATA_DIR,
        "--peers", ref(COORDINATOR_PEERS),
        # A member added by a resize is not among the initial --peers: it joins their cluster.
        "--join-unlisted",
        "--chain", ref(CHAIN),
        # The kubelet's probes read /healthz over HTTPS without a client certificate.
        *([*tls_args(True), "--admin-open-reads"] if tls else []),
    ]  # fmt: skip


def node_args(names: Names, tls: bool = False) -> list[str]:
    return [
        "node",
        "--id", ref(POD_NAME),
        "--listen", f"0.0.0.0:{NODE_GRPC_PORT}",
        "--advertise", ref(POD_NAME) + names.node_advertise_suffix(),
        "--data-dir", DATA_DIR,
        "--chain", ref(CHAIN),
        "--coordinator", ref(COORDINATORS),
        "--metrics-listen", f"0.0.0.0:{NODE_METRICS_PORT}",
        *tls_args(tls),
    ]  # fmt: skip


def proxy_args(auth_token_file: str | None, tls: bool = False) -> list[str]:
    args = [
        "proxy",
        "--listen", f"0.0.0.0:{PROXY_HTTP_PORT}",
        "--grpc", f"0.0.0.0:{PROXY_GRPC_PORT}",
        "--coordinator", ref(COORDINATORS),
        "--chain", ref(CHAIN),
        "--read-consistency", ref(READ_CONSISTENCY),
    ]  # fmt: skip
    if auth_token_file:
        args += ["--auth-token-file", auth_token_file]
    return args + tls_args(tls)
