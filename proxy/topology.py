"""The proxy's view of one chain's configuration, as the coordinator publishes it.

Pure: built from a `ChainConfig` message, no I/O. ACTIVE members come in order head .. tail;
SYNCING members follow the tail, receive the stream and serve nothing, so the proxy never
routes to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from keychain.proto import chain_pb2


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    address: str
    syncing: bool = False


@dataclass(frozen=True, slots=True)
class Topology:
    chain: str
    epoch: int
    active: tuple[Member, ...]
    syncing: tuple[Member, ...] = ()

    @classmethod
    def from_config(cls, config: chain_pb2.ChainConfig) -> Topology:
        active = tuple(
            Member(m.id, m.address) for m in config.members if m.state == chain_pb2.MemberState.ACTIVE
        )
        syncing = tuple(
            Member(m.id, m.address, syncing=True)
            for m in config.members
            if m.state == chain_pb2.MemberState.SYNCING
        )
        return cls(chain=config.chain, epoch=config.epoch, active=active, syncing=syncing)

    @property
    def head(self) -> Member | None:
        return self.active[0] if self.active else None

    @property
    def tail(self) -> Member | None:
        return self.active[-1] if self.active else None

    @property
    def serving(self) -> bool:
        """True when writes and reads can be routed: at least one active member."""
        return bool(self.active)

    def members(self) -> tuple[Member, ...]:
        return self.active + self.syncing

    def role_of(self, member: Member) -> str:
        """head | middle | tail | syncing; a one-member chain's only member is its head."""
        if member.syncing:
            return "syncing"
        index = self.active.index(member)
        if index == 0:
            return "head"
        if index == len(self.active) - 1:
            return "tail"
        return "middle"


class TopologyView:
    """The newest configuration seen so far; configurations with an older epoch are ignored.

    Several coordinator members may answer a watch, and a lagging follower can briefly show an
    older epoch than one already seen; going back would route writes to an ex-head.
    """

    def __init__(self, chain: str) -> None:
        self.chain = chain
        self.current: Topology | None = None

    def apply(self, config: chain_pb2.ChainConfig) -> bool:
        """Adopt `config` if it is for our chain and not older; returns whether it changed."""
        if config.chain != self.chain:
            return False
        candidate = Topology.from_config(config)
        if self.current is not None:
            if candidate.epoch < self.current.epoch:
                return False
            if candidate == self.current:
                return False
        self.current = candidate
        return True
