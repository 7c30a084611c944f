"""Membership of the coordinator cluster itself: who votes, who only learns, and how it changes.

Changes go one server at a time (Raft thesis §4.1): a new server joins as a *learner* (it receives
the log but neither votes nor counts toward a quorum), is *promoted* to voter once it has caught
up, and a voter or learner can be *removed*. Any two consecutive configurations then share a
majority, so no joint consensus is needed. A change is a CONF_CHANGE log entry whose data is a
`ConfChange` encoded as JSON (small, rare, and readable in a log dump); it takes effect when the
entry commits, on every member alike, so a configuration is a pure function of the committed log.

A fresh cluster starts from one BOOTSTRAP entry (index 1, term 1) naming the initial voters,
written identically by every initial member; a server that joins later learns the whole history
from the leader's log or snapshot. Addresses ride along for the shell (its address book,
address_book.py): BOOTSTRAP may carry every initial voter's address, ADD_LEARNER the new one's.
The core never reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ConfChangeError(ValueError):
    """A membership change is malformed or not allowed against the current configuration."""


class ConfChangeOp(StrEnum):
    BOOTSTRAP = "bootstrap"  # the initial voters of a new cluster
    ADD_LEARNER = "add_learner"
    PROMOTE = "promote"  # learner -> voter
    REMOVE = "remove"  # voter or learner leaves


@dataclass(frozen=True, slots=True)
class ConfChange:
    op: ConfChangeOp
    node: str = ""
    address: str = ""  # where the shell reaches the node; carried for the shell, unused by the core
    voters: tuple[str, ...] = ()  # BOOTSTRAP only
    addresses: tuple[tuple[str, str], ...] = ()  # BOOTSTRAP only: (voter, address), sorted

    def encode(self) -> bytes:
        body: dict[str, object] = {"op": self.op.value}
        if self.node:
            body["node"] = self.node
        if self.address:
            body["address"] = self.address
        if self.voters:
            body["voters"] = list(self.voters)
        if self.addresses:
            body["addresses"] = dict(self.addresses)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        try:
            body = json.loads(data)
            op = ConfChangeOp(body["op"])
            node = str(body.get("node", ""))
            voters = tuple(str(v) for v in body.get("voters", ()))
            address = str(body.get("address", ""))
            addresses = tuple(sorted((str(k), str(v)) for k, v in body.get("addresses", {}).items()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfChangeError(f"malformed membership change {data!r}: {exc}") from exc
        if op is ConfChangeOp.BOOTSTRAP:
            if not voters:
                raise ConfChangeError("bootstrap names no voters")
            if not {k for k, _ in addresses} <= set(voters):
                raise ConfChangeError("bootstrap gives addresses of servers that are not voters")
        elif not node:
            raise ConfChangeError(f"{op.value} names no node")
        return cls(op=op, node=node, address=address, voters=voters, addresses=addresses)


@dataclass(frozen=True, slots=True)
class Membership:
    """One configuration: the voters (whose majority decides) and the learners."""

    voters: frozenset[str] = field(default_factory=frozenset)
    learners: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, voters: Iterable[str], learners: Iterable[str] = ()) -> Membership:
        return cls(frozenset(voters), frozenset(learners))

    @property
    def members(self) -> frozenset[str]:
        return self.voters | self.learners

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def applied(self, change: ConfChange) -> Membership:
        """The configuration after `change`; raises ConfChangeError if it does not fit this one."""
        node = change.node
        match change.op:
            case ConfChangeOp.BOOTSTRAP:
                if self.members:
                    raise ConfChangeError("bootstrap of a cluster that already has members")
                return Membership.of(change.voters)
            case ConfChangeOp.ADD_LEARNER:
                if node in self.members:
                    raise ConfChangeError(f"{node} is already a member")
                return Membership(self.voters, self.learners | {node})
            case ConfChangeOp.PROMOTE:
                if node not in self.learners:
                    raise ConfChangeError(f"{node} is not a learner")
                return Membership(self.voters | {node}, self.learners - {node})
            case ConfChangeOp.REMOVE:
                if node not in self.members:
                    raise ConfChangeError(f"{node} is not a member")
                if self.voters == {node}:
                    raise ConfChangeError(f"{node} is the last voter")
                return Membership(self.voters - {node}, self.learners - {node})
        raise ConfChangeError(f"unknown membership change {change.op}")  # pragma: no cover

    def committed_index(self, match: Mapping[str, int]) -> int:
        """The highest index a majority of voters hold (0 if there are no voters)."""
        if not self.voters:
            return 0
        acked = sorted((match.get(v, 0) for v in self.voters), reverse=True)
        return acked[self.quorum() - 1]

    def vote_result(self, votes: Mapping[str, bool]) -> bool | None:
        """True: a majority granted; False: a majority can no longer grant; None: still open."""
        granted = sum(1 for v in self.voters if votes.get(v) is True)
        rejected = sum(1 for v in self.voters if votes.get(v) is False)
        if granted >= self.quorum():
            return True
        if len(self.voters) - rejected < self.quorum():
            return False
        return None
