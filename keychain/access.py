"""Who may call what: the pure authorization policy of the cluster's internal gRPC APIs.

Every component proves its identity with a certificate from its chain's CA that names its kind
(`Identity`); this module decides, with no I/O, whether an identity may call a method. Methods not
listed here are refused (fail closed), so a new RPC must be given its callers explicitly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# The kinds of component a certificate can name.
NODE = "node"
COORDINATOR = "coordinator"
PROXY = "proxy"
OPERATOR = "operator"
ADMIN = "admin"
KINDS = (NODE, COORDINATOR, PROXY, OPERATOR, ADMIN)

URI_SCHEME = "keychain"


@dataclass(frozen=True)
class Identity:
    """A component as its certificate names it: `keychain://<chain>/<kind>/<name>`."""

    chain: str
    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown component kind {self.kind!r} (one of {', '.join(KINDS)})")
        for part, value in (("chain", self.chain), ("name", self.name)):
            if not value or "/" in value:
                raise ValueError(f"the identity's {part} must be non-empty and without '/': {value!r}")

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}://{self.chain}/{self.kind}/{self.name}"

    @classmethod
    def from_uri(cls, uri: str) -> Identity | None:
        """The identity a SAN URI names, or None if it is not a KeychainDB identity."""
        prefix = f"{URI_SCHEME}://"
        if not uri.startswith(prefix):
            return None
        parts = uri[len(prefix):].split("/")
        if len(parts) != 3:
            return None
        try:
            return cls(*parts)
        except ValueError:
            return None


class Decision(enum.Enum):
    ALLOW = "allow"
    UNAUTHENTICATED = "unauthenticated"  # no certificate, or one naming no KeychainDB identity
    PERMISSION_DENIED = "permission_denied"  # a known identity whose kind may not call this


_EVERYONE = frozenset(KINDS)
_READERS_OF_CONFIG = frozenset({NODE, PROXY, COORDINATOR, OPERATOR, ADMIN})
# Membership changes: the coordinator forwards them to its leader; the operator and admins drive them.
_MEMBERSHIP = frozenset({COORDINATOR, OPERATOR, ADMIN})

# Full gRPC method name -> the kinds that may call it.
POLICY: dict[str, frozenset[str]] = {
    # chain node
    "/keychain.chain.ChainNode/Write": frozenset({PROXY}),
    "/keychain.chain.ChainNode/Read": frozenset({PROXY}),
    "/keychain.chain.ChainNode/ReadBatch": frozenset({PROXY}),
    "/keychain.chain.ChainNode/ReadStream": frozenset({PROXY}),
    "/keychain.chain.ChainNode/Range": frozenset({PROXY}),
    "/keychain.chain.ChainNode/Watch": frozenset({PROXY}),
    "/keychain.chain.ChainNode/Link": frozenset({NODE}),
    "/keychain.chain.ChainNode/QueryVersion": frozenset({NODE}),
    "/keychain.chain.ChainNode/Transfer": frozenset({NODE}),
    "/keychain.chain.ChainNode/Configure": frozenset({ADMIN}),
    "/keychain.chain.ChainNode/GetStatus": frozenset({PROXY, OPERATOR, ADMIN}),
    # coordinator
    "/keychain.coordinator.Coordinator/Register": frozenset({NODE, COORDINATOR}),
    "/keychain.coordinator.Coordinator/Heartbeat": frozenset({NODE, COORDINATOR}),
    "/keychain.coordinator.Coordinator/GetChain": _READERS_OF_CONFIG,
    "/keychain.coordinator.Coordinator/WatchChains": _READERS_OF_CONFIG,
    "/keychain.coordinator.Coordinator/GetClusterStatus": _READERS_OF_CONFIG,
    # A proxy reports a node it cannot use (a gray failure); a follower forwards it to the leader.
    "/keychain.coordinator.Coordinator/ReportUnreachable": frozenset({PROXY, COORDINATOR}),
    "/keychain.coordinator.Coordinator/CreateChain": _MEMBERSHIP,
    "/keychain.coordinator.Coordinator/DeleteChain": _MEMBERSHIP,
    "/keychain.coordinator.Coordinator/RemoveMember": _MEMBERSHIP,
    "/keychain.coordinator.Coordinator/AddCoordinatorMember": _MEMBERSHIP,
    "/keychain.coordinator.Coordinator/RemoveCoordinatorMember": _MEMBERSHIP,
    "/keychain.raft.Raft/Step": frozenset({COORDINATOR}),
    "/keychain.raft.Raft/StepStream": frozenset({COORDINATOR}),
    # the standard health service, for any authenticated component
    "/grpc.health.v1.Health/Check": _EVERYONE,
    "/grpc.health.v1.Health/Watch": _EVERYONE,
}

# The coordinator's admin HTTP API: who may call it with a certificate (a bearer token also works).
ADMIN_HTTP_KINDS = frozenset({OPERATOR, ADMIN})


def authorize(method: str, identity: Identity | None) -> Decision:
    """Whether `identity` (None: the caller showed no KeychainDB certificate) may call `method`."""
    if identity is None:
        return Decision.UNAUTHENTICATED
    if identity.kind in POLICY.get(method, frozenset()):
        return Decision.ALLOW
    return Decision.PERMISSION_DENIED


def authorize_admin_http(identity: Identity | None) -> Decision:
    """Whether a certificate identity may use the coordinator's admin HTTP API."""
    if identity is None:
        return Decision.UNAUTHENTICATED
    return Decision.ALLOW if identity.kind in ADMIN_HTTP_KINDS else Decision.PERMISSION_DENIED
