"""Deliberately broken supervision cores (keychain.coordinator.supervision), substituted into the
simulator's coordinators by tests only: each drops one rule that keeps acknowledged writes safe,
or that keeps the chain moving."""

from __future__ import annotations

import math
from dataclasses import replace

from keychain.coordinator.lease import LeaseTracker, Removal
from keychain.coordinator.registry import ChainState
from keychain.coordinator.supervision import Grant, Heartbeat, Proposal, Refusal, Supervisor


class GrantsWithoutEvidence(Supervisor):
    """Grants leases whenever it is leader, without fresh evidence that a quorum still follows it."""

    def leadership_fresh(self, confirmed_at: float | None, now: float) -> bool:
        return True


class RemovesDrainedAtOnce(Supervisor):
    """Counts a drained node's lease as lapsed the moment the drain begins."""

    def drain(self, chain: str, node: str, state: ChainState | None) -> Refusal | None:
        refusal = super().drain(chain, node, state)
        if refusal is None:
            self.leases.last_heard[(chain, node)] = -math.inf
        return refusal


class _TrustingTracker(LeaseTracker):
    def keeps_every_write(self, chain: ChainState, node: str) -> bool:
        return True


class RemovesLastInSync(Supervisor):
    """Removes a silent active member even when no other active member reported in sync in the
    current epoch: it may hold the only copy of acknowledged writes."""

    def __init__(self, **figures: float) -> None:
        super().__init__(**figures)
        self.leases = _TrustingTracker(lease=self.leases.lease, margin=self.leases.margin)


class NeverRemoves(Supervisor):
    """Never removes a member, however long it has been silent: a crashed head stalls the chain."""

    def removals(self, now: float, chains: list[ChainState]) -> list[Removal]:
        return []


class IgnoresLinkReports(Supervisor):
    """Reads every heartbeat as if it carried no link-health report: only silence removes a node."""

    def heartbeat(self, req: Heartbeat, state: ChainState | None, now: float, confirmed_at: float | None
                  ) -> Grant | Refusal | Proposal:
        return super().heartbeat(replace(req, links=None), state, now, confirmed_at)


class _SurrenderAssumed(LeaseTracker):
    def revoke(self, chain: str, node: str, epoch: int, reason: str) -> None:
        super().revoke(chain, node, epoch, reason)
        self.surrendered.add((chain, node))


class RemovesRevokedAtOnce(Supervisor):
    """Removes a node suspected of a gray failure as if it had surrendered its lease the moment the
    lease was revoked: a node that heartbeats still holds the lease it was granted last."""

    def __init__(self, **figures: float) -> None:
        super().__init__(**figures)
        self.leases = _SurrenderAssumed(lease=self.leases.lease, margin=self.leases.margin)
